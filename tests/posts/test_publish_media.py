"""Media at publish time: our own files are read from storage (never over HTTP, so the public URL
need not be reachable from the worker), held once in memory; other URLs go through the URL guard."""

from __future__ import annotations

import dataclasses
import os
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.channels.providers.servers.youtube import VIDEOS, FakeYouTube
from tests.conftest import Tenant, asgi_client, build_app, make_tenant
from tests.media.factories import image_bytes
from tests.media.helpers import configure_media, upload
from tests.posts.helpers import (
    add_mastodon_channel,
    eventually,
    running_workers,
    sql_statements,
)
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    MediaItem,
    PostPart,
    ProviderConfig,
    RetryableError,
)
from tidings.channels.providers.youtube import YouTubeProvider, YouTubeSettings
from tidings.config import get_settings
from tidings.core.enums import State
from tidings.db import Database
from tidings.media.deps import MediaEnv
from tidings.media.models import Media
from tidings.media.storage import CHUNK_SIZE, LocalStorage, StorageError, new_media_key
from tidings.posts.media import post_media, readable
from tidings.posts.models import Post

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing answers there


@pytest.fixture
def public_url_nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The app's public URL points where nothing listens; media live under ``tmp_path``."""
    monkeypatch.setenv("TIDINGS_PUBLIC_URL", NOWHERE)
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def env(app: FastAPI, tmp_path: Path) -> MediaEnv:
    return configure_media(app, tmp_path / "data")


async def _upload(client: httpx.AsyncClient, tenant: Any, name: str, data: bytes) -> Any:
    response = await upload(client, tenant, name, data)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.usefixtures("allow_private", "public_url_nowhere")
async def test_own_media_publish_from_storage_when_the_public_url_is_unreachable(
    fresh_database: Database,
) -> None:
    tenant = await make_tenant(fresh_database)
    red, blue = image_bytes("PNG", color=(200, 0, 0)), image_bytes("PNG", color=(0, 0, 200))
    async with FakeMastodon() as masto:
        channel = await add_mastodon_channel(fresh_database, tenant.org_id, masto)
        async with asgi_client(build_app(fresh_database)) as client:
            first = await _upload(client, tenant, "red.png", red)
            second = await _upload(client, tenant, "blue.png", blue)
            assert first["path"].startswith(f"{NOWHERE}/uploads/")
            image = [
                {"id": first["id"], "path": first["path"], "alt": "Red"},
                {"path": second["path"]},  # by path only
            ]
            created = await client.post(
                "/api/posts",
                json={
                    "type": "now",
                    "posts": [
                        {
                            "integration": {"id": channel},
                            "value": [{"content": "Two squares", "image": image}],
                        }
                    ],
                },
                headers=tenant.headers,
            )
            assert created.status_code == 201, created.text
            # Deleted from the library but still used by the queued post: still published.
            deleted = await client.delete(f"/api/media/{second['id']}", headers=tenant.headers)
            assert deleted.json()["kept_for_posts"] == 1
        async with running_workers(fresh_database):
            await eventually(lambda: len(masto.statuses) == 1, timeout=15)
        uploaded = sorted(masto.media.values(), key=lambda m: int(m["id"]))
        assert [m["data"] for m in uploaded] == [red, blue]
        assert uploaded[0]["description"] == "Red"
        async with fresh_database.session() as session:
            post = await session.get(Post, created.json()["posts"][0]["postId"])
            assert post is not None and post.state == State.PUBLISHED, post and post.error


async def _stored_media(db: AsyncSession, env: MediaEnv, org_id: str, data: bytes) -> Media:
    key = new_media_key(org_id, "mp4")
    await env.storage.put_bytes(key, data)
    media = Media(
        organization_id=org_id,
        name="clip.mp4",
        path=env.url_for(key),
        type="video",
        file_size=len(data),
        mime_type="video/mp4",
        storage_key=key,
    )
    db.add(media)
    await db.flush()
    return media


