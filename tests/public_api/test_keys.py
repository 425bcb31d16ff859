"""Keys: a missing, wrong, rotated or another organization's key never reaches data that is not
its own -- checked on every endpoint of the Public API's OpenAPI document, under both prefixes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.factories import make_channel
from tests.public_api.conftest import ApiKey
from tidings.core.enums import State
from tidings.core.tenancy import OrgId
from tidings.orgs.service import rotate_api_key
from tidings.posts.models import Post
from tidings.public_api.routes import PREFIXES, public_openapi

#: A valid body for each endpoint that takes JSON (ids are filled in).
BODIES: dict[tuple[str, str], Any] = {
    ("post", "/integration-trigger/{id}"): {"methodName": "flairs", "data": {}},
    ("put", "/posts/{id}/settings"): {"settings": {}},
    ("put", "/posts/{id}/status"): {"status": "draft"},
    ("put", "/posts/{id}/release-id"): {"releaseId": "123"},
    ("post", "/upload-from-url"): {"url": "https://example.com/a.png"},
}


async def owner_rows(db: AsyncSession, org_id: str) -> dict[str, str]:
    """One channel and one post of the owner, by path parameter name."""
    channel = await make_channel(db, org_id, provider="reddit", name="Owner's")
    post = Post(
        organization_id=org_id,
        integration_id=channel.id,
        group="owner-group",
        content="secret plans",
        publish_date=datetime.now(UTC) + timedelta(days=3),
        state=State.QUEUE,
    )
    db.add(post)
    await db.flush()
    return {
        "integrationId": channel.id,
        "postId": post.id,
        "group": post.group,
        "provider": "reddit",
        "channel": channel.id,
        "post": post.id,
    }


def operations(prefix: str, ids: dict[str, str]) -> list[tuple[str, str, str, Any]]:
    """Every (method, template, url, body) of the document under ``prefix``."""
    out = []
    for template, ops in public_openapi(prefix).get("paths", {}).items():
        short = template[len(prefix) :]
        for method in ops:
            values = dict(ids)
            values["id"] = ids["post"] if short.startswith("/posts/") else ids["channel"]
            out.append((method, short, template.format(**values), BODIES.get((method, short))))
    return out


async def call(
    client: httpx.AsyncClient, method: str, url: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    params = {}
    if url.endswith("/posts") and method == "get":
        params = {"startDate": "2000-01-01T00:00:00Z", "endDate": "2001-01-01T00:00:00Z"}
    if url.endswith("/upload"):
        return await client.post(
            url, files={"file": ("a.png", b"\x89PNG\r\n", "image/png")}, headers=headers
        )
    return await client.request(method, url, json=body, params=params, headers=headers)


async def test_no_endpoint_answers_without_a_valid_key(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey
) -> None:
    ids = await owner_rows(db, api.org_id)
    old_key = api.key
    await rotate_api_key(db, OrgId(api.org_id))
    await db.flush()
    for prefix in PREFIXES:
        ops = operations(prefix, ids)
        assert len(ops) == 21
        for method, template, url, body in ops:
            for headers in (
                {},
                {"Authorization": ""},
                {"Authorization": "Bearer "},
                {"Authorization": "wrong-key"},
                {"Authorization": old_key},  # rotated away
                {"Authorization": f"Bearer {old_key}"},
            ):
                response = await call(client, method, url, body, headers)
                assert response.status_code == 401, (method, template, headers, response.text)
                assert response.json()["error"] == "unauthorized"


async def test_another_organizations_key_gets_404_for_every_id(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey, other_api: ApiKey
) -> None:
    ids = await owner_rows(db, api.org_id)
    checked = 0
    for method, template, url, body in operations(PREFIXES[0], ids):
        if "{" not in template or template == "/social/{provider}":
            continue
        response = await call(client, method, url, body, other_api.headers)
        assert response.status_code == 404, (method, template, response.text)
        checked += 1
    assert checked == 12
    # The owner's rows are intact and still visible to the owner.
    mine = await client.get(
        f"/public/v1/integration-settings/{ids['channel']}", headers=api.headers
    )
    assert mine.status_code == 200
    listed = await client.get(
        "/public/v1/posts",
        params={
            "startDate": (datetime.now(UTC)).isoformat(),
            "endDate": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
        },
        headers=api.headers,
    )
    assert [p["id"] for p in listed.json()["posts"]] == [ids["post"]]
    theirs = await client.get(
        "/public/v1/posts",
        params={
            "startDate": (datetime.now(UTC)).isoformat(),
            "endDate": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
        },
        headers=other_api.headers,
    )
    assert theirs.json() == {"posts": []}
    assert (await client.get("/public/v1/integrations", headers=other_api.headers)).json() == []
