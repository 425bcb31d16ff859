"""Media used by posts: a deleted media still referenced by a queued post keeps its files until
the post no longer needs them, and ``media_items_for`` gives the publishing engine its bytes."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.factories import make_channel
from tests.conftest import Tenant
from tidings.core.enums import State
from tidings.core.tenancy import OrgId
from tidings.media.deps import MediaEnv
from tidings.media.models import Media
from tidings.media.service import media_items_for
from tidings.media.storage import LocalStorage
from tidings.media.tasks import media_housekeeping, purge_deleted_media
from tidings.posts.models import Post

from .factories import image_bytes, video_file
from .helpers import configure_media, upload


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


async def make_post(
    db: AsyncSession, org_id: str, image: list[dict[str, Any]], state: State = State.QUEUE
) -> Post:
    channel = await make_channel(db, org_id, name=f"ch-{uuid.uuid4().hex[:6]}")
    post = Post(
        organization_id=org_id,
        integration_id=channel.id,
        content="Hello",
        group=uuid.uuid4().hex,
        publish_date=datetime.now(UTC) + timedelta(days=1),
        state=state,
        image=image,
    )
    db.add(post)
    await db.flush()
    return post


async def files_of(db: AsyncSession, media_id: str) -> tuple[str | None, str | None]:
    row = (
        await db.execute(
            select(Media).where(Media.id == media_id).execution_options(include_deleted=True)
        )
    ).scalar_one()
    await db.refresh(row)
    return row.storage_key, row.thumbnail_key


async def test_deleted_media_used_by_a_queued_post_is_kept_until_the_post_is_published(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant, env: MediaEnv
) -> None:
    media = await make(client, tenant, "launch.png", image_bytes("PNG"))
    files = [stored(env, media["path"]), stored(env, media["thumbnail"])]
    post = await make_post(
        db, tenant.org_id, [{"id": media["id"], "path": media["path"], "alt": "Launch"}]
    )

    response = await client.delete(f"/api/media/{media['id']}", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["kept_for_posts"] == 1
    # Gone from the library...
    assert (await client.get("/api/media", headers=tenant.headers)).json()["total"] == 0
    # ...but the job keeps the files, which stay served to the platforms.
    assert await purge_deleted_media(env=env) == 0
    assert all(f.exists() for f in files)
    served = await client.get(media["path"].removeprefix("http://testserver"))
    assert served.status_code == 200

    # The post publishes with its media read from storage.
    [item] = await media_items_for(db, OrgId(tenant.org_id), post.image, env=env)
    assert item.read is not None and await item.read() == files[0].read_bytes()
    assert item.url == media["path"] and item.alt == "Launch"

    post.state = State.PUBLISHED
    await db.flush()
    assert await purge_deleted_media(env=env) == 1
    assert not any(f.exists() for f in files)
    assert await files_of(db, media["id"]) == (None, None)
    assert await purge_deleted_media(env=env) == 0  # done once


async def test_kept_while_any_queued_or_draft_post_uses_it_then_purged_when_changed(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant, env: MediaEnv
) -> None:
    media = await make(client, tenant, "a.png", image_bytes("PNG"))
    other = await make(client, tenant, "b.png", image_bytes("PNG"))
    # Referenced by path only (the Public API allows it), and by id from a draft.
    queued = await make_post(db, tenant.org_id, [{"path": media["path"]}])
    draft = await make_post(db, tenant.org_id, [{"id": media["id"]}], state=State.DRAFT)
    # Posts that do not keep it: published, errored, deleted, or another organization's.
    await make_post(db, tenant.org_id, [{"id": media["id"]}], state=State.PUBLISHED)
    await make_post(db, tenant.org_id, [{"id": media["id"]}], state=State.ERROR)
    deleted = await make_post(db, tenant.org_id, [{"id": media["id"]}])
    deleted.deleted_at = datetime.now(UTC)
    foreign = await make_tenant_org(db)
    await make_post(db, foreign, [{"id": media["id"], "path": media["path"]}])
    await db.flush()

    response = await client.delete(f"/api/media/{media['id']}", headers=tenant.headers)
    assert response.json()["kept_for_posts"] == 2
    await client.delete(f"/api/media/{other['id']}", headers=tenant.headers)

    # The unused one goes; the used one stays.
    assert await purge_deleted_media(env=env) == 1
    assert (await files_of(db, other["id"])) == (None, None)
    assert (await files_of(db, media["id"]))[0] is not None

    queued.image = [{"path": "https://elsewhere.example/x.png"}]  # the post was changed
    await db.flush()
    assert await purge_deleted_media(env=env) == 0  # the draft still uses it
    draft.deleted_at = datetime.now(UTC)
    await db.flush()
    assert await purge_deleted_media(env=env) == 1
    assert not stored(env, media["path"]).exists()


async def make_tenant_org(db: AsyncSession) -> str:
    from tidings.orgs.models import Organization

    org = Organization(name="Foreign")
    db.add(org)
    await db.flush()
    return org.id


async def test_media_items_for_the_publishing_engine(
    client: httpx.AsyncClient,
    db: AsyncSession,
    tenant: Tenant,
    other_tenant: Tenant,
    env: MediaEnv,
    tmp_path: Path,
) -> None:
    png = image_bytes("PNG", size=(800, 600))
    image = await make(client, tenant, "a.png", png)
    await client.patch(
        f"/api/media/{image['id']}", json={"alt": "Library alt"}, headers=tenant.headers
    )
    video_bytes = video_file(tmp_path / "v.mp4", frames=10, size=(320, 240)).read_bytes()
    video = await make(client, tenant, "v.mp4", video_bytes)
    theirs = await make(client, other_tenant, "t.png", image_bytes("PNG"))

    refs = [
        {"id": image["id"], "path": image["path"]},
        {"id": video["id"], "path": video["path"], "alt": "Post alt"},
        {"path": image["path"]},  # by path only
        {"id": theirs["id"], "path": theirs["path"]},  # another organization's id
        {"id": None, "path": "https://cdn.example.com/pics/x.webp?v=2"},
        {"id": "", "path": "https://cdn.example.com/clip.mp4"},
        {"name": "no path"},
        "garbage",
    ]
    items = await media_items_for(db, OrgId(tenant.org_id), refs, env=env)
    assert len(items) == 6
    first, vid, by_path, foreign, external, external_video = items

    assert (first.type, first.mime_type, first.width, first.height) == (
        "image",
        "image/png",
        800,
        600,
    )
    assert first.size == len(png) and first.alt == "Library alt"
    assert first.read is not None and await first.read() == png
    assert first.thumbnail_url == image["thumbnail"] and first.read_thumbnail is not None
    assert (await first.read_thumbnail())[:4] == b"RIFF"  # a WebP thumbnail

    assert (vid.type, vid.mime_type, vid.alt) == ("video", "video/mp4", "Post alt")
    assert vid.read is not None and await vid.read() == video_bytes

    assert by_path.read is not None and await by_path.read() == png

    # Not ours: the provider downloads the URL.
    assert foreign.read is None and foreign.url == theirs["path"] and foreign.width is None
    assert (external.read, external.mime_type, external.type) == (None, "image/webp", "image")
    assert (external_video.type, external_video.mime_type) == ("video", "video/mp4")

    # The JSON may also arrive as a string (as Postiz stores it) or be empty.
    import json

    assert len(await media_items_for(db, OrgId(tenant.org_id), json.dumps(refs[:1]), env=env)) == 1
    assert await media_items_for(db, OrgId(tenant.org_id), None, env=env) == []


async def test_items_of_a_purged_media_fall_back_to_the_url(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant, env: MediaEnv
) -> None:
    media = await make(client, tenant, "a.png", image_bytes("PNG"))
    await client.delete(f"/api/media/{media['id']}", headers=tenant.headers)
    await purge_deleted_media(env=env)
    [item] = await media_items_for(
        db, OrgId(tenant.org_id), [{"id": media["id"], "path": media["path"]}], env=env
    )
    assert item.read is None and item.url == media["path"]


async def test_housekeeping_removes_stale_spool_and_partial_writes(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant, env: MediaEnv
) -> None:
    assert isinstance(env.storage, LocalStorage)
    spool = env.ingest.spool_dir
    spool.mkdir(parents=True, exist_ok=True)
    old = time.time() - 7 * 3600
    stale = spool / "upload-dead.part"
    stale.write_bytes(b"x" * 100)
    os.utime(stale, (old, old))
    fresh = spool / "upload-live.part"  # an upload in progress
    fresh.write_bytes(b"y")
    partial = env.storage.root / tenant.org_id / "2024" / "01" / ".abc.png.1234.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"z")
    os.utime(partial, (old, old))
    media = await make(client, tenant, "a.png", image_bytes("PNG"))
    await client.delete(f"/api/media/{media['id']}", headers=tenant.headers)

    counts = await media_housekeeping(env=env)
    assert counts == {"purged_media": 1, "spool_files": 1, "partial_writes": 1}
    assert fresh.exists() and not stale.exists() and not partial.exists()
