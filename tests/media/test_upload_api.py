"""POST /api/media and /api/media/from-url: real files of every type through the app API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import features

from tests.conftest import Tenant
from tidings.media.deps import MediaEnv
from tidings.media.storage import LocalStorage

from .conftest import bytes_under, files_under
from .factories import (
    ELF_EXECUTABLE,
    PE_EXECUTABLE,
    audio_with_cover_mp4,
    image_bytes,
    video_file,
    webm_with_attachment,
)
from .helpers import CONTENT_TYPE, add_member, configure_media, image_size, streamed_body, upload
from .http_server import PNG as REMOTE_PNG
from .http_server import MediaServer

MB = 1024 * 1024


@pytest.fixture
def env(app: FastAPI, tmp_path: Path) -> MediaEnv:
    return configure_media(app, tmp_path / "data")


def media_root(env: MediaEnv) -> Path:
    assert isinstance(env.storage, LocalStorage)
    return env.storage.root


async def fetch(client: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET a public media URL (``http://testserver/uploads/...``) without any credentials."""
    assert url.startswith("http://testserver/uploads/"), url
    return await client.get(url.removeprefix("http://testserver"))


IMAGE_CASES = [
    ("photo.png", "PNG", "image/png", {}),
    ("photo.jpg", "JPEG", "image/jpeg", {"quality": 90}),
    ("anim.gif", "GIF", "image/gif", {}),
    ("photo.webp", "WEBP", "image/webp", {}),
]
if features.check("avif"):
    IMAGE_CASES.append(("photo.avif", "AVIF", "image/avif", {}))


