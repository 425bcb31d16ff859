"""The one guard for every URL a user gives us (webhooks, RSS feeds, upload from URL, instances).

A URL passes when its scheme is http(s) and every address its host resolves to is public.
Private, loopback, link-local, multicast, reserved and unspecified addresses are refused unless
``allow_private`` is true (``TIDINGS_ALLOW_PRIVATE_URLS``: tests and LAN setups).

Redirects are the classic way around such a guard, so :func:`guarded_request` follows them itself
and checks every hop. DNS rebinding (a name that resolves to a public address when checked and to
a private one when connected) is the other: :func:`guarded_request` connects to the very address
it checked, keeping the name for the Host header, TLS SNI and certificate verification.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx


class UnsafeURLError(ValueError):
    """The URL is not allowed: bad scheme, unresolvable host, or a non-public address."""


class TooManyRedirects(UnsafeURLError):
    """The URL redirected more than the caller allows (with ``max_redirects=0``: at all)."""


_ALLOWED_SCHEMES = {"http", "https"}


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    )


_CGNAT = ipaddress.ip_network("100.64.0.0/10")


async def check_url(url: str, *, allow_private: bool, require_https: bool = False) -> None:
    """Raise :class:`UnsafeURLError` unless ``url`` may be fetched by the server."""
    await _checked_addresses(url, allow_private=allow_private, require_https=require_https)


async def _checked_addresses(
    url: str, *, allow_private: bool, require_https: bool
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Check ``url`` and return the public addresses its host resolves to (empty when private
    addresses are allowed: nothing needs pinning then)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError(f"not a valid URL: {url!r}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _ALLOWED_SCHEMES:
        raise UnsafeURLError(f"only http and https URLs are allowed, not {scheme or 'none'!r}")
    if require_https and scheme != "https" and not allow_private:
        raise UnsafeURLError("only https URLs are allowed")
    host = parts.hostname
    if not host:
        raise UnsafeURLError("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeURLError("URLs with credentials are not allowed")
    if allow_private:
        return []
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, port or (443 if scheme == "https" else 80), type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError) as exc:
            raise UnsafeURLError(f"cannot resolve host {host!r}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for address in addresses:
        if not _is_public(address):
            raise UnsafeURLError(
                f"{host!r} resolves to a private or loopback address ({address}), "
                "which is not allowed (see TIDINGS_ALLOW_PRIVATE_URLS)"
            )
    return addresses


def _pinned(
    request: httpx.Request, addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address]
) -> httpx.Request:
    """``request`` sent to the checked address, still presenting the original host name."""
    host = request.url.host
    try:
        ipaddress.ip_address(host)
        return request  # already an address: nothing to resolve again
    except ValueError:
        pass
    if not addresses:
        return request
    request.url = request.url.copy_with(host=str(addresses[0]))
    request.extensions = {**request.extensions, "sni_hostname": host}
    # The Host header was set from the original URL when the request was built; keep it.
    return request


async def guarded_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    allow_private: bool,
    require_https: bool = False,
    max_redirects: int = 5,
    stream: bool = False,
    **kwargs: object,
) -> httpx.Response:
    """Send a request, following redirects by hand so that every hop passes :func:`check_url`.

    With ``stream=True`` the final response is returned unread; the caller must close it.
    """
    current = url
    for _ in range(max_redirects + 1):
        addresses = await _checked_addresses(
            current, allow_private=allow_private, require_https=require_https
        )
        request = _pinned(client.build_request(method, current, **kwargs), addresses)  # type: ignore[arg-type]
        response = await client.send(request, stream=True, follow_redirects=False)
        if response.is_redirect and "location" in response.headers:
            await response.aclose()
            current = urljoin(current, response.headers["location"])
            if response.status_code in (301, 302, 303):
                method = "GET" if method.upper() != "HEAD" else "HEAD"
                kwargs.pop("content", None)
                kwargs.pop("json", None)
                kwargs.pop("data", None)
            continue
        if not stream:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response
    raise TooManyRedirects(f"too many redirects (more than {max_redirects})")
