from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An outbound client for providers, with short timeouts for the loopback servers."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=2.0)) as client:
        yield client


@pytest.fixture(autouse=True)
async def _close_shared_clients() -> AsyncIterator[None]:
    """Providers built without a client share one per loop; close it after each test."""
    yield
    from tidings.channels.service import close_shared_http_clients

    await close_shared_http_clients()
