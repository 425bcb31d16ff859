"""S3Storage against a real S3-compatible HTTP server (moto's server mode on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tidings.media.ingest import IngestConfig, ingest_stream, rethumbnail_video
from tidings.media.storage import InvalidKeyError, ObjectNotFoundError, S3Storage

from .conftest import files_under
from .factories import chunks_of, image_bytes, video_file

BUCKET = "tidings-media"
CREDENTIALS = {"aws_access_key_id": "test-key", "aws_secret_access_key": "test-secret"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **CREDENTIALS)
    client.create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="module")
def raw_client(s3_endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **CREDENTIALS)


@pytest.fixture(scope="module")
def s3(s3_endpoint: str) -> S3Storage:
    return S3Storage(
        BUCKET,
        endpoint_url=s3_endpoint,
        region="us-east-1",
        access_key_id=CREDENTIALS["aws_access_key_id"],
        secret_access_key=CREDENTIALS["aws_secret_access_key"],
        part_size=5 * 1024 * 1024,
    )


async def test_small_object_round_trip(s3: S3Storage, raw_client) -> None:  # type: ignore[no-untyped-def]
    data = image_bytes("PNG")
    stored = await s3.put_bytes("org/2024/05/a.png", data, content_type="image/png")
    assert stored.sha256 == hashlib.sha256(data).hexdigest() and stored.size == len(data)
    assert await s3.exists("org/2024/05/a.png")
    info = await s3.stat("org/2024/05/a.png")
    assert (info.size, info.content_type) == (len(data), "image/png")
    assert await s3.read_bytes("org/2024/05/a.png") == data
    head = raw_client.head_object(Bucket=BUCKET, Key="org/2024/05/a.png")
    assert "immutable" in head["CacheControl"]
    await s3.delete("org/2024/05/a.png")
    assert not await s3.exists("org/2024/05/a.png")
    with pytest.raises(ObjectNotFoundError):
        await s3.stat("org/2024/05/a.png")
    with pytest.raises(ObjectNotFoundError):
        await s3.read_bytes("org/2024/05/a.png")


async def test_large_stream_goes_up_as_multipart(s3: S3Storage, raw_client) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(12 * 1024 * 1024 + 123)  # > 2 parts of 5 MiB
    stored = await s3.put_stream("org/2024/05/big.mp4", chunks_of(data, 256 * 1024))
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    head = raw_client.head_object(Bucket=BUCKET, Key="org/2024/05/big.mp4")
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "video/mp4"
    # A multipart object's ETag is "<md5 of part md5s>-<number of parts>".
    assert head["ETag"].strip('"').endswith("-3")
    assert await s3.read_bytes("org/2024/05/big.mp4") == data
    ranged = b"".join(
        [c async for c in s3.open_stream("org/2024/05/big.mp4", start=5_000_000, end=5_000_100)]
    )
    assert ranged == data[5_000_000:5_000_100]
    await s3.delete("org/2024/05/big.mp4")
    assert not await s3.exists("org/2024/05/big.mp4")


async def test_failed_multipart_upload_is_aborted(s3: S3Storage, raw_client) -> None:  # type: ignore[no-untyped-def]
    async def broken() -> AsyncIterator[bytes]:
        for _ in range(7):
            yield b"x" * (1024 * 1024)
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await s3.put_stream("org/2024/05/partial.mp4", broken())
    assert not await s3.exists("org/2024/05/partial.mp4")
    uploads = raw_client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u for u in uploads if u["Key"] == "org/2024/05/partial.mp4"] == []


async def test_keys_are_validated(s3: S3Storage) -> None:
    for key in ("../x.png", "/abs.png", "a\\b.png", "a/../b.png"):
        with pytest.raises(InvalidKeyError):
            await s3.put_bytes(key, b"x")
        with pytest.raises(InvalidKeyError):
            await s3.stat(key)


def test_public_urls(s3_endpoint: str) -> None:
    proxied = S3Storage(BUCKET, endpoint_url=s3_endpoint, access_key_id="a", secret_access_key="b")
    assert proxied.public_url("org/a.png", "https://t.example") == (
        "https://t.example/uploads/org/a.png"
    )
    cdn = S3Storage(BUCKET, public_base_url="https://cdn.example/media/", region="us-east-1")
    assert cdn.public_url("org/a.png", "https://t.example") == "https://cdn.example/media/org/a.png"
    with pytest.raises(ValueError, match="part_size"):
        S3Storage(BUCKET, part_size=1024)


async def test_ingest_into_s3_and_rethumbnail(s3: S3Storage, tmp_path: Path, org_id: str) -> None:
    config = IngestConfig(spool_dir=tmp_path / "spool", thumbnail_box=64)
    video = video_file(tmp_path / "clip.mp4", frames=20, rate=10)
    media = await ingest_stream(
        chunks_of(video.read_bytes(), 4096),
        filename="clip.mp4",
        organization_id=org_id,
        storage=s3,
        config=config,
    )
    assert await s3.read_bytes(media.key) == video.read_bytes()
    assert media.thumbnail is not None and await s3.exists(media.thumbnail.key)
    again = await rethumbnail_video(s3, media.key, timestamp_ms=1500, config=config)
    assert again.key != media.thumbnail.key and again.timestamp_ms == 1500
    assert (await s3.stat(again.key)).content_type == "image/webp"
    assert files_under(tmp_path / "spool") == []  # the local copy is gone
