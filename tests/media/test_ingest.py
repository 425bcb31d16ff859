"""The upload pipeline end to end into LocalStorage: every type, refusals, limits on disk."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image, features

from tidings.media import sniff
from tidings.media.errors import (
    EmptyMediaError,
    MediaMismatchError,
    MediaTooLargeError,
    UnsupportedMediaError,
)
from tidings.media.ingest import (
    IngestConfig,
    clean_name,
    ingest_stream,
    purge_stale_spool,
    rethumbnail_video,
)
from tidings.media.limits import MediaLimits, human_size, limit_stream
from tidings.media.sniff import MediaKind
from tidings.media.storage import LocalStorage

from .conftest import bytes_under, files_under
from .factories import (
    ELF_EXECUTABLE,
    PE_EXECUTABLE,
    animated_gif,
    chunks_of,
    color_for_frame,
    image_bytes,
    video_file,
    zip_archive,
)

KB = 1024
MB = 1024 * 1024


async def _ingest(
    data: bytes,
    filename: str | None,
    storage: LocalStorage,
    config: IngestConfig,
    org_id: str,
    **kwargs: object,
):  # type: ignore[no-untyped-def]
    return await ingest_stream(
        chunks_of(data, 64 * KB),
        filename=filename,
        organization_id=org_id,
        storage=storage,
        config=config,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("data", "filename", "expected", "size"),
    [
        (image_bytes("PNG", size=(800, 600)), "photo.png", sniff.PNG, (800, 600)),
        (image_bytes("JPEG", size=(800, 600)), "photo.jpeg", sniff.JPEG, (800, 600)),
        (animated_gif(size=(300, 150)), "anim.gif", sniff.GIF, (300, 150)),
        (image_bytes("WEBP", size=(200, 400)), "pic.webp", sniff.WEBP, (200, 400)),
    ]
    + (
        [(image_bytes("AVIF", size=(320, 200)), "pic.avif", sniff.AVIF, (320, 200))]
        if features.check("avif")
        else []
    ),
)
async def test_images_are_stored_with_thumbnail_and_dimensions(
    local_storage: LocalStorage,
    config: IngestConfig,
    org_id: str,
    data: bytes,
    filename: str,
    expected: sniff.MediaType,
    size: tuple[int, int],
) -> None:
    media = await _ingest(data, filename, local_storage, config, org_id)
    assert media.media_type is expected and media.kind is MediaKind.IMAGE
    assert media.name == filename
    assert media.key.startswith(f"{org_id}/") and media.key.endswith(f".{expected.extension}")
    assert (media.width, media.height) == size
    assert media.size == len(data) and media.sha256 == hashlib.sha256(data).hexdigest()
    assert await local_storage.read_bytes(media.key) == data
    assert media.thumbnail is not None
    thumb = Image.open(io.BytesIO(await local_storage.read_bytes(media.thumbnail.key)))
    assert max(thumb.size) == min(128, max(size))
    assert thumb.size == (media.thumbnail.width, media.thumbnail.height)
    assert (await local_storage.stat(media.thumbnail.key)).content_type == "image/webp"
    assert files_under(config.spool_dir) == []


@pytest.mark.parametrize(
    ("container", "codec", "expected"),
    [
        ("mp4", "libx264", sniff.MP4),
        ("mov", "libx264", sniff.MOV),
        ("webm", "libvpx-vp9", sniff.WEBM),
        ("webm", "libvpx", sniff.WEBM),
    ],
)
async def test_videos_are_stored_with_thumbnail_at_the_requested_time(
    local_storage: LocalStorage,
    config: IngestConfig,
    org_id: str,
    tmp_path: Path,
    container: str,
    codec: str,
    expected: sniff.MediaType,
) -> None:
    path = video_file(
        tmp_path / f"in.{container}",
        container=container,
        codec=codec,
        frames=20,
        rate=10,
        size=(320, 180),
    )
    media = await _ingest(
        path.read_bytes(),
        f"clip.{container}",
        local_storage,
        config,
        org_id,
        thumbnail_timestamp_ms=1000,
    )
    assert media.media_type is expected and media.kind is MediaKind.VIDEO
    assert (media.width, media.height) == (320, 180)
    assert media.duration_ms is not None and 1900 <= media.duration_ms <= 2100
    assert media.thumbnail is not None and media.thumbnail.timestamp_ms == 1000
    thumb = Image.open(io.BytesIO(await local_storage.read_bytes(media.thumbnail.key)))
    assert thumb.size == (128, 72)
    red = thumb.convert("RGB").getpixel((64, 36))[0]  # type: ignore[index]
    assert abs(red - color_for_frame(10)[0]) < 20


async def test_pdf_is_stored_without_thumbnail(
    local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    data = image_bytes("PDF")
    media = await _ingest(data, "report.pdf", local_storage, config, org_id)
    assert media.kind is MediaKind.PDF and media.mime == "application/pdf"
    assert media.thumbnail is None and media.key.endswith(".pdf")


async def test_pdf_can_be_excluded(
    local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    with pytest.raises(UnsupportedMediaError, match="PDF documents are not accepted here"):
        await _ingest(
            image_bytes("PDF"),
            "report.pdf",
            local_storage,
            config,
            org_id,
            allowed_kinds=frozenset({MediaKind.IMAGE, MediaKind.VIDEO}),
        )
    assert files_under(local_storage.root) == [] and files_under(config.spool_dir) == []


@pytest.mark.parametrize(
    ("data", "filename", "error"),
    [
        (ELF_EXECUTABLE + b"\x00" * 50_000, "photo.png", MediaMismatchError),
        (PE_EXECUTABLE + b"\x00" * 50_000, "cat.jpg", MediaMismatchError),
        (zip_archive(), "photo.png", MediaMismatchError),
        (image_bytes("JPEG"), "clip.mp4", MediaMismatchError),
        (b"plain text " * 1000, None, UnsupportedMediaError),
    ],
    ids=["elf-as-png", "exe-as-jpg", "zip-as-png", "jpeg-as-mp4", "text"],
)
async def test_refused_files_leave_nothing_behind(
    local_storage: LocalStorage,
    config: IngestConfig,
    org_id: str,
    data: bytes,
    filename: str | None,
    error: type[Exception],
) -> None:
    with pytest.raises(error) as caught:
        await _ingest(data, filename, local_storage, config, org_id)
    assert caught.value.status_code == 415  # type: ignore[attr-defined]
    assert files_under(local_storage.root) == []
    assert files_under(config.spool_dir) == []


async def test_damaged_image_is_refused_after_streaming(
    local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    data = image_bytes("JPEG", size=(1200, 900), color=(1, 100, 200), quality=95)
    with pytest.raises(UnsupportedMediaError, match=r"damaged|truncated"):
        await _ingest(data[: len(data) * 2 // 3], "photo.jpg", local_storage, config, org_id)
    assert files_under(local_storage.root) == [] and files_under(config.spool_dir) == []


async def test_zero_bytes_is_refused(
    local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    async def nothing() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b""

    with pytest.raises(EmptyMediaError) as caught:
        await ingest_stream(
            nothing(),
            filename="empty.png",
            organization_id=org_id,
            storage=local_storage,
            config=config,
        )
    assert caught.value.status_code == 400 and caught.value.field == "file"
    assert files_under(config.spool_dir) == [] and files_under(local_storage.root) == []


async def test_oversize_upload_is_refused_without_filling_the_disk(
    local_storage: LocalStorage, tmp_path: Path, org_id: str
) -> None:
    limit = 2 * MB
    chunk_size = 256 * KB
    config = IngestConfig(
        spool_dir=tmp_path / "spool", limits=MediaLimits(image_bytes=limit, video_bytes=4 * limit)
    )
    png = image_bytes("PNG", size=(64, 64))
    produced = 0
    worst_on_disk = 0

    async def ten_times_the_limit() -> AsyncIterator[bytes]:
        nonlocal produced, worst_on_disk
        yield png.ljust(chunk_size, b"\x00")  # a PNG head, so the image limit applies
        produced += chunk_size
        while produced < 10 * limit:
            worst_on_disk = max(
                worst_on_disk, bytes_under(config.spool_dir) + bytes_under(local_storage.root)
            )
            yield b"\x00" * chunk_size
            produced += chunk_size

    with pytest.raises(MediaTooLargeError) as caught:
        await ingest_stream(
            ten_times_the_limit(),
            filename="huge.png",
            organization_id=org_id,
            storage=local_storage,
            config=config,
        )
    error = caught.value
    assert error.status_code == 413 and error.limit == limit and error.kind == "image"
    assert "image files may be at most 2 MB" in error.message
    assert worst_on_disk <= limit  # nothing past the limit was ever written
    assert produced <= limit + chunk_size  # reading stopped at the chunk that crossed it
    assert files_under(config.spool_dir) == [] and files_under(local_storage.root) == []


async def test_kind_limit_applies_after_sniffing(
    local_storage: LocalStorage, tmp_path: Path, org_id: str
) -> None:
    video = video_file(tmp_path / "v.mp4", frames=30, size=(320, 240))
    size = video.stat().st_size
    config = IngestConfig(
        spool_dir=tmp_path / "spool", limits=MediaLimits(image_bytes=size - 1, video_bytes=size)
    )
    media = await _ingest(video.read_bytes(), "v.mp4", local_storage, config, org_id)
    assert media.size == size  # exactly at the limit is fine
    tight = IngestConfig(
        spool_dir=tmp_path / "spool", limits=MediaLimits(image_bytes=10 * MB, video_bytes=size - 1)
    )
    with pytest.raises(MediaTooLargeError, match="video files may be at most"):
        await _ingest(video.read_bytes(), "v.mp4", local_storage, tight, org_id)


async def test_declared_size_refuses_early(
    local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    consumed = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal consumed
        for piece in (image_bytes("PNG").ljust(8 * KB, b"\x00"), b"\x00" * (8 * KB)):
            consumed += 1
            yield piece

    with pytest.raises(MediaTooLargeError):
        await ingest_stream(
            body(),
            filename=None,
            organization_id=org_id,
            storage=local_storage,
            config=config,
            declared_size=11 * MB,
        )
    assert consumed == 1  # refused right after sniffing the first chunk
    with pytest.raises(MediaTooLargeError):
        await ingest_stream(
            body(),
            filename=None,
            organization_id=org_id,
            storage=local_storage,
            config=config,
            declared_size=2 * 1024 * MB,
        )


async def test_cancelled_upload_leaves_nothing(
    local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield image_bytes("PNG").ljust(64 * KB, b"\x00")
        started.set()
        await asyncio.sleep(3600)
        yield b""

    task = asyncio.create_task(
        ingest_stream(
            slow(), filename="a.png", organization_id=org_id, storage=local_storage, config=config
        )
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert files_under(config.spool_dir) == [] and files_under(local_storage.root) == []


async def test_rethumbnail_video_locally(
    local_storage: LocalStorage, config: IngestConfig, org_id: str, tmp_path: Path
) -> None:
    video = video_file(tmp_path / "v.webm", container="webm", codec="libvpx-vp9", frames=20)
    media = await _ingest(video.read_bytes(), "v.webm", local_storage, config, org_id)
    assert media.thumbnail is not None and media.thumbnail.timestamp_ms == 0
    later = await rethumbnail_video(local_storage, media.key, timestamp_ms=99_000, config=config)
    assert later.timestamp_ms == 1900 and later.key != media.thumbnail.key
    image = await _ingest(image_bytes("PNG"), "a.png", local_storage, config, org_id)
    with pytest.raises(UnsupportedMediaError, match="only videos"):
        await rethumbnail_video(local_storage, image.key, timestamp_ms=0, config=config)


async def test_field_is_set_for_url_uploads(
    local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    with pytest.raises(UnsupportedMediaError) as caught:
        await _ingest(zip_archive(), None, local_storage, config, org_id, field="url")
    assert caught.value.field == "url"


def test_clean_name() -> None:
    assert clean_name("C:\\fakepath\\photo.png", "png") == "photo.png"
    assert clean_name("../../etc/passwd", "png") == "passwd"
    assert clean_name("a\x00b\nc.png", "png") == "abc.png"
    assert clean_name("", "mp4") == "upload.mp4"
    assert clean_name(None, "pdf") == "upload.pdf"
    long = clean_name("x" * 400 + ".jpeg", "jpg")
    assert len(long) == 255 and long.endswith(".jpeg")


async def test_limit_stream_and_sizes() -> None:
    out = [c async for c in limit_stream(chunks_of(b"a" * 100, 10), 100)]
    assert b"".join(out) == b"a" * 100
    seen = []
    with pytest.raises(MediaTooLargeError):
        async for c in limit_stream(chunks_of(b"a" * 101, 10), 100, kind=MediaKind.PDF):
            seen.append(c)
    assert sum(map(len, seen)) == 100
    assert human_size(10 * MB) == "10 MB" and human_size(1024 * MB) == "1 GB"
    assert human_size(1536) == "1.5 KB" and human_size(12) == "12 bytes"
    with pytest.raises(ValueError):
        MediaLimits(image_bytes=0)
    assert MediaLimits().largest == 1024 * MB
    assert MediaLimits().for_kind(MediaKind.PDF) == 20 * MB


async def test_stale_spool_files_are_purged(spool_dir: Path) -> None:
    spool_dir.mkdir(parents=True)
    old, fresh = spool_dir / "upload-old.part", spool_dir / "upload-new.part"
    old.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(old, (time.time() - 7 * 3600, time.time() - 7 * 3600))
    assert await purge_stale_spool(spool_dir) == 1
    assert not old.exists() and fresh.exists()
    assert await purge_stale_spool(spool_dir / "missing") == 0
