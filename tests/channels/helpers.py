"""Helpers of the channels API tests: point providers at fake platforms, play the browser."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.channels.providers.servers.base import FakePlatform
from tidings.channels.providers.base import env_prefix
from tidings.channels.providers.registry import get_provider


def point(
    monkeypatch: pytest.MonkeyPatch,
    identifier: str,
    server: FakePlatform,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> None:
    """Send every host of provider ``identifier`` to ``server`` (through its env variables)."""
    prefix = env_prefix(identifier)
    for host in get_provider(identifier).default_urls:
        monkeypatch.setenv(f"{prefix}{host.upper()}_URL", server.base_url)
    if client_id is not None:
        monkeypatch.setenv(f"{prefix}CLIENT_ID", client_id)
    if client_secret is not None:
        monkeypatch.setenv(f"{prefix}CLIENT_SECRET", client_secret)


async def approve(url: str) -> dict[str, str]:
    """Play the user's browser on the platform: open the authorize URL, read the redirect."""
    async with httpx.AsyncClient() as browser:
        response = await browser.get(url)
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()} | {
        "_location": location
    }


async def oauth_connect(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    identifier: str,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the whole OAuth connection through the app API; returns the callback's JSON."""
    start = await client.get(
        f"/api/channels/{identifier}/connect", params=params or {}, headers=headers
    )
    assert start.status_code == 200, start.text
    callback = await approve(start.json()["url"])
    assert callback["_location"].startswith(
        f"http://testserver/api/channels/{identifier}/callback?"
    )
    done = await client.get(
        f"/api/channels/{identifier}/callback",
        params={"code": callback["code"], "state": callback["state"]},
        headers=headers,
    )
    assert done.status_code == 200, done.text
    result: dict[str, Any] = done.json()
    return result
