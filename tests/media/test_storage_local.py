"""LocalStorage: round trip, ranges, atomic writes, and keys that cannot escape the root."""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tidings.media.storage import (
    InvalidKeyError,
    LocalStorage,
    ObjectNotFoundError,
    content_type_for_key,
    new_media_key,
    thumbnail_key_for,
    validate_key,
)

from .conftest import files_under
from .factories import chunks_of


async def test_round_trip(local_storage: LocalStorage) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    stored = await local_storage.put_stream("org/2024/05/abc.mp4", chunks_of(data, 100_000))
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert await local_storage.exists("org/2024/05/abc.mp4")
    assert await local_storage.read_bytes("org/2024/05/abc.mp4") == data
    info = await local_storage.stat("org/2024/05/abc.mp4")
    assert (info.size, info.content_type) == (len(data), "video/mp4")
    assert local_storage.path_for("org/2024/05/abc.mp4").read_bytes() == data
    # Ranges, end exclusive.
    part = b"".join(
        [c async for c in local_storage.open_stream("org/2024/05/abc.mp4", start=10, end=2_000_000)]
    )
    assert part == data[10:2_000_000]
    tail = b"".join(
        [c async for c in local_storage.open_stream("org/2024/05/abc.mp4", start=len(data) - 5)]
    )
    assert tail == data[-5:]
    await local_storage.delete("org/2024/05/abc.mp4")
    assert not await local_storage.exists("org/2024/05/abc.mp4")
    await local_storage.delete("org/2024/05/abc.mp4")  # deleting twice is fine


async def test_missing_objects(local_storage: LocalStorage) -> None:
    with pytest.raises(ObjectNotFoundError):
        await local_storage.stat("org/none.png")
    with pytest.raises(ObjectNotFoundError):
        [c async for c in local_storage.open_stream("org/none.png")]
    await local_storage.put_bytes("org/dir/a.png", b"x")
    with pytest.raises(ObjectNotFoundError):
        await local_storage.stat("org/dir")  # a directory is not an object
    with pytest.raises(ObjectNotFoundError):
        [c async for c in local_storage.open_stream("org/dir")]


async def test_put_file_links_or_copies(local_storage: LocalStorage, tmp_path: Path) -> None:
    source = tmp_path / "spool.bin"
    source.write_bytes(b"hello" * 1000)
    stored = await local_storage.put_file("org/x/file.pdf", source)
    assert stored.sha256 == hashlib.sha256(b"hello" * 1000).hexdigest()
    assert source.exists()  # left for the caller
    source.unlink()
    assert await local_storage.read_bytes("org/x/file.pdf") == b"hello" * 1000


async def test_failed_write_leaves_nothing(local_storage: LocalStorage) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * 100_000
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await local_storage.put_stream("org/2024/01/partial.png", broken())
    assert files_under(local_storage.root) == []
    assert not await local_storage.exists("org/2024/01/partial.png")


async def test_overwrite_is_atomic(local_storage: LocalStorage) -> None:
    await local_storage.put_bytes("org/a.png", b"old")

    async def broken() -> AsyncIterator[bytes]:
        yield b"new-partial"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await local_storage.put_stream("org/a.png", broken())
    assert await local_storage.read_bytes("org/a.png") == b"old"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../etc/passwd",
        "org/../../etc/passwd",
        "org/..",
        "..",
        "/etc/passwd",
        "//server/share",
        "org\\..\\secret",
        "org/a\x00.png",
        "org//a.png",
        "org/./a.png",
        "org/.hidden",
        "org/a.png/",
        "C:/windows/system.ini",
        "org/%2e%2e/a.png",
        "org/a b.png",
        "a" * 600,
    ],
)
async def test_unsafe_keys_are_refused_everywhere(local_storage: LocalStorage, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)
    with pytest.raises(InvalidKeyError):
        local_storage.path_for(key)
    with pytest.raises(InvalidKeyError):
        await local_storage.put_bytes(key, b"x")
    with pytest.raises(InvalidKeyError):
        await local_storage.stat(key)
    with pytest.raises(InvalidKeyError):
        await local_storage.delete(key)
    with pytest.raises(InvalidKeyError):
        [c async for c in local_storage.open_stream(key)]
    with pytest.raises(InvalidKeyError):
        local_storage.public_url(key, "https://tidings.example")
    assert files_under(local_storage.root) == []


async def test_symlink_inside_the_root_cannot_lead_outside(
    local_storage: LocalStorage, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    (local_storage.root / "org").mkdir()
    (local_storage.root / "org" / "escape").symlink_to(outside)
    with pytest.raises(InvalidKeyError):
        await local_storage.read_bytes("org/escape/secret.png")
    with pytest.raises(InvalidKeyError):
        await local_storage.put_bytes("org/escape/new.png", b"x")
    assert not (outside / "new.png").exists()


def test_keys_and_urls(local_storage: LocalStorage) -> None:
    key = new_media_key("org-1", "PNG", now=datetime(2024, 3, 9, tzinfo=UTC))
    assert key.startswith("org-1/2024/03/") and key.endswith(".png")
    assert len(key.rsplit("/", 1)[1]) == len("0123456789abcdef0123456789abcdef.png")
    assert new_media_key("org-1", "png") != new_media_key("org-1", "png")
    thumb = thumbnail_key_for(key, "webp")
    assert thumb.startswith(key.rsplit(".", 1)[0] + ".thumb-") and thumb.endswith(".webp")
    assert thumbnail_key_for(key, "webp") != thumb  # fresh each time: caches are immutable
    assert content_type_for_key(thumb) == "image/webp"
    assert content_type_for_key("a/b.mov") == "video/quicktime"
    assert content_type_for_key("a/b") == "application/octet-stream"
    assert (
        local_storage.public_url("org/2024/03/a.png", "https://t.example/")
        == "https://t.example/uploads/org/2024/03/a.png"
    )
    with pytest.raises(InvalidKeyError):
        new_media_key("../evil", "png")


async def test_streaming_keeps_memory_bounded(local_storage: LocalStorage) -> None:
    chunk = os.urandom(1024 * 1024)

    async def sixty_four_megabytes() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield chunk

    tracemalloc.start()
    try:
        stored = await local_storage.put_stream("org/big.mp4", sixty_four_megabytes())
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        total = 0
        async for part in local_storage.open_stream("org/big.mp4"):
            total += len(part)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.size == total == 64 * 1024 * 1024
    # A few chunks at most are alive at any time, never the 64 MB.
    assert write_peak < 8 * 1024 * 1024
    assert read_peak < 8 * 1024 * 1024


async def test_interrupted_writes_are_purged(local_storage: LocalStorage) -> None:
    await local_storage.put_bytes("org/2024/01/keep.png", b"keep")
    directory = local_storage.root / "org" / "2024" / "01"
    old, fresh = directory / ".a.png.1234.part", directory / ".b.png.5678.part"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(old, (time.time() - 7 * 3600, time.time() - 7 * 3600))
    assert await local_storage.purge_partial_writes() == 1
    assert not old.exists() and fresh.exists()
    assert await local_storage.read_bytes("org/2024/01/keep.png") == b"keep"
