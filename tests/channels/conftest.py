from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tidings.config import get_settings


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An outbound client for providers, with short timeouts for the loopback servers."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=2.0)) as client:
        yield client


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let user-given URLs point at the loopback fake platforms."""
    monkeypatch.setenv("TIDINGS_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("TIDINGS_ALLOW_PRIVATE_URLS")
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
async def _close_shared_clients() -> AsyncIterator[None]:
    """Providers built without a client share one per loop; close it after each test."""
    yield
    from tidings.channels.service import close_shared_http_clients

    await close_shared_http_clients()
