"""The provider interface itself: registry, configuration, error classification, helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tidings.channels.providers import (
    BadBodyError,
    ChannelCredentials,
    PostPart,
    Provider,
    ProviderConfig,
    ProviderError,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    UnknownProviderError,
    UnknownToolError,
    all_providers,
    build_provider,
    code_challenge,
    config_from_env,
    get_provider,
    new_code_verifier,
)
from tidings.channels.providers.base import (
    classify_exception,
    classify_response,
    parse_retry_after,
    send,
    token_set,
    tool,
)


def test_registry() -> None:
    identifiers = [p.identifier for p in all_providers()]
    assert identifiers == sorted(identifiers)
    assert {"bluesky", "mastodon", "x"} <= set(identifiers)
    for cls in all_providers():
        assert cls.display_name
        assert cls.default_max_length > 0
        assert cls.connect_kind in ("oauth", "fields")
        assert cls.settings_schema()["type"] == "object"
    with pytest.raises(UnknownProviderError, match="Unknown provider 'myspace'") as info:
        get_provider("myspace")
    assert "bluesky" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_config_from_env() -> None:
    env = {
        "TIDINGS_X_CLIENT_ID": "id",
        "TIDINGS_X_CLIENT_SECRET": "secret",
        "TIDINGS_X_API_URL": "http://127.0.0.1:9999/",
    }
    config = config_from_env("x", env)
    assert config.client_id == "id"
    assert config.client_secret == "secret"
    assert config.url("api") == "http://127.0.0.1:9999"
    assert config.url("auth") == "https://x.com"
    with pytest.raises(ProviderError, match="No base URL configured for 'nope'"):
        config.url("nope")
    with pytest.raises(UnknownProviderError):
        config_from_env("nope", env)


async def test_build_provider() -> None:
    async with httpx.AsyncClient() as http:
        provider = build_provider("x", http, environ={"TIDINGS_X_CLIENT_ID": "abc"})
        assert provider.identifier == "x"
        assert provider.config.client_id == "abc"
        assert provider.http is http


def test_pkce() -> None:
    # RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    fresh = new_code_verifier()
    assert 43 <= len(fresh) <= 128
    assert fresh != new_code_verifier()


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def _response(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status, json=body, headers=headers, request=httpx.Request("POST", "https://p.example/")
    )


def test_classify_response() -> None:
    assert classify_response(_response(200, {})) is None
    assert classify_response(_response(302)) is None

    error = classify_response(_response(401, {"error": "expired"}))
    assert isinstance(error, RefreshTokenError) and error.status_code == 401
    assert error.message == "expired"

    error = classify_response(_response(429, {"message": "slow down"}, {"Retry-After": "12"}))
    assert isinstance(error, RetryableError) and error.retry_after == 12

    for status in (500, 502, 503, 504, 408):
        assert isinstance(classify_response(_response(status, {})), RetryableError)

    for status in (400, 403, 404, 413, 422):
        error = classify_response(_response(status, {"errors": [{"message": f"bad {status}"}]}))
        assert isinstance(error, BadBodyError)
        assert error.message == f"bad {status}"
        assert error.kind == "bad-body"

    long = _response(400, {"detail": "x" * 2000})
    error = classify_response(long)
    assert error is not None and error.excerpt is not None and len(error.excerpt) == 500


def test_classify_exception() -> None:
    request = httpx.Request("POST", "https://p.example/")
    for exc in (
        httpx.ConnectError("refused", request=request),
        httpx.ConnectTimeout("slow", request=request),
        httpx.PoolTimeout("pool", request=request),
        httpx.WriteTimeout("write", request=request),
    ):
        for idempotent in (True, False):
            assert isinstance(classify_exception(exc, idempotent=idempotent), RetryableError)
    for exc in (
        httpx.ReadTimeout("read", request=request),
        httpx.RemoteProtocolError("dropped", request=request),
        httpx.ReadError("reset", request=request),
    ):
        assert isinstance(classify_exception(exc, idempotent=False), UnknownOutcomeError)
        assert isinstance(classify_exception(exc, idempotent=True), RetryableError)


def test_token_set() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tokens = token_set({"access_token": "a", "expires_in": 3600, "refresh_token": "r"}, now=now)
    assert tokens.access_token == "a"
    assert tokens.refresh_token == "r"
    assert tokens.expires_at == now + timedelta(hours=1)
    tokens = token_set({"access_token": "a"})
    assert tokens.refresh_token is None and tokens.expires_at is None
    with pytest.raises(RetryableError):
        token_set({"error": "nope"})


class DroppingServer(FakePlatform):
    """Closes the connection without an answer after reading the request."""

    def setup_routes(self) -> None:
        self.add("POST", "/write", self.ok)
        self.add("GET", "/read", self.ok)

    async def ok(self, request: RecordedRequest) -> Response:
        return JSONResponse({"ok": True})


@pytest.fixture
async def dropping() -> AsyncIterator[DroppingServer]:
    async with DroppingServer() as server:
        yield server


async def test_send_classifies_hangs(dropping: DroppingServer) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(2.0, read=0.3)) as http:
        dropping.hang("POST", "/write")
        with pytest.raises(UnknownOutcomeError):
            await send(http, "POST", dropping.url("/write"), json={"a": 1})
        dropping.hang("GET", "/read")
        with pytest.raises(RetryableError):
            await send(http, "GET", dropping.url("/read"))
        dropping.hang("POST", "/write")
        with pytest.raises(RetryableError):
            await send(http, "POST", dropping.url("/write"), idempotent=True)
        dropping.delay("GET", "/read", 0.05)
        response = await send(http, "GET", dropping.url("/read"))
        assert response.json() == {"ok": True}
        dropping.fail("POST", "/write", 422, {"error": "no"}, times=2)
        for _ in range(2):
            with pytest.raises(BadBodyError, match="no"):
                await send(http, "POST", dropping.url("/write"))
        assert (await send(http, "POST", dropping.url("/write"))).status_code == 200
    assert [r.method for r in dropping.requests] == ["POST", "GET", "POST", "GET"] + ["POST"] * 3


async def test_send_refuses_a_url_that_cannot_be_sent() -> None:
    # A control character in typed data (a bot token in the path, an instance URL) is a
    # failure that a retry cannot cure, and the message must not echo the URL's secret.
    async with httpx.AsyncClient() as http:
        for url in ("https://api.example/bot1:SECRET\x01/getMe", "htp://api.example/bot1:SECRET/x"):
            with pytest.raises(BadBodyError) as info:
                await send(http, "GET", url)
            assert "SECRET" not in info.value.message


class Toolbox(Provider):  # type: ignore[type-arg]
    # No identifier: a test double that the registry must not pick up.
    display_name = "Toolbox"
    default_max_length = 10

    @tool("echo")
    async def echo(self, credentials: ChannelCredentials, args: dict[str, Any]) -> Any:
        return {"who": credentials.internal_id, **args}


async def test_tools() -> None:
    async with httpx.AsyncClient() as http:
        box = Toolbox(http, ProviderConfig())
        creds = ChannelCredentials(access_token="t", internal_id="me")
        assert Toolbox.tool_names() == ["echo"]
        assert await box.call_tool("echo", creds, {"a": 1}) == {"who": "me", "a": 1}
        with pytest.raises(UnknownToolError, match="no tool 'nope' \\(tools: echo\\)"):
            await box.call_tool("nope", creds, {})
        # Providers that cannot look a post up say so instead of guessing "not published".
        assert not box.can_check_published
        with pytest.raises(ProviderError, match="cannot check"):
            await box.find_published(
                creds, PostPart(content="x"), None, parent=None, since=datetime.now(UTC)
            )
    assert "Toolbox" not in [p.display_name for p in all_providers()]


def test_settings_tolerate_type_tag() -> None:
    async_free = get_provider("x")
    schema = async_free.settings_schema()
    assert "who_can_reply_post" in schema["properties"]
