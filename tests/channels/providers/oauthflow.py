"""Browser-side helpers for the OAuth provider tests (discord, slack, threads, facebook,
instagram, youtube, tiktok, pinterest)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx

from tidings.channels.providers import ChannelCredentials, ConnectedAccount


async def approve(http: httpx.AsyncClient, url: str, redirect_uri: str) -> dict[str, str]:
    """Play the user's browser: open the authorization URL and read the redirect's query."""
    response = await http.get(url)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(redirect_uri), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def query_of(url: str) -> tuple[str, dict[str, str]]:
    """``url`` split into its address (no query) and its single-valued query parameters."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    assert all(len(v) == 1 for v in query.values()), query
    return f"{parts.scheme}://{parts.netloc}{parts.path}", {k: v[0] for k, v in query.items()}


def credentials_of(account: ConnectedAccount) -> ChannelCredentials:
    """What the channels service would hand back to the provider for this account."""
    return ChannelCredentials(
        access_token=account.tokens.access_token,
        refresh_token=account.tokens.refresh_token,
        token_expires_at=account.tokens.expires_at,
        internal_id=account.internal_id,
        custom_instance_details=account.custom_instance_details,
        profile=account.username,
        additional_settings=dict(account.additional_settings),
    )
