"""The URL guard refuses what the server must never fetch for a user."""

from __future__ import annotations

import httpx
import pytest

from tidings.core.urlguard import TooManyRedirects, UnsafeURLError, check_url, guarded_request


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8000/admin",
        "http://10.1.2.3/",
        "http://192.168.1.1/",
        "http://172.16.0.5/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://[fe80::1]/",
    ],
)
async def test_private_and_loopback_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="private or loopback"):
        await check_url(url, allow_private=False)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("ftp://example.com/", "only http and https"),
        ("http:///nohost", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://no-such-host.invalid/", "cannot resolve"),
    ],
)
async def test_malformed_or_unresolvable_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(UnsafeURLError, match=message):
        await check_url(url, allow_private=False)


async def test_public_literal_addresses_pass() -> None:
    await check_url("https://93.184.215.14/feed.xml", allow_private=False)
    await check_url("http://[2606:4700::1111]/", allow_private=False)


async def test_private_addresses_pass_when_allowed() -> None:
    await check_url("http://127.0.0.1:9/x", allow_private=True)
    with pytest.raises(UnsafeURLError):
        await check_url("file:///etc/passwd", allow_private=True)


async def test_https_can_be_required() -> None:
    with pytest.raises(UnsafeURLError, match="https"):
        await check_url("http://93.184.215.14/", allow_private=False, require_https=True)


async def test_every_redirect_hop_is_checked() -> None:
    """A public URL redirecting to the metadata service is refused at the hop."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "93.184.215.14":
            return httpx.Response(302, headers={"location": "http://169.254.169.254/secret"})
        return httpx.Response(200, text="secret")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(UnsafeURLError, match="private or loopback"):
            await guarded_request(client, "GET", "http://93.184.215.14/", allow_private=False)
    assert seen == ["http://93.184.215.14/"]


async def test_redirects_are_followed_and_capped() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        step = int(request.url.path.strip("/") or 0)
        if step < 3:
            return httpx.Response(301, headers={"location": f"/{step + 1}"})
        return httpx.Response(200, text=f"arrived {step}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        response = await guarded_request(
            client, "GET", "http://93.184.215.14/", allow_private=False
        )
        assert response.text == "arrived 3"
        with pytest.raises(TooManyRedirects, match="too many redirects"):
            await guarded_request(
                client, "GET", "http://93.184.215.14/", allow_private=False, max_redirects=2
            )


async def test_the_checked_address_is_the_one_connected_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name is resolved once, checked, and the request goes to that address
    with the original name as Host header and TLS server name."""
    import asyncio
    import socket

    answers = iter(["93.184.215.14", "127.0.0.1"])  # a second lookup would rebind to loopback

    async def fake_getaddrinfo(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        response = await guarded_request(
            client, "GET", "https://feeds.example.com:8443/rss", allow_private=False
        )
    assert response.text == "ok"
    (request,) = seen
    assert request.url.host == "93.184.215.14"
    assert request.url.port == 8443
    assert request.headers["host"] == "feeds.example.com:8443"
    assert request.extensions["sni_hostname"] == "feeds.example.com"
    assert next(answers) == "127.0.0.1"  # resolved exactly once
