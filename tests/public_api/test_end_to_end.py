"""End to end through the Public API, as a Postiz client drives it over HTTP: upload an image,
schedule a thread with it on two channels (Mastodon and Bluesky, played by loopback fakes), list
it, let real workers publish it (they fetch the image from its public URL on the server), and
list it again as PUBLISHED with its release URLs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.channels.providers.servers.bluesky import FakeBluesky
from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.conftest import Tenant, make_tenant
from tests.media.factories import image_bytes
from tests.posts.helpers import add_mastodon_channel, eventually, running_workers
from tests.public_api.helpers import ServerThread, free_port
from tidings.config import get_settings
from tidings.core.tenancy import OrgId
from tidings.db import Database
from tidings.orgs.service import rotate_api_key

pytestmark = pytest.mark.usefixtures("allow_private")

BASE = "/public/v1"
PNG = image_bytes("PNG", size=(320, 200))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_thread_with_media_on_two_channels_is_published_and_listed(
    fresh_database: Database,
) -> None:
    tenant = await make_tenant(fresh_database)
    async with fresh_database.session() as session:
        key = await rotate_api_key(session, OrgId(tenant.org_id))
    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        # Media paths are URLs on this server: the workers download the image from there.
        env.setenv("TIDINGS_PUBLIC_URL", f"http://127.0.0.1:{port}")
        get_settings.cache_clear()
        try:
            with ServerThread(fresh_database.url, port=port) as server:
                await publish_through_the_api(
                    fresh_database, tenant, {"Authorization": key}, server.base_url
                )
        finally:
            env.undo()
            get_settings.cache_clear()


async def publish_through_the_api(
    database: Database, tenant: Tenant, api: dict[str, str], base_url: str
) -> None:
    async with (
        FakeMastodon() as masto,
        FakeBluesky() as pds,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        masto_id = await add_mastodon_channel(database, tenant.org_id, masto)
        connected = await client.post(
            "/api/channels/bluesky/connect",
            json={
                "fields": {
                    "service": pds.base_url,
                    "identifier": "alice.test",
                    "password": "app-pass-1234",
                }
            },
            headers=tenant.headers,
        )
        assert connected.status_code == 201, connected.text
        sky_id = connected.json()["channel"]["id"]

        channels = (await client.get(f"{BASE}/integrations", headers=api)).json()
        assert {(c["id"], c["identifier"]) for c in channels} == {
            (masto_id, "mastodon"),
            (sky_id, "bluesky"),
        }

        uploaded = await client.post(
            f"{BASE}/upload", files={"file": ("launch.png", PNG, "image/png")}, headers=api
        )
        assert uploaded.status_code == 201, uploaded.text
        media = uploaded.json()
        assert media["path"].startswith(f"{base_url}/uploads/")

        due = datetime.now(UTC) + timedelta(seconds=2)
        value: list[dict[str, Any]] = [
            {
                "content": "Launching today!",
                "image": [{"id": media["id"], "path": media["path"]}],
            },
            {"content": "Details in this reply", "image": [], "delay": 0},
        ]
        created = await client.post(
            f"{BASE}/posts",
            json={
                "type": "schedule",
                "date": iso(due),
                "shortLink": False,
                "tags": [{"value": "launch", "label": "Launch"}],
                "posts": [
                    {
                        "integration": {"id": masto_id},
                        "settings": {"__type": "mastodon"},
                        "value": value,
                    },
                    {
                        "integration": {"id": sky_id},
                        "settings": {"__type": "bluesky"},
                        "value": value,
                    },
                ],
            },
            headers=api,
        )
        assert created.status_code == 201, created.text
        heads = {item["integration"]: item["postId"] for item in created.json()}
        assert set(heads) == {masto_id, sky_id}

        window = {
            "startDate": iso(due - timedelta(hours=1)),
            "endDate": iso(due + timedelta(hours=1)),
        }
        before = (await client.get(f"{BASE}/posts", params=window, headers=api)).json()["posts"]
        assert {p["id"] for p in before} == set(heads.values())
        assert {p["state"] for p in before} == {"QUEUE"}
        assert all(p["releaseURL"] is None for p in before)

        async def all_published() -> list[dict[str, Any]] | None:
            listed = await client.get(f"{BASE}/posts", params=window, headers=api)
            posts: list[dict[str, Any]] = listed.json()["posts"]
            return posts if {p["state"] for p in posts} == {"PUBLISHED"} else None

        async with running_workers(database):
            await eventually(lambda: len(masto.statuses) == 2, timeout=20)
            await eventually(lambda: len(pds.records) == 2, timeout=20)
            after = await eventually(all_published, timeout=10)

        statuses = sorted(masto.statuses.values(), key=lambda s: int(s["id"]))
        assert statuses[0]["content"] == "<p>Launching today!</p>"
        assert statuses[1]["in_reply_to_id"] == statuses[0]["id"]
        assert len(statuses[0]["media_attachments"]) == 1
        (stored,) = masto.media.values()
        assert stored["data"] == PNG
        records = {uri: r["value"] for uri, r in pds.records.items()}
        first_uri = next(uri for uri, v in records.items() if v["text"] == "Launching today!")
        reply = next(v for v in records.values() if v["text"] == "Details in this reply")
        assert records[first_uri]["embed"]["$type"] == "app.bsky.embed.images"
        assert reply["reply"]["parent"]["uri"] == first_uri

        by_channel = {p["integration"]["id"]: p for p in after}
        assert set(by_channel) == {masto_id, sky_id}
        assert by_channel[masto_id]["releaseURL"] == statuses[0]["url"]
        sky_url = by_channel[sky_id]["releaseURL"]
        assert sky_url.startswith("https://bsky.app/profile/")
        assert sky_url.rsplit("/", 1)[1] == first_uri.rsplit("/", 1)[1]

        # Published with a platform id: analytics no longer say "missing", nothing to look up.
        for post_id in heads.values():
            analytics = await client.get(f"{BASE}/analytics/post/{post_id}", headers=api)
            assert analytics.json() == []
            missing = await client.get(f"{BASE}/posts/{post_id}/missing", headers=api)
            assert missing.json() == []
