"""GET/HEAD /uploads/<key>: headers, byte ranges, conditional requests, and no way out of the
storage root."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import Tenant
from tidings.media.deps import MediaEnv
from tidings.media.serving import parse_range
from tidings.media.storage import IMMUTABLE_CACHE_CONTROL, LocalStorage

from .factories import image_bytes, video_file
from .helpers import configure_media, upload


@pytest.fixture
def env(app: FastAPI, tmp_path: Path) -> MediaEnv:
    return configure_media(app, tmp_path / "data")


@pytest.fixture
async def video(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv, tmp_path: Path
) -> tuple[str, bytes]:
    """(public path of an uploaded MP4, its bytes)."""
    data = video_file(tmp_path / "clip.mp4", frames=30, size=(320, 240)).read_bytes()
    response = await upload(client, tenant, "clip.mp4", data)
    assert response.status_code == 201, response.text
    return response.json()["path"].removeprefix("http://testserver"), data


async def test_full_answer_headers(client: httpx.AsyncClient, video: tuple[str, bytes]) -> None:
    path, data = video
    response = await client.get(path)  # no credentials: platforms fetch anonymously
    assert response.status_code == 200
    assert response.content == data
    h = response.headers
    assert h["content-type"] == "video/mp4"
    assert h["content-length"] == str(len(data))
    assert h["accept-ranges"] == "bytes"
    assert h["cache-control"] == IMMUTABLE_CACHE_CONTROL
    assert h["x-content-type-options"] == "nosniff"
    assert h["content-security-policy"] == "sandbox"
    assert h["etag"].startswith('"') and h["last-modified"].endswith("GMT")


async def test_head_has_the_headers_and_no_body(
    client: httpx.AsyncClient, video: tuple[str, bytes]
) -> None:
    path, data = video
    response = await client.head(path)
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-type"] == "video/mp4"
    ranged = await client.head(path, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.headers["content-length"] == "10"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=100-199", 100, 200),
        ("bytes=500-", 500, None),
        ("bytes=-300", -300, None),
        ("bytes=10-999999999", 10, None),  # clamped to the end
        ("BYTES = 5 - 6", 5, 7),
    ],
)
async def test_byte_ranges(
    client: httpx.AsyncClient, video: tuple[str, bytes], header: str, start: int, end: int | None
) -> None:
    path, data = video
    response = await client.get(path, headers={"Range": header})
    assert response.status_code == 206
    expected = data[start:end] if end is not None else data[start:]
    assert response.content == expected
    first = start if start >= 0 else len(data) + start
    assert response.headers["content-range"] == (
        f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    )
    assert response.headers["content-length"] == str(len(expected))


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=-0"])
async def test_unsatisfiable_range_is_416(
    client: httpx.AsyncClient, video: tuple[str, bytes], header: str
) -> None:
    path, data = video
    response = await client.get(path, headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize(
    "header",
    ["bytes=0-1,5-6", "items=0-1", "bytes=9-2", "bytes=abc", "bytes=-", "bytes=\uff11-\uff12"],
)
async def test_ranges_we_do_not_serve_get_the_whole_file(
    client: httpx.AsyncClient, video: tuple[str, bytes], header: str
) -> None:
    path, data = video
    response = await client.get(path, headers={"Range": header.encode()})
    assert response.status_code == 200 and response.content == data


async def test_conditional_requests(client: httpx.AsyncClient, video: tuple[str, bytes]) -> None:
    path, data = video
    first = await client.get(path)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert (await client.get(path, headers={"If-None-Match": etag})).status_code == 304
    assert (await client.get(path, headers={"If-None-Match": f'"x", W/{etag}'})).status_code == 304
    assert (await client.get(path, headers={"If-None-Match": '"other"'})).status_code == 200
    assert (await client.get(path, headers={"If-Modified-Since": modified})).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert (await client.get(path, headers={"If-Modified-Since": old})).status_code == 200
    # If-Range: the range only if the client's copy is current.
    same = await client.get(path, headers={"Range": "bytes=0-3", "If-Range": etag})
    assert same.status_code == 206 and same.content == data[:4]
    changed = await client.get(path, headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert changed.status_code == 200 and changed.content == data


async def test_thumbnails_and_images_are_served_with_their_type(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv
) -> None:
    body = (await upload(client, tenant, "p.jpg", image_bytes("JPEG"))).json()
    image = await client.get(body["path"].removeprefix("http://testserver"))
    assert image.headers["content-type"] == "image/jpeg"
    thumb = await client.get(body["thumbnail"].removeprefix("http://testserver"))
    assert thumb.headers["content-type"] == "image/webp"


def test_parse_range_edges() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == (0, 1)
    assert parse_range("bytes=-20", 10) == (0, 10)  # more than the file: all of it
    assert parse_range("bytes=9-", 10) == (9, 10)
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=3-1", 10) is None


# ---- no way out of the storage root ---------------------------------------------------------


async def raw_get(app: FastAPI, path: str, method: str = "GET") -> tuple[int, bytes]:
    """Call the app with exactly this (already percent-decoded) path, as uvicorn passes it:
    no client-side normalisation of ``..`` or encodings."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    status = 0
    body = bytearray()
    requested = False
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # the client stays connected until the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    return status, bytes(body)


