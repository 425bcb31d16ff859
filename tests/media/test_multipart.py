"""Streaming multipart parsing: bodies encoded by httpx, fed in awkward chunk sizes."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest

from tidings.media.errors import MediaTooLargeError
from tidings.media.ingest import IngestConfig, ingest_stream
from tidings.media.limits import MediaLimits
from tidings.media.multipart import (
    MAX_FIELDS,
    MAX_FORM_BYTES,
    MultipartError,
    open_multipart_file,
)
from tidings.media.storage import LocalStorage

from .conftest import files_under
from .factories import image_bytes


def encode(
    files: dict[str, tuple[str, bytes, str]], data: dict[str, str] | None = None
) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://tidings.test/upload", files=files, data=data)
    return request.read(), request.headers["content-type"]


async def feed(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("chunk_size", [1, 7, 100, 65536, 10**9])
async def test_file_and_fields_come_through_whatever_the_chunking(chunk_size: int) -> None:
    payload = os.urandom(20_000) + b"\r\n--not-the-boundary\r\n" + os.urandom(1000)
    body, content_type = encode(
        {"file": ("café.png", payload, "image/png")}, {"alt": "a red square", "note": "before"}
    )
    upload = await open_multipart_file(feed(body, chunk_size), content_type)
    assert upload.filename == "café.png" and upload.content_type == "image/png"
    assert upload.fields == {"alt": "a red square", "note": "before"}  # httpx sends data first
    received = b"".join([c async for c in upload.chunks])
    assert received == payload


async def test_fields_after_the_file_are_read_once_the_file_is() -> None:
    boundary = "XyZ"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.gif"\r\n'
            f"Content-Type: image/gif\r\n\r\n"
        ).encode()
        + b"GIF89a-data"
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="alt"\r\n\r\nafter\r\n'
            f"--{boundary}--\r\n"
        ).encode()
    )
    upload = await open_multipart_file(feed(body, 5), f"multipart/form-data; boundary={boundary}")
    assert upload.fields == {}
    assert b"".join([c async for c in upload.chunks]) == b"GIF89a-data"
    assert upload.fields == {"alt": "after"}


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", b"{}", "multipart/form-data"),
        ("multipart/form-data", b"", "no boundary"),
        ("multipart/form-data; boundary=b", b"--b--\r\n", "no 'file' file"),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="other"\r\n\r\n'
            + b"x" * 100_000
            + b"\r\n--b--\r\n",
            "too large",
        ),
        ("multipart/form-data; boundary=b", b"garbage without any boundary", "malformed"),
    ],
)
async def test_bad_forms_are_400(content_type: str, body: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message) as caught:
        await open_multipart_file(feed(body, 1000), content_type)
    assert caught.value.status_code == 400


async def test_truncated_body_is_an_error() -> None:
    body, content_type = encode({"file": ("a.png", os.urandom(50_000), "image/png")})
    upload = await open_multipart_file(feed(body[:30_000], 4096), content_type)
    with pytest.raises(MultipartError, match="ended before the file was complete"):
        [c async for c in upload.chunks]


async def test_second_file_is_bounded_like_a_field() -> None:
    body, content_type = encode(
        {
            "file": ("a.png", b"first", "image/png"),
            "other": ("b.png", os.urandom(200_000), "image/png"),
        }
    )
    upload = await open_multipart_file(feed(body, 8192), content_type)
    with pytest.raises(MultipartError, match="too large"):
        [c async for c in upload.chunks]


async def test_oversize_upload_stops_reading_the_request(
    local_storage: LocalStorage,
    tmp_path,
    org_id: str,  # type: ignore[no-untyped-def]
) -> None:
    limit = 1024 * 1024
    config = IngestConfig(spool_dir=tmp_path / "spool", limits=MediaLimits(image_bytes=limit))
    body, content_type = encode(
        {"file": ("big.png", image_bytes("PNG") + b"\x00" * (10 * limit), "image/png")}
    )
    consumed = 0

    async def request_stream() -> AsyncIterator[bytes]:
        nonlocal consumed
        async for chunk in feed(body, 64 * 1024):
            consumed += len(chunk)
            yield chunk

    upload = await open_multipart_file(request_stream(), content_type)
    with pytest.raises(MediaTooLargeError):
        await ingest_stream(
            upload.chunks,
            filename=upload.filename,
            organization_id=org_id,
            storage=local_storage,
            config=config,
        )
    assert consumed <= limit + 2 * 64 * 1024
    assert files_under(local_storage.root) == [] and files_under(config.spool_dir) == []


async def test_parsing_memory_is_bounded() -> None:
    chunk = os.urandom(64 * 1024)
    boundary = "bound"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mp4"\r\n\r\n'
    ).encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(640):  # 40 MB
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    tracemalloc.start()
    try:
        upload = await open_multipart_file(body(), f"multipart/form-data; boundary={boundary}")
        total = 0
        async for part in upload.chunks:
            total += len(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 640 * len(chunk)
    assert peak < 4 * 1024 * 1024


async def _endless(head: bytes, piece: bytes, read: list[int]) -> AsyncIterator[bytes]:
    """``head`` then ``piece`` again and again (up to 16 MB, so that a failure does not hang)."""
    yield head
    while sum(read) < 16 * 1024 * 1024:
        read.append(len(piece))
        yield piece


async def test_bytes_after_the_file_are_bounded() -> None:
    # A small file, then an endless epilogue: refused once the form's allowance is spent, not
    # read for ever.
    boundary = "b"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        f"PNG-bytes\r\n--{boundary}--\r\n"
    ).encode()
    read: list[int] = []
    upload = await open_multipart_file(
        _endless(head, b"epilogue" * 8192, read), f"multipart/form-data; boundary={boundary}"
    )
    with pytest.raises(MultipartError, match="besides the file") as caught:
        [c async for c in upload.chunks]
    assert caught.value.status_code == 400
    assert sum(read) <= MAX_FORM_BYTES + 64 * 1024


async def test_repeated_fields_are_counted_even_with_one_name() -> None:
    boundary = "b"
    field = f'--{boundary}\r\nContent-Disposition: form-data; name="alt"\r\n\r\nx\r\n'.encode()
    read: list[int] = []
    with pytest.raises(MultipartError, match="too many form fields"):
        await open_multipart_file(
            _endless(b"", field, read), f"multipart/form-data; boundary={boundary}"
        )
    assert len(read) <= MAX_FIELDS + 1
