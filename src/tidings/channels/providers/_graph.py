"""What the Meta Graph APIs (Facebook, Instagram, Threads) share: the error shape and its
classification, the access-token parameter, the long-lived token calls of Instagram and Threads
Login, and the media container dance (create, wait until processed, publish).

Errors come as ``{"error": {"message", "type", "code", "error_subcode", "error_user_msg",
"is_transient", "fbtrace_id"}}``, mostly with HTTP 400 whatever the cause, so the ``code`` and
``error_subcode`` decide (https://developers.facebook.com/docs/graph-api/guides/error-handling).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import httpx

from tidings.channels.providers._common import authorization_request, poll
from tidings.channels.providers.base import (
    AuthorizationRequest,
    BadBodyError,
    ChannelCredentials,
    ConnectedAccount,
    ConnectError,
    DisconnectedError,
    Provider,
    ProviderError,
    RefreshTokenError,
    RetryableError,
    SettingsT,
    TokenSet,
    json_body,
    parse_retry_after,
    response_excerpt,
    response_json,
    response_message,
    token_set,
)

TOKEN_CODE = 190
# 190 subcodes meaning the grant is gone for good (the user must log in again).
GONE_SUBCODES = frozenset(
    {
        458,  # the app is not installed (the user removed it)
        459,  # the account is checkpointed
        460,  # the password changed
        464,  # unconfirmed user
        467,  # invalid access token (revoked / logged out)
        492,  # invalid session (no longer an admin of the page)
    }
)
EXPIRED_SUBCODE = 463
RATE_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
TRANSIENT_CODES = frozenset({1, 2})
PERMISSION_CODES = frozenset({10, *range(200, 300)})


def _usage_wait(response: httpx.Response) -> float | None:
    """Seconds until access is regained, from Meta's business-use-case usage header."""
    raw = response.headers.get("x-business-use-case-usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in (usage.values() if isinstance(usage, dict) else [])
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    waits = [float(m) for m in minutes if isinstance(m, int | float) and m > 0]
    return max(waits) * 60 if waits else None


def graph_error(response: httpx.Response, platform: str) -> ProviderError | None:
    """Classify a Graph API answer (None for success)."""
    status = response.status_code
    if status < 400:
        return None
    body = response_json(response)
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    subcode = error.get("error_subcode")
    text = error.get("error_user_msg") or error.get("message") or response_message(response)
    message = f"{platform}: {text}"
    excerpt = response_excerpt(response)
    if code == TOKEN_CODE:
        if subcode in GONE_SUBCODES:
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        return RefreshTokenError(message, status_code=status, excerpt=excerpt)
    if code == 102:  # API session: log in again, which a refresh may do
        return RefreshTokenError(message, status_code=status, excerpt=excerpt)
    if code in RATE_CODES or status == 429:
        return RetryableError(
            message,
            status_code=status,
            excerpt=excerpt,
            retry_after=parse_retry_after(response.headers.get("retry-after"))
            or _usage_wait(response),
        )
    if code in TRANSIENT_CODES or error.get("is_transient") is True or status >= 500:
        return RetryableError(message, status_code=status, excerpt=excerpt)
    if code in PERMISSION_CODES:
        return DisconnectedError(message, status_code=status, excerpt=excerpt)
    if status == 401:
        return RefreshTokenError(message, status_code=status, excerpt=excerpt)
    return BadBodyError(message, status_code=status, excerpt=excerpt)


def with_token(params: Mapping[str, Any], token: str) -> dict[str, str]:
    """Graph parameters as strings, plus the ``access_token``."""
    out = {k: _param(v) for k, v in params.items() if v is not None}
    out["access_token"] = token
    return out


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


# --------------------------------------------------------------------------------------------
# Graph providers and Facebook Login
# --------------------------------------------------------------------------------------------

GRAPH_PAGES = 20


class GraphProvider(Provider[SettingsT]):
    """A provider speaking a Graph API host (``graph`` URL) with ``access_token`` params."""

    api_version: ClassVar[str] = "v20.0"

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        return graph_error(response, self.display_name)

    def _api(self, path: str) -> str:
        return f"{self.config.url('graph')}/{self.api_version}/{path.lstrip('/')}"

    async def _get(self, path: str, token: str, params: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.request("GET", self._api(path), params=with_token(params, token))
        return dict(json_body(response))

    async def _post(
        self, path: str, token: str, params: Mapping[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]:
        response = await self.request(
            "POST", self._api(path), data=with_token(params, token), idempotent=idempotent
        )
        return dict(json_body(response))

    async def _list(self, path: str, token: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every item of a paged Graph edge (following ``paging.cursors.after``)."""
        out: list[dict[str, Any]] = []
        query = dict(params)
        for _ in range(GRAPH_PAGES):
            data = await self._get(path, token, query)
            out.extend(item for item in data.get("data") or [] if isinstance(item, dict))
            paging = data.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                break
            query["after"] = after
        return out

    async def _permalink(self, object_id: str, token: str, field: str) -> str | None:
        """The public link of a published object; None rather than failing a done post."""
        try:
            data = await self._get(object_id, token, {"fields": field})
        except ProviderError:
            return None
        link = data.get(field)
        if not link:
            return None
        link = str(link)
        if link.startswith("/"):
            link = self.config.url("web") + link
        return link


class LongLivedLogin(GraphProvider[SettingsT]):
    """Instagram and Threads Login: the code buys a short-lived token (an hour), traded at once
    for a long-lived one (60 days, ``{prefix}_exchange_token``) that renews itself
    (``{prefix}_refresh_token``): there is never a refresh token."""

    #: The platform's name in messages (``display_name`` may say more).
    platform: ClassVar[str]
    #: The grant types' prefix (``ig``, ``th``).
    grant_prefix: ClassVar[str]
    #: The host (``config`` URL name) answering the code exchange.
    code_host: ClassVar[str]

    async def _long_lived_tokens(self, code: str, redirect_uri: str) -> TokenSet:
        """Code -> short-lived token -> long-lived token."""
        data = await self.oauth_token(
            f"{self.config.url(self.code_host)}/oauth/access_token",
            {
                "client_id": self.config.client_id or "",
                "client_secret": self.config.client_secret or "",
                "grant_type": "authorization_code",
                "redirect_uri": redirect_uri,
                "code": code,
            },
            purpose="exchange",
        )
        # Instagram answers {"data": [{access_token, user_id, permissions}]} (flat, formerly).
        entries = data.get("data")
        short = entries[0] if isinstance(entries, list) and entries else data
        return await self._token_call(
            "access_token",
            {
                "grant_type": f"{self.grant_prefix}_exchange_token",
                "client_secret": self.config.client_secret or "",
                "access_token": str(short.get("access_token") or ""),
            },
            purpose="exchange",
        )

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """Renew the long-lived token itself (there is no refresh token)."""
        return await self._token_call(
            "refresh_access_token",
            {
                "grant_type": f"{self.grant_prefix}_refresh_token",
                "access_token": credentials.access_token,
            },
            purpose="refresh",
        )

    async def _token_call(
        self, path: str, params: Mapping[str, str], *, purpose: Literal["exchange", "refresh"]
    ) -> TokenSet:
        # GET {graph}/{path}, no API version. A refused token is a ConnectError while
        # connecting and a DisconnectedError when refreshing.
        try:
            response = await self.request(
                "GET", f"{self.config.url('graph')}/{path}", params=dict(params)
            )
        except (BadBodyError, RefreshTokenError) as exc:
            error = ConnectError if purpose == "exchange" else DisconnectedError
            raise error(
                f"{self.platform} refused the token: {exc.message}",
                status_code=exc.status_code,
                excerpt=exc.excerpt,
            ) from exc
        return token_set(json_body(response))


class ContainerPublishing(GraphProvider[SettingsT]):
    """Publishing through media containers (Instagram, Threads): ``POST {edge}`` creates a
    container Meta fetches the media of, its status field turns ``FINISHED``, then
    ``POST {edge}_publish`` with its id makes the post."""

    #: The platform's name in messages (``display_name`` may say more).
    platform: ClassVar[str]
    #: The container field holding its state, and the one explaining an ``ERROR``.
    container_status_field: ClassVar[str]
    container_error_field: ClassVar[str]
    #: Seconds between status checks, and before giving up (the publish is retried later).
    container_poll_interval: ClassVar[float]
    container_poll_timeout: ClassVar[float]

    async def _container(self, edge: str, token: str, params: Mapping[str, Any]) -> str:
        # An unpublished container is not a post: creating another after a lost answer is fine.
        data = await self._post(edge, token, params, idempotent=True)
        return str(data["id"])

    async def _wait_ready(self, token: str, container: str) -> None:
        """Wait until Meta has processed ``container``; BadBodyError when it could not."""
        status_field, error_field = self.container_status_field, self.container_error_field

        async def check() -> bool | None:
            data = await self._get(container, token, {"fields": f"{status_field},{error_field}"})
            status = data.get(status_field)
            if status in ("FINISHED", "PUBLISHED"):
                return True
            if status in ("ERROR", "EXPIRED"):
                raise BadBodyError(
                    f"{self.platform} could not process the media: "
                    f"{data.get(error_field) or status}"
                )
            return None

        await poll(
            check,
            interval=self.container_poll_interval,
            give_up_after=self.container_poll_timeout,
            what=f"The {self.platform} media",
        )

    async def _carousel_children(
        self, edge: str, token: str, items: Sequence[Mapping[str, Any]]
    ) -> str:
        """One processed container per carousel item, in order; their ids comma-separated."""
        children = []
        for params in items:
            child = await self._container(edge, token, params)
            await self._wait_ready(token, child)
            children.append(child)
        return ",".join(children)

    async def _publish_container(
        self, edge: str, token: str, params: Mapping[str, Any], *, wait: bool = True
    ) -> str:
        """Create the post's container, wait for it (``wait``: it carries media), publish it;
        the published media's id."""
        container = await self._container(edge, token, params)
        if wait:
            await self._wait_ready(token, container)
        published = await self._post(f"{edge}_publish", token, {"creation_id": container})
        return str(published["id"])


class FacebookLogin(GraphProvider[SettingsT]):
    """Facebook Login: the dialog, the code exchange and the long-lived user token.

    The user token only lists what may be picked (pages, Instagram accounts); the picked
    account's page token, which does not expire, is what publishes.
    """

    supports_refresh = False
    default_urls = {"graph": "https://graph.facebook.com", "web": "https://www.facebook.com"}
    env_fallback: ClassVar[str | None] = "facebook"

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """Facebook's login dialog asking for this provider's permissions."""
        return authorization_request(
            self,
            f"{self.config.url('web')}/{self.api_version}/dialog/oauth",
            {
                "redirect_uri": redirect_uri,
                "state": state,
                "scope": ",".join(self.scopes),
                "response_type": "code",
            },
        )

    async def _token(self, params: Mapping[str, str]) -> TokenSet:
        try:
            response = await self.request(
                "GET", self._api("oauth/access_token"), params=dict(params)
            )
        except (BadBodyError, RefreshTokenError, DisconnectedError) as exc:
            raise ConnectError(
                f"{self.display_name} refused the authorization: {exc.message}",
                status_code=exc.status_code,
                excerpt=exc.excerpt,
            ) from exc
        return token_set(json_body(response))

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Code -> user token -> long-lived user token; the account is picked next."""
        client = {
            "client_id": self.config.client_id or "",
            "client_secret": self.config.client_secret or "",
        }
        short = await self._token({**client, "redirect_uri": redirect_uri, "code": code})
        tokens = await self._token(
            {**client, "grant_type": "fb_exchange_token", "fb_exchange_token": short.access_token}
        )
        me = await self._get("me", tokens.access_token, {"fields": "id,name,picture"})
        return ConnectedAccount(
            # Until the pick, a per-provider id: the same Facebook user connecting Facebook and
            # Instagram at once must not land on one row.
            internal_id=f"{self.identifier}-user-{me['id']}",
            name=str(me.get("name") or me["id"]),
            picture=picture_of(me),
            tokens=tokens,
            in_between_steps=True,
        )


def picture_of(node: Mapping[str, Any]) -> str | None:
    """``picture.data.url`` of a Graph node, when present."""
    picture = node.get("picture")
    if isinstance(picture, dict):
        url = (picture.get("data") or {}).get("url")
        return str(url) if url else None
    return str(picture) if isinstance(picture, str) and picture else None