async def test_traversal_attempts_are_404_and_never_read_outside_the_root(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv, tmp_path: Path
) -> None:
    assert isinstance(env.storage, LocalStorage)
    root = env.storage.root
    secret = b"TOP SECRET outside the media root"
    (tmp_path / "data" / "secret.txt").write_bytes(secret)
    (tmp_path / "secret.png").write_bytes(secret)
    # Something that exists inside the root but is not an object: the spool, a directory.
    body = (await upload(client, tenant, "p.png", image_bytes("PNG"))).json()
    key = body["path"].split("/uploads/", 1)[1]
    spool_file = env.ingest.spool_dir / "upload-x.part"
    spool_file.parent.mkdir(parents=True, exist_ok=True)
    spool_file.write_bytes(secret)
    # A symlink planted inside the root that points out of it.
    link_dir = root / tenant.org_id / "2020" / "01"
    link_dir.mkdir(parents=True)
    os.symlink(tmp_path / "secret.png", link_dir / "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.png")

    attempts = [
        "/uploads/../secret.txt",
        "/uploads/../../secret.png",
        "/uploads/%2e%2e/secret.txt",  # if a layer decoded twice
        "/uploads/..%2fsecret.txt",
        "/uploads/..\\secret.txt",
        "/uploads/%5c..%5csecret.txt",
        f"/uploads/{tenant.org_id}/../../secret.txt",
        f"/uploads/{tenant.org_id}/./2020/../../secret.txt",
        "/uploads//etc/passwd",
        "/uploads/etc/passwd\x00.png",
        f"/uploads/{key}\x00",
        f"/uploads/{key}/",
        f"/uploads/{key}/..",
        "/uploads/.spool/upload-x.part",
        f"/uploads/{tenant.org_id}",
        f"/uploads/{tenant.org_id}/2020/01/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.png",  # the symlink
        "/uploads/",
        "/uploads/C:\\Windows\\win.ini",
        "/uploads/~/secret.txt",
        f"/uploads/{str(tmp_path / 'secret.png').lstrip('/')}",
    ]
    for path in attempts:
        for method in ("GET", "HEAD"):
            status, content = await raw_get(app, path, method)
            assert status == 404, (path, status)
            assert secret not in content, path
    # The real key is served by the same route.
    status, content = await raw_get(app, f"/uploads/{key}")
    assert status == 200 and content == (root / key).read_bytes()


async def test_missing_object_is_a_json_404(client: httpx.AsyncClient, env: MediaEnv) -> None:
    response = await client.get("/uploads/org/2024/01/0123456789abcdef0123456789abcdef.png")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