@pytest.mark.parametrize(("filename", "fmt", "mime", "save"), IMAGE_CASES)
async def test_images_are_stored_measured_and_thumbnailed(
    client: httpx.AsyncClient,
    tenant: Tenant,
    env: MediaEnv,
    filename: str,
    fmt: str,
    mime: str,
    save: dict[str, Any],
) -> None:
    data = image_bytes(fmt, size=(1600, 900), **save)
    response = await upload(client, tenant, filename, data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["type"] == "image" and body["mime_type"] == mime
    assert body["name"] == filename
    assert (body["width"], body["height"]) == (1600, 900)
    assert body["file_size"] == len(data)
    assert body["path"].startswith(f"http://testserver/uploads/{tenant.org_id}/")
    # The stored bytes are exactly the upload, served publicly with the sniffed type.
    served = await fetch(client, body["path"])
    assert served.status_code == 200
    assert served.content == data and served.headers["content-type"] == mime
    # Thumbnail: fits the 512 px box, same proportions.
    thumb = await fetch(client, body["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert image_size(thumb.content) == (512, 288)


async def test_small_image_thumbnail_is_not_enlarged(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv
) -> None:
    response = await upload(client, tenant, "icon.png", image_bytes("PNG", size=(200, 100)))
    assert response.status_code == 201, response.text
    thumb = await fetch(client, response.json()["thumbnail"])
    assert image_size(thumb.content) == (200, 100)


@pytest.mark.parametrize(
    ("filename", "container", "codec", "mime"),
    [
        ("clip.mp4", "mp4", "libx264", "video/mp4"),
        ("clip.mov", "mov", "libx264", "video/quicktime"),
        ("clip.webm", "webm", "libvpx", "video/webm"),
    ],
)
async def test_videos_are_stored_with_duration_and_frame_thumbnail(
    client: httpx.AsyncClient,
    tenant: Tenant,
    env: MediaEnv,
    tmp_path: Path,
    filename: str,
    container: str,
    codec: str,
    mime: str,
) -> None:
    path = video_file(
        tmp_path / filename, container=container, codec=codec, size=(640, 360), frames=20
    )
    data = path.read_bytes()
    response = await upload(client, tenant, filename, data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["type"] == "video" and body["mime_type"] == mime
    assert (body["width"], body["height"]) == (640, 360)
    assert 1900 <= body["duration_ms"] <= 2100
    assert body["thumbnail_timestamp"] == 0
    assert (await fetch(client, body["path"])).content == data
    thumb = await fetch(client, body["thumbnail"])
    assert image_size(thumb.content) == (512, 288)


async def test_pdf_is_stored_without_thumbnail(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv
) -> None:
    data = image_bytes("PDF", size=(300, 400))
    response = await upload(client, tenant, "brochure.pdf", data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["type"] == "pdf" and body["mime_type"] == "application/pdf"
    assert body["thumbnail"] is None and body["width"] is None
    served = await fetch(client, body["path"])
    assert served.content == data
    assert served.headers["content-type"] == "application/pdf"
    assert served.headers["content-security-policy"] == "sandbox"


async def test_name_and_alt_fields_before_or_after_the_file(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv
) -> None:
    before = await upload(
        client,
        tenant,
        "a.png",
        image_bytes("PNG"),
        before=[("alt", "A red door"), ("name", "Door")],
    )
    after = await upload(
        client, tenant, "b.png", image_bytes("PNG"), after=[("alt", "Blue sky"), ("name", "Sky")]
    )
    assert (before.json()["name"], before.json()["alt"]) == ("Door", "A red door")
    assert (after.json()["name"], after.json()["alt"]) == ("Sky", "Blue sky")


async def test_a_bad_alt_after_the_file_leaves_nothing_stored(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv
) -> None:
    response = await upload(
        client, tenant, "a.png", image_bytes("PNG"), after=[("alt", "x" * 2001)]
    )
    assert response.status_code == 400
    assert response.json()["field"] == "alt"
    assert files_under(media_root(env)) == []
    listed = await client.get("/api/media", headers=tenant.headers)
    assert listed.json()["total"] == 0


@pytest.mark.parametrize(
    ("filename", "data", "says"),
    [
        ("holiday.jpg", ELF_EXECUTABLE, "ELF executable"),
        ("clip.mp4", PE_EXECUTABLE, "Windows executable"),
        ("setup.exe", PE_EXECUTABLE, "Windows executable"),
        ("notes.png", b"just some text, really\n" * 20, "text file"),
    ],
)
async def test_executables_and_other_files_are_refused_with_415(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv, filename: str, data: bytes, says: str
) -> None:
    response = await upload(client, tenant, filename, data)
    assert response.status_code == 415, response.text
    body = response.json()
    assert body["field"] == "file" and says in body["message"]
    assert files_under(media_root(env)) == []


async def test_a_video_container_hiding_a_file_or_only_sound_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv, tmp_path: Path
) -> None:
    hiding = webm_with_attachment(tmp_path / "clip.webm", ELF_EXECUTABLE * 50).read_bytes()
    song = audio_with_cover_mp4(tmp_path / "song.mp4").read_bytes()
    cases = (("clip.webm", hiding, "attached file"), ("song.mp4", song, "no video"))
    for name, data, says in cases:
        response = await upload(client, tenant, name, data)
        assert response.status_code == 415, response.text
        assert response.json()["field"] == "file" and says in response.json()["message"]
    assert files_under(media_root(env)) == []


async def test_content_contradicting_the_name_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv
) -> None:
    response = await upload(client, tenant, "movie.mp4", image_bytes("JPEG"))
    assert response.status_code == 415
    assert response.json()["error"] == "media_type_mismatch"
    assert "JPEG image" in response.json()["message"]


async def test_zero_byte_file_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv
) -> None:
    response = await upload(client, tenant, "empty.png", b"")
    assert response.status_code == 400
    assert response.json() == {
        "error": "empty_file",
        "message": "the file is empty",
        "field": "file",
    }


async def test_not_multipart_or_no_file_is_a_400_naming_file(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv
) -> None:
    raw = await client.post(
        "/api/media",
        content=image_bytes("PNG"),
        headers={**tenant.headers, "Content-Type": "image/png"},
    )
    assert raw.status_code == 400 and raw.json()["field"] == "file"
    no_file = await client.post(
        "/api/media",
        data={"alt": "nothing"},
        files={"other": ("x.png", b"123")},
        headers=tenant.headers,
    )
    assert no_file.status_code == 400 and no_file.json()["field"] == "file"


async def test_oversize_upload_is_refused_while_streaming_without_filling_the_disk(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path
) -> None:
    env = configure_media(app, tmp_path / "data", max_image_bytes=1 * MB)
    spool = env.ingest.spool_dir
    seen: list[int] = []
    disk: list[int] = []

    async def body() -> Any:
        async for piece in streamed_body(
            image_bytes("PNG"), 40 * MB, filename="huge.png", seen=seen
        ):
            disk.append(bytes_under(spool))
            yield piece

    # No Content-Length: the limit can only be enforced by counting.
    response = await client.post(
        "/api/media", content=body(), headers={**tenant.headers, "Content-Type": CONTENT_TYPE}
    )
    assert response.status_code == 413, response.text
    assert response.json()["field"] == "file"
    assert "image files may be at most 1 MB" in response.json()["message"]
    assert max(disk) <= 1 * MB  # the spool never held more than the limit
    assert files_under(media_root(env)) == []  # spool removed, nothing stored
    assert seen[-1] < 3 * MB  # refused long before the 40 MB were sent


async def test_declared_oversize_is_refused_before_reading(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path
) -> None:
    configure_media(
        app, tmp_path / "data", max_image_bytes=MB, max_video_bytes=2 * MB, max_pdf_bytes=MB
    )
    seen: list[int] = []
    response = await client.post(
        "/api/media",
        content=streamed_body(image_bytes("PNG"), 50 * MB, filename="big.png", seen=seen),
        headers={
            **tenant.headers,
            "Content-Type": CONTENT_TYPE,
            "Content-Length": str(50 * MB + 300),
        },
    )
    assert response.status_code == 413
    assert "at most 2 MB" in response.json()["message"]
    assert len(seen) <= 1


async def test_video_limit_applies_to_videos(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path
) -> None:
    configure_media(app, tmp_path / "data", max_video_bytes=5_000)
    data = video_file(tmp_path / "v.mp4", frames=40, size=(640, 360)).read_bytes()
    assert len(data) > 5_000
    response = await upload(client, tenant, "v.mp4", data)
    assert response.status_code == 413
    assert response.json()["kind"] == "video"
    # An image of the same size is fine: limits are per kind.
    assert (
        await upload(client, tenant, "p.png", image_bytes("PNG", size=(400, 400)))
    ).status_code == 201


async def test_a_plain_member_may_upload(
    client: httpx.AsyncClient, tenant: Tenant, test_database: Any, env: MediaEnv
) -> None:
    member = await add_member(test_database, tenant, role="USER")
    response = await upload(client, member, "m.png", image_bytes("PNG"))
    assert response.status_code == 201, response.text
    listed = await client.get("/api/media", headers=tenant.headers)
    assert [m["id"] for m in listed.json()["items"]] == [response.json()["id"]]


async def test_upload_needs_a_signed_in_member(client: httpx.AsyncClient, env: MediaEnv) -> None:
    response = await client.post(
        "/api/media",
        content=b"--x--",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 401


# ---- upload from URL -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def remote() -> Iterator[MediaServer]:
    server = MediaServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


async def test_upload_from_url(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path, remote: MediaServer
) -> None:
    configure_media(app, tmp_path / "data", allow_private_urls=True)
    response = await client.post(
        "/api/media/from-url",
        json={"url": f"{remote.base}/files/holiday-photo.png", "alt": "Holiday"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "holiday-photo.png" and body["alt"] == "Holiday"
    assert (body["width"], body["height"]) == (320, 200)
    assert (await fetch(client, body["path"])).content == REMOTE_PNG


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "http://127.0.0.1:9/a.png",  # private, and not https
        "https://127.0.0.1:9/a.png",  # loopback
        "https://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
    ],
)
async def test_upload_from_url_refuses_bad_and_private_urls(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv, url: str
) -> None:
    response = await client.post("/api/media/from-url", json={"url": url}, headers=tenant.headers)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "url"


async def test_upload_from_url_refuses_what_is_not_media(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, tmp_path: Path, remote: MediaServer
) -> None:
    configure_media(app, tmp_path / "data", allow_private_urls=True)
    page = await client.post(
        "/api/media/from-url", json={"url": f"{remote.base}/page.html"}, headers=tenant.headers
    )
    assert page.status_code == 415 and page.json()["field"] == "url"
    missing = await client.post(
        "/api/media/from-url", json={"url": f"{remote.base}/status/404"}, headers=tenant.headers
    )
    assert missing.status_code == 400 and "404" in missing.json()["message"]
