"""End to end: a post published (or refused) on a fake Mastodon by the real publishing engine
reaches a webhook receiver as a signed post.published (or post.failed) event."""

from __future__ import annotations

from collections.abc import Callable

from tests.automation.helpers import Receiver, eventually, running_worker
from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.conftest import asgi_client, build_app, make_tenant
from tests.posts.helpers import add_mastodon_channel
from tidings.db import Database


async def test_published_and_failed_posts_reach_the_receiver(
    fresh_database: Database, receiver: Receiver, configure: Callable[..., None]
) -> None:
    configure()
    owner = await make_tenant(fresh_database)
    async with FakeMastodon() as masto, asgi_client(build_app(fresh_database)) as client:
        channel = await add_mastodon_channel(fresh_database, owner.org_id, masto)
        hook = await client.post(
            "/api/webhooks",
            json={"url": receiver.url("e2e"), "events": ["post.published", "post.failed"]},
            headers=owner.headers,
        )
        assert hook.status_code == 201, hook.text
        receiver.configure("e2e", secret=hook.json()["secret"])

        def post_now(text: str) -> dict[str, object]:
            thread = {"integration": {"id": channel}, "value": [{"content": text}]}
            return {"type": "now", "posts": [thread]}

        async with running_worker(fresh_database):
            created = await client.post("/api/posts", json=post_now("Hi"), headers=owner.headers)
            assert created.status_code == 201, created.text
            await eventually(lambda: len(receiver.of("e2e")) == 1, timeout=15)

            masto.fail("POST", "/api/v1/statuses", 422, {"error": "Validation failed: no"})
            refused = await client.post("/api/posts", json=post_now("No"), headers=owner.headers)
            assert refused.status_code == 201, refused.text
            await eventually(lambda: len(receiver.of("e2e")) == 2, timeout=15)

    published, failed = receiver.of("e2e")
    assert published.error is None and failed.error is None  # signatures verified
    assert published.verified["type"] == "post.published"
    post = published.verified["data"]
    assert post["id"] == created.json()["posts"][0]["postId"]
    assert post["state"] == "PUBLISHED" and post["content"] == "Hi"
    [status] = masto.statuses.values()
    assert post["releaseURL"] == status["url"]
    assert post["integration"]["id"] == channel
    assert failed.verified["type"] == "post.failed"
    assert failed.verified["data"]["state"] == "ERROR"
    assert "Validation failed" in failed.verified["data"]["error"]
