"""The library with TIDINGS_STORAGE=s3, against a real S3-compatible server (moto's server mode on
127.0.0.1): uploads land in the bucket, /uploads streams or redirects, deletes purge objects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi import FastAPI
from moto.server import ThreadedMotoServer

from tests.conftest import Tenant
from tidings.media.deps import MediaConfigError, MediaEnv, build_storage
from tidings.media.storage import S3Storage
from tidings.media.tasks import purge_deleted_media

from .factories import image_bytes, video_file
from .helpers import configure_media, upload

BUCKET = "tidings-library"
KEYS = {"s3_access_key_id": "test-key", "s3_secret_access_key": "test-secret"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEYS["s3_access_key_id"],
        aws_secret_access_key=KEYS["s3_secret_access_key"],
    ).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


def s3_settings(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "storage": "s3",
        "s3_bucket": BUCKET,
        "s3_endpoint_url": endpoint,
        "s3_region": "us-east-1",
        **KEYS,
        **extra,
    }


def object_keys(env: MediaEnv) -> set[str]:
    assert isinstance(env.storage, S3Storage)
    listing = env.storage._client.list_objects_v2(Bucket=BUCKET)
    return {item["Key"] for item in listing.get("Contents", [])}


async def test_upload_serve_rethumbnail_and_purge_on_s3(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path, s3_endpoint: str
) -> None:
    env = configure_media(app, tmp_path / "data", **s3_settings(s3_endpoint))
    assert isinstance(env.storage, S3Storage)
    assert env.ingest.spool_dir == tmp_path / "data" / "media-spool"
    data = video_file(tmp_path / "v.mp4", frames=20, size=(320, 240)).read_bytes()
    response = await upload(client, tenant, "v.mp4", data)
    assert response.status_code == 201, response.text
    media = response.json()
    key = media["path"].split("/uploads/", 1)[1]
    thumb_key = media["thumbnail"].split("/uploads/", 1)[1]
    assert {key, thumb_key} <= object_keys(env)

    # Without an S3 public URL the app streams the object, ranges included.
    path = f"/uploads/{key}"
    full = await client.get(path)
    assert full.status_code == 200 and full.content == data
    assert full.headers["content-type"] == "video/mp4"
    assert full.headers["x-content-type-options"] == "nosniff"
    part = await client.get(path, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert (
        await client.get(path, headers={"If-None-Match": full.headers["etag"]})
    ).status_code == 304
    assert (await client.get(f"/uploads/{tenant.org_id}/2000/01/nothing.png")).status_code == 404

    # A new thumbnail time works from S3 too.
    patched = await client.patch(
        f"/api/media/{media['id']}", json={"thumbnail_timestamp": 1000}, headers=tenant.headers
    )
    assert patched.status_code == 200, patched.text
    new_thumb = patched.json()["thumbnail"].split("/uploads/", 1)[1]
    assert new_thumb in object_keys(env)

    await client.delete(f"/api/media/{media['id']}", headers=tenant.headers)
    assert await purge_deleted_media(media_ids=[media["id"]], env=env) == 1
    assert not ({key, new_thumb} & object_keys(env))


async def test_s3_public_url_is_the_media_path_and_uploads_redirect(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path, s3_endpoint: str
) -> None:
    cdn = "https://cdn.example.com/media"
    configure_media(app, tmp_path / "data", **s3_settings(s3_endpoint, s3_public_url=cdn))
    response = await upload(client, tenant, "p.png", image_bytes("PNG"))
    assert response.status_code == 201, response.text
    media = response.json()
    assert media["path"].startswith(f"{cdn}/{tenant.org_id}/")
    assert media["thumbnail"].startswith(f"{cdn}/{tenant.org_id}/")
    key = media["path"].removeprefix(f"{cdn}/")
    redirect = await client.get(f"/uploads/{key}")
    assert redirect.status_code == 302
    assert redirect.headers["location"] == media["path"]
    assert (await client.get("/uploads/../etc/passwd")).status_code == 404


async def test_a_failing_bucket_answers_503_and_leaves_nothing_behind(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path, s3_endpoint: str
) -> None:
    # The bucket does not exist: every write fails on the S3 side, not because of the input.
    env = configure_media(
        app, tmp_path / "data", **{**s3_settings(s3_endpoint), "s3_bucket": "no-such-bucket"}
    )
    response = await upload(client, tenant, "p.png", image_bytes("PNG"))
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "storage_unavailable"
    assert list(env.ingest.spool_dir.iterdir()) == []
    assert (await client.get("/api/media", headers=tenant.headers)).json()["total"] == 0


async def test_a_thumbnail_time_change_on_a_failing_bucket_answers_503(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path, s3_endpoint: str
) -> None:
    configure_media(app, tmp_path / "data", **s3_settings(s3_endpoint))
    data = video_file(tmp_path / "v.mp4", frames=20, size=(320, 240)).read_bytes()
    media = (await upload(client, tenant, "v.mp4", data)).json()
    # The bucket goes away (or S3 refuses) after the upload.
    configure_media(
        app, tmp_path / "data", **{**s3_settings(s3_endpoint), "s3_bucket": "no-such-bucket"}
    )
    patched = await client.patch(
        f"/api/media/{media['id']}", json={"thumbnail_timestamp": 1000}, headers=tenant.headers
    )
    assert patched.status_code == 503, patched.text
    assert patched.json()["error"] == "storage_unavailable"
    got = await client.get(f"/api/media/{media['id']}", headers=tenant.headers)
    assert got.json()["thumbnail"] == media["thumbnail"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"storage": "s3"}, "TIDINGS_S3_BUCKET"),
        ({"storage": "s3", "s3_bucket": "b", "s3_access_key_id": "k"}, "TIDINGS_S3_SECRET"),
        ({"storage": "ftp"}, "TIDINGS_STORAGE must be one of local, s3"),
    ],
)
def test_bad_storage_settings_fail_clearly(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    from tidings.config import get_settings

    bad = get_settings().model_copy(update={"data_dir": tmp_path, **settings})
    with pytest.raises(MediaConfigError, match=message):
        build_storage(bad)
