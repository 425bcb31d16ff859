"""The library: list (paged, newest first, by type), get, rename, alt text, video thumbnail time,
delete; another organization's media is invisible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Tenant
from tidings.media.deps import MediaEnv
from tidings.media.models import Media
from tidings.media.storage import LocalStorage
from tidings.media.tasks import delete_unused_objects, purge_deleted_media

from .factories import color_for_frame, image_bytes, video_file
from .helpers import configure_media, image_size, upload


@pytest.fixture
def env(app: FastAPI, tmp_path: Path) -> MediaEnv:
    return configure_media(app, tmp_path / "data")


def stored(env: MediaEnv, url: str) -> Path:
    assert isinstance(env.storage, LocalStorage)
    return env.storage.path_for(url.split("/uploads/", 1)[1])


async def make(client: httpx.AsyncClient, tenant: Tenant, name: str, data: bytes) -> dict[str, Any]:
    response = await upload(client, tenant, name, data)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_list_is_paged_newest_first_and_filtered_by_type(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv, tmp_path: Path
) -> None:
    names = [f"img-{i}.png" for i in range(5)]
    for name in names:
        await make(client, tenant, name, image_bytes("PNG", size=(64, 64)))
    video = video_file(tmp_path / "v.mp4", frames=5).read_bytes()
    await make(client, tenant, "clip.mp4", video)
    await make(client, tenant, "doc.pdf", image_bytes("PDF"))

    first = (await client.get("/api/media?per_page=3", headers=tenant.headers)).json()
    assert first["total"] == 7 and first["pages"] == 3 and first["page"] == 1
    assert [m["name"] for m in first["items"]] == ["doc.pdf", "clip.mp4", "img-4.png"]
    third = (await client.get("/api/media?per_page=3&page=3", headers=tenant.headers)).json()
    assert [m["name"] for m in third["items"]] == ["img-0.png"]
    beyond = (await client.get("/api/media?per_page=3&page=9", headers=tenant.headers)).json()
    assert beyond["items"] == [] and beyond["total"] == 7

    images = (await client.get("/api/media?type=image", headers=tenant.headers)).json()
    assert [m["name"] for m in images["items"]] == list(reversed(names))
    videos = (await client.get("/api/media?type=video", headers=tenant.headers)).json()
    assert [m["name"] for m in videos["items"]] == ["clip.mp4"]
    pdfs = (await client.get("/api/media?type=pdf", headers=tenant.headers)).json()
    assert [m["name"] for m in pdfs["items"]] == ["doc.pdf"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("type=audio", "type"), ("page=0", "page"), ("per_page=500", "per_page"), ("page=x", "page")],
)
async def test_bad_list_queries_are_422_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv, query: str, field: str
) -> None:
    response = await client.get(f"/api/media?{query}", headers=tenant.headers)
    assert response.status_code == 422
    assert response.json()["field"] == field


async def test_get_rename_and_alt_text(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv
) -> None:
    media = await make(client, tenant, "IMG_0001.jpg", image_bytes("JPEG"))
    url = f"/api/media/{media['id']}"
    got = await client.get(url, headers=tenant.headers)
    assert got.status_code == 200 and got.json() == media

    renamed = await client.patch(url, json={"name": "  Team photo  "}, headers=tenant.headers)
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Team photo"
    assert renamed.json()["path"] == media["path"]  # the file and its URL do not move

    alt = await client.patch(url, json={"alt": "Five people on a bench"}, headers=tenant.headers)
    assert alt.json()["alt"] == "Five people on a bench"
    assert alt.json()["name"] == "Team photo"
    cleared = await client.patch(url, json={"alt": None}, headers=tenant.headers)
    assert cleared.json()["alt"] is None
    both = await client.patch(url, json={"name": "B", "alt": "c\u0000d"}, headers=tenant.headers)
    assert (both.json()["name"], both.json()["alt"]) == ("B", "cd")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": None}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"alt": "x" * 2001}, "alt"),
        ({"thumbnail_timestamp": -1}, "thumbnail_timestamp"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_edits_are_refused_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv, body: dict[str, Any], field: str
) -> None:
    media = await make(client, tenant, "a.png", image_bytes("PNG"))
    response = await client.patch(f"/api/media/{media['id']}", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


async def test_video_thumbnail_time_replaces_the_thumbnail(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant, env: MediaEnv, tmp_path: Path
) -> None:
    # 30 frames at 10 fps; frame i is filled with color_for_frame(i).
    video = video_file(tmp_path / "v.mp4", frames=30, rate=10, size=(320, 240), gop=5)
    media = await make(client, tenant, "v.mp4", video.read_bytes())
    first_thumb = media["thumbnail"]
    old_file = stored(env, first_thumb)
    assert old_file.exists()

    response = await client.patch(
        f"/api/media/{media['id']}", json={"thumbnail_timestamp": 1500}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["thumbnail_timestamp"] == 1500
    assert body["thumbnail"] != first_thumb
    thumb = await client.get(body["thumbnail"].removeprefix("http://testserver"))
    assert image_size(thumb.content) == (320, 240)
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(thumb.content)) as image:
        red = image.convert("RGB").getpixel((160, 120))[0]  # type: ignore[index]
    assert abs(red - color_for_frame(15)[0]) < 20  # the frame at 1.5 s

    # The old thumbnail is deleted by a job deferred with the change, once committed.
    jobs = await db.execute(
        text("SELECT args FROM procrastinate_jobs WHERE task_name = 'media.delete_unused_objects'")
    )
    [args] = jobs.scalars().all()
    assert args == {"keys": [old_file.relative_to(env.storage.root).as_posix()]}  # type: ignore[attr-defined]
    assert await delete_unused_objects(args["keys"], env=env) == 1
    assert not old_file.exists()
    assert stored(env, body["thumbnail"]).exists()

    # Past the end: the last frame, and the time actually used is recorded.
    late = await client.patch(
        f"/api/media/{media['id']}", json={"thumbnail_timestamp": 999_000}, headers=tenant.headers
    )
    assert 2800 <= late.json()["thumbnail_timestamp"] <= 3000


async def test_only_videos_have_a_thumbnail_time(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv
) -> None:
    media = await make(client, tenant, "a.png", image_bytes("PNG"))
    response = await client.patch(
        f"/api/media/{media['id']}", json={"thumbnail_timestamp": 100}, headers=tenant.headers
    )
    assert response.status_code == 400
    assert response.json()["field"] == "thumbnail_timestamp"


async def test_delete_hides_the_media_and_a_job_removes_its_files(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant, env: MediaEnv
) -> None:
    media = await make(client, tenant, "a.png", image_bytes("PNG"))
    files = [stored(env, media["path"]), stored(env, media["thumbnail"])]
    response = await client.delete(f"/api/media/{media['id']}", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json() == {"id": media["id"], "deleted": True, "kept_for_posts": 0}
    assert (
        await client.get(f"/api/media/{media['id']}", headers=tenant.headers)
    ).status_code == 404
    assert (await client.get("/api/media", headers=tenant.headers)).json()["total"] == 0
    again = await client.delete(f"/api/media/{media['id']}", headers=tenant.headers)
    assert again.status_code == 404

    jobs = await db.execute(
        text("SELECT args FROM procrastinate_jobs WHERE task_name = 'media.purge_deleted'")
    )
    assert jobs.scalars().all() == [{"media_id": media["id"]}]
    assert all(f.exists() for f in files)  # nothing is deleted before the job runs
    assert await purge_deleted_media(media_ids=[media["id"]], env=env) == 1
    assert not any(f.exists() for f in files)
    row = (
        await db.execute(
            select(Media).where(Media.id == media["id"]).execution_options(include_deleted=True)
        )
    ).scalar_one()
    assert row.deleted_at is not None and row.storage_key is None and row.thumbnail_key is None
    assert (await client.get(media["path"].removeprefix("http://testserver"))).status_code == 404


async def test_another_organizations_media_is_invisible(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, env: MediaEnv
) -> None:
    mine = await make(client, tenant, "mine.png", image_bytes("PNG"))
    theirs = await make(client, other_tenant, "theirs.png", image_bytes("PNG"))
    listed = (await client.get("/api/media", headers=other_tenant.headers)).json()
    assert [m["id"] for m in listed["items"]] == [theirs["id"]]
    assert mine["id"] not in str(listed)
    url = f"/api/media/{mine['id']}"
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        response = await client.request(method, url, json=body, headers=other_tenant.headers)
        assert response.status_code == 404, (method, response.text)
    thumb = await client.patch(url, json={"thumbnail_timestamp": 10}, headers=other_tenant.headers)
    assert thumb.status_code == 404
    # Pointing the organization header at the other organization does not help either.
    spoofed = {**other_tenant.headers, "X-Tidings-Org": tenant.org_id}
    assert (await client.get("/api/media", headers=spoofed)).status_code == 404
    assert (await client.get(url, headers=tenant.headers)).json()["name"] == "mine.png"


@pytest.mark.parametrize("media_id", ["nope", "x" * 300, "%00", "a%00b"])
async def test_odd_ids_are_404(
    client: httpx.AsyncClient, tenant: Tenant, env: MediaEnv, media_id: str
) -> None:
    response = await client.get(f"/api/media/{media_id}", headers=tenant.headers)
    assert response.status_code == 404