async def test_a_stored_file_is_held_once_in_memory(
    db: AsyncSession, tenant: Tenant, env: MediaEnv
) -> None:
    data = os.urandom(16 * 1024 * 1024 + 4321)
    media = await _stored_media(db, env, tenant.org_id, data)
    [[item]] = await post_media(
        db, [(tenant.org_id, [{"id": media.id, "path": media.path}])], env=env
    )
    async with httpx.AsyncClient() as client:
        [ready] = readable([item], client)
        assert ready.read is not None
        tracemalloc.start()
        try:
            got = await ready.read()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert got == data
    # The file plus a few read chunks -- not two copies of the file.
    assert peak < len(data) + 4 * CHUNK_SIZE, peak / len(data)


async def _never_whole() -> bytes:
    raise AssertionError("the whole video was read instead of streamed")


async def test_a_stored_video_goes_to_the_provider_through_the_stream(
    db: AsyncSession, tenant: Tenant, env: MediaEnv
) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 4321)
    media = await _stored_media(db, env, tenant.org_id, data)
    [[item]] = await post_media(
        db, [(tenant.org_id, [{"id": media.id, "path": media.path}])], env=env
    )
    async with httpx.AsyncClient() as client, FakeYouTube() as youtube:
        [ready] = readable([item], client)
        assert ready.stream is not None and ready.size == len(data)
        # Only the stream can deliver the file: reading it whole fails.
        ready = dataclasses.replace(ready, read=_never_whole)
        provider = YouTubeProvider(
            client, ProviderConfig(urls={"api": youtube.base_url, "web": "https://yt.test"})
        )
        token = youtube.oauth.issue("google-user-1", "youtube", refresh=False)["access_token"]
        credentials = ChannelCredentials(access_token=token, internal_id="UCx1y2z3")
        result = await provider.publish(
            credentials, PostPart(content="d", media=[ready]), YouTubeSettings(title="t")
        )
        put = youtube.last("PUT", VIDEOS)
        assert put.body == data and put.headers["content-length"] == str(len(data))
        assert list(youtube.videos) == [result.id]


