"""Bad input on every automation route: wrong types, huge strings, NUL bytes, malformed ids,
unknown event names. Never a 5xx; a 4xx that names the field."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.automation.factories import make_channel
from tests.conftest import Tenant

HUGE = "x" * 100_000
VALUES: list[Any] = [None, 7, True, [], {}, "", "a\x00b", HUGE, "\ud800", ["\x00"], [HUGE]]
VALUES += [{"k": "\x00"}, {"\x00": 1}, "https://1.1.1.1/\x00", "whsec_\x00", ["post.nope"]]
FIELDS = {
    "/api/webhooks": [
        "name",
        "url",
        "events",
        "secret",
        "rotate_secret",
        "enabled",
        "integrations",
    ],
    "/api/autopost": ["name", "url", "integrations", "template", "on_slot", "post_existing"],
    "/api/third-party": ["provider", "api_key", "webhook_url", "events", "config", "enabled"],
}
BAD_IDS = ["x", "%00", "a%00b", "1" * 5000, "%ff", "%20", "..%2F..%2Fetc"]


def _check(response: httpx.Response, what: str, problems: list[str]) -> None:
    if response.status_code >= 500:
        problems.append(f"{what}: {response.status_code} {response.text[:200]}")
    elif response.status_code in (400, 422) and not response.json().get("field"):
        problems.append(f"{what}: {response.status_code} names no field: {response.text[:200]}")


async def _send(
    client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    # json.dumps escapes lone surrogates and NUL, as a hostile client would send them.
    content = json.dumps(body)
    return await client.request(
        method, path, content=content, headers={**headers, "content-type": "application/json"}
    )


@pytest.mark.parametrize("path", FIELDS)
async def test_bad_bodies(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession, path: str
) -> None:
    channel = await make_channel(db, tenant.org_id)
    base = {
        "/api/webhooks": {"url": "https://1.1.1.1/h", "events": ["post.published"]},
        "/api/autopost": {"name": "n", "url": "https://1.1.1.1/f", "integrations": [channel.id]},
        "/api/third-party": {"provider": "n8n", "api_key": "k" * 12},
    }[path]
    created = await client.post(path, json=base, headers=tenant.headers)
    assert created.status_code == 201, created.text
    item = f"{path}/{created.json()['id']}"
    problems: list[str] = []
    for field in FIELDS[path]:
        for value in VALUES:
            label = f"{field}={str(value)[:20]!r}"
            response = await _send(client, "POST", path, {**base, field: value}, tenant.headers)
            _check(response, f"POST {path} {label}", problems)
            response = await _send(client, "PATCH", item, {field: value}, tenant.headers)
            _check(response, f"PATCH {item} {label}", problems)
    assert problems == []


async def test_malformed_bodies_ids_and_queries(client: httpx.AsyncClient, tenant: Tenant) -> None:
    hook = await client.post(
        "/api/webhooks",
        json={"url": "https://1.1.1.1/h", "events": ["post.published"]},
        headers=tenant.headers,
    )
    hook_id = hook.json()["id"]
    problems: list[str] = []
    for path in ("/api/webhooks", "/api/autopost", "/api/third-party"):
        for raw in (b"", b"null", b"[]", b"{", b'"x"', b"\x00", b'{"name": 1e999}'):
            response = await client.post(
                path, content=raw, headers={**tenant.headers, "content-type": "application/json"}
            )
            _check(response, f"POST {path} {raw!r}", problems)
    for bad in BAD_IDS:
        for method, path in [
            ("GET", f"/api/webhooks/{bad}"),
            ("PATCH", f"/api/webhooks/{bad}"),
            ("DELETE", f"/api/webhooks/{bad}"),
            ("POST", f"/api/webhooks/{bad}/test"),
            ("GET", f"/api/webhooks/{bad}/deliveries"),
            ("GET", f"/api/webhooks/{bad}/events"),
            ("POST", f"/api/webhooks/{hook_id}/events/{bad}/redeliver"),
            ("GET", f"/api/autopost/{bad}"),
            ("PATCH", f"/api/autopost/{bad}"),
            ("DELETE", f"/api/autopost/{bad}"),
            ("POST", f"/api/autopost/{bad}/run"),
            ("GET", f"/api/third-party/{bad}"),
            ("PATCH", f"/api/third-party/{bad}"),
            ("DELETE", f"/api/third-party/{bad}"),
            ("POST", f"/api/third-party/{bad}/test"),
            ("GET", f"/api/third-party/{bad}/deliveries"),
        ]:
            body = {} if method == "PATCH" else None
            response = await client.request(method, path, json=body, headers=tenant.headers)
            _check(response, f"{method} {path[:80]}", problems)
            assert response.status_code in (404, 422), (path[:80], response.text[:200])
    for query in (
        "limit=0",
        "limit=x",
        "limit=99999999999999999999",
        "before=x",
        "before=9999-12-31T23:59:59",
        "before=0001-01-01T00:00:00Z",
        "before=%00",
        "status=nope",
        "status=%00",
    ):
        for path in (f"/api/webhooks/{hook_id}/deliveries", f"/api/webhooks/{hook_id}/events"):
            response = await client.get(f"{path}?{query}", headers=tenant.headers)
            _check(response, f"GET {path}?{query}", problems)
    assert problems == []
