"""Uploads (multipart and from a URL) and notifications through the Public API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.media.factories import image_bytes, video_file
from tests.media.helpers import configure_media
from tests.public_api.conftest import ApiKey
from tidings.media.models import Media
from tidings.notifications.models import Notifications

BASE = "/public/v1"
PNG = image_bytes("PNG", size=(320, 200))
MEDIA_FIELDS = {"id", "name", "path", "thumbnail", "alt", "fileSize", "type"}


@pytest.fixture
def media_dir(app: FastAPI, tmp_path: Path) -> Path:
    configure_media(app, tmp_path / "data")
    return tmp_path / "data"


class Files(FakePlatform):
    """A public file host: ``/photo.png`` and ``/notes.txt``."""

    def setup_routes(self) -> None:
        self.add("GET", "/photo.png", self.photo)
        self.add("GET", "/notes.txt", self.notes)

    async def photo(self, request: RecordedRequest) -> Response:
        return Response(PNG, media_type="image/png")

    async def notes(self, request: RecordedRequest) -> Response:
        return Response(b"just text", media_type="text/plain")


@pytest.fixture
async def files() -> AsyncIterator[Files]:
    async with Files() as server:
        yield server


async def test_upload_image_and_video_as_the_cli_does(
    media_dir: Path, client: httpx.AsyncClient, db: AsyncSession, api: ApiKey, tmp_path: Path
) -> None:
    response = await client.post(
        f"{BASE}/upload", files={"file": ("photo.png", PNG, "image/png")}, headers=api.headers
    )
    assert response.status_code == 201, response.text
    media = response.json()
    assert set(media) >= MEDIA_FIELDS
    assert media["name"] == "photo.png" and media["type"] == "image"
    assert media["fileSize"] == len(PNG)
    assert media["path"].startswith("http://testserver/uploads/")
    served = await client.get(media["path"].removeprefix("http://testserver"))
    assert served.status_code == 200 and served.content == PNG
    row = await db.get(Media, media["id"])
    assert row is not None and row.organization_id == api.org_id

    clip = video_file(tmp_path / "clip.mp4")
    video = await client.post(
        f"{BASE}/upload",
        files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")},
        headers=api.headers,
    )
    assert video.status_code == 201, video.text
    assert video.json()["type"] == "video" and video.json()["thumbnail"]


async def test_upload_refuses_what_is_not_an_image_or_video(
    media_dir: Path, client: httpx.AsyncClient, db: AsyncSession, api: ApiKey
) -> None:
    pdf = image_bytes("PDF")
    for name, data in (("doc.pdf", pdf), ("notes.txt", b"hello there"), ("a.png", b"not a png")):
        response = await client.post(
            f"{BASE}/upload", files={"file": (name, data, "image/png")}, headers=api.headers
        )
        assert response.status_code == 415, (name, response.text)
        assert response.json()["field"] == "file"
    wrong_field = await client.post(
        f"{BASE}/upload", files={"image": ("a.png", PNG, "image/png")}, headers=api.headers
    )
    assert wrong_field.status_code == 400 and wrong_field.json()["field"] == "file"
    not_multipart = await client.post(f"{BASE}/upload", json={"file": "x"}, headers=api.headers)
    assert not_multipart.status_code == 400
    assert (await db.execute(select(Media))).scalars().all() == []


async def test_upload_from_url(
    allow_private: None,
    media_dir: Path,
    files: Files,
    client: httpx.AsyncClient,
    api: ApiKey,
) -> None:
    response = await client.post(
        f"{BASE}/upload-from-url", json={"url": files.url("/photo.png")}, headers=api.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["type"] == "image" and response.json()["fileSize"] == len(PNG)
    text = await client.post(
        f"{BASE}/upload-from-url", json={"url": files.url("/notes.txt")}, headers=api.headers
    )
    assert text.status_code == 415
    missing = await client.post(f"{BASE}/upload-from-url", json={}, headers=api.headers)
    assert missing.status_code == 422 and missing.json()["field"] == "url"


async def test_upload_from_a_private_address_is_refused(
    media_dir: Path, files: Files, client: httpx.AsyncClient, api: ApiKey
) -> None:
    response = await client.post(
        f"{BASE}/upload-from-url", json={"url": files.url("/photo.png")}, headers=api.headers
    )
    assert response.status_code == 400 and response.json()["field"] == "url"
    assert files.requests == []


async def test_notifications_are_paged_newest_first(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey, other_api: ApiKey
) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    for i in range(105):
        db.add(
            Notifications(
                organization_id=api.org_id,
                content=f"note {i}",
                link="/posts" if i == 104 else None,
                created_at=start + timedelta(minutes=i),
            )
        )
    db.add(Notifications(organization_id=other_api.org_id, content="theirs"))
    db.add(
        Notifications(
            organization_id=api.org_id,
            content="deleted",
            created_at=start + timedelta(days=1),
            deleted_at=start,
        )
    )
    await db.flush()

    first = await client.get(f"{BASE}/notifications", headers=api.headers)
    assert first.status_code == 200, first.text
    page = first.json()
    assert page["total"] == 105 and page["page"] == 0 and page["limit"] == 100
    assert page["hasMore"] is True
    assert len(page["notifications"]) == 100
    newest = page["notifications"][0]
    assert set(newest) == {"id", "content", "link", "createdAt"}
    assert newest["content"] == "note 104" and newest["link"] == "/posts"
    second = await client.get(f"{BASE}/notifications", params={"page": 1}, headers=api.headers)
    rest = second.json()
    assert [n["content"] for n in rest["notifications"]] == [f"note {i}" for i in range(4, -1, -1)]
    assert rest["hasMore"] is False
    theirs = await client.get(f"{BASE}/notifications", headers=other_api.headers)
    assert [n["content"] for n in theirs.json()["notifications"]] == ["theirs"]
    negative = await client.get(f"{BASE}/notifications", params={"page": -1}, headers=api.headers)
    assert negative.status_code == 422 and negative.json()["field"] == "page"