async def test_a_stored_stream_maps_storage_failures_to_provider_errors(
    db: AsyncSession, tenant: Tenant, env: MediaEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    media = await _stored_media(db, env, tenant.org_id, b"a short clip")
    [[item]] = await post_media(
        db, [(tenant.org_id, [{"id": media.id, "path": media.path}])], env=env
    )
    async with httpx.AsyncClient() as client:
        [ready] = readable([item], client)
        assert ready.stream is not None
        assert b"".join([chunk async for chunk in ready.stream()]) == b"a short clip"

        def unavailable(key: str, **_: Any) -> Any:
            raise StorageError("the bucket is down")

        monkeypatch.setattr(env.storage, "open_stream", unavailable)
        with pytest.raises(RetryableError, match="storage is unavailable"):
            [chunk async for chunk in ready.stream()]
        monkeypatch.undo()
        assert isinstance(env.storage, LocalStorage) and media.storage_key
        env.storage.path_for(media.storage_key).unlink()
        with pytest.raises(BadBodyError, match="no longer stored"):
            [chunk async for chunk in ready.stream()]


async def test_media_of_many_posts_in_one_statement_each_org_its_own(
    db: AsyncSession, tenant: Tenant, other_tenant: Tenant, env: MediaEnv
) -> None:
    ours = await _stored_media(db, env, tenant.org_id, b"ours")
    theirs = await _stored_media(db, env, other_tenant.org_id, b"theirs")
    with sql_statements() as statements:
        media = await post_media(
            db,
            [
                (tenant.org_id, [{"id": ours.id, "path": ours.path}]),
                (tenant.org_id, [{"path": ours.path}, {"id": theirs.id, "path": theirs.path}]),
                (other_tenant.org_id, [{"id": theirs.id, "path": theirs.path}]),
                (other_tenant.org_id, [{"id": ours.id, "path": ours.path}]),
                (tenant.org_id, []),
            ],
            env=env,
        )
    assert len(statements) == 1
    reads = [[item.read is not None for item in items] for items in media]
    # Another organization's media is never read from storage: its URL is downloaded instead.
    assert reads == [[True], [True, False], [True], [False], []]


class BigFiles(FakePlatform):
    """Serves ``/big`` (2 KB) and ``/small`` (a PNG)."""

    def setup_routes(self) -> None:
        self.add("GET", "/big", self.big)
        self.add("GET", "/small", self.small)

    async def big(self, request: RecordedRequest) -> Response:
        return Response(b"x" * 2048, media_type="image/png")

    async def small(self, request: RecordedRequest) -> Response:
        return Response(image_bytes("PNG", size=(4, 4)), media_type="image/png")


def _item(url: str, **fields: Any) -> MediaItem:
    return MediaItem(url=url, type="image", mime_type="image/png", **fields)


async def test_other_urls_go_through_the_url_guard_with_a_size_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with BigFiles() as files, httpx.AsyncClient() as client:
        [loopback] = readable([_item(files.url("/small"), thumbnail_url=files.url("/big"))], client)
        assert loopback.read is not None and loopback.read_thumbnail is not None
        with pytest.raises(BadBodyError, match="cannot be used"):
            await loopback.read()  # a private address, and private URLs are not allowed
        with pytest.raises(BadBodyError, match="cannot be used"):
            await loopback.read_thumbnail()
        assert loopback.stream is not None
        with pytest.raises(BadBodyError, match="cannot be used"):
            [chunk async for chunk in loopback.stream()]
        assert files.requests == []

        monkeypatch.setenv("TIDINGS_ALLOW_PRIVATE_URLS", "true")
        monkeypatch.setenv("TIDINGS_MAX_IMAGE_BYTES", "1024")
        monkeypatch.setenv("TIDINGS_MAX_VIDEO_BYTES", "1024")
        get_settings.cache_clear()
        try:
            [small, big] = readable([_item(files.url("/small")), _item(files.url("/big"))], client)
            assert small.read is not None and big.read is not None
            assert await small.read() == image_bytes("PNG", size=(4, 4))
            with pytest.raises(BadBodyError, match="larger than 1,024 bytes"):
                await big.read()
            # Streamed the same way: through the guard, with the same cap.
            assert small.stream is not None and big.stream is not None
            streamed = b"".join([chunk async for chunk in small.stream()])
            assert streamed == image_bytes("PNG", size=(4, 4))
            with pytest.raises(BadBodyError, match="larger than 1,024 bytes"):
                [chunk async for chunk in big.stream()]
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()


async def test_a_file_gone_from_storage_rejects_the_post(
    db: AsyncSession, tenant: Tenant, env: MediaEnv
) -> None:
    media = await _stored_media(db, env, tenant.org_id, b"soon gone")
    assert isinstance(env.storage, LocalStorage) and media.storage_key
    env.storage.path_for(media.storage_key).unlink()
    [[item]] = await post_media(
        db, [(tenant.org_id, [{"id": media.id, "path": media.path}])], env=env
    )
    async with httpx.AsyncClient() as client:
        [ready] = readable([item], client)
        assert ready.read is not None
        with pytest.raises(BadBodyError, match="no longer stored"):
            await ready.read()


async def test_validation_sees_media_referenced_by_path_only(
    client: httpx.AsyncClient, db: AsyncSession, tenant: Tenant, env: MediaEnv
) -> None:
    """Validation resolves media like publishing does: a PNG referenced by path is an image."""
    from tests.channels.factories import make_channel

    media = await _upload(client, tenant, "a.png", image_bytes("PNG"))
    channel = await make_channel(db, tenant.org_id, provider="mastodon", name="M")
    with sql_statements() as statements:
        response = await client.post(
            "/api/posts",
            json={
                "type": "schedule",
                "date": datetime(2099, 1, 1, tzinfo=UTC).isoformat(),
                "posts": [
                    {
                        "integration": {"id": channel.id},
                        "value": [
                            {"content": f"part {i}", "image": [{"path": media["path"]}]}
                            for i in range(4)
                        ],
                    }
                ],
            },
            headers=tenant.headers,
        )
    assert response.status_code == 201, response.text
    media_queries = [s for s in statements if "FROM media" in s]
    assert len(media_queries) == 1  # every part's media at once
    rows = (await db.execute(select(Post).where(Post.group == response.json()["group"]))).scalars()
    assert all(row.image == [{"path": media["path"]}] for row in rows)
