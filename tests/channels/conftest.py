from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.channels.helpers import point
from tests.channels.providers.servers import linkedin as fake_linkedin
from tests.channels.providers.servers.linkedin import FakeLinkedIn


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An outbound client for providers, with short timeouts for the loopback servers."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=2.0)) as client:
        yield client


@pytest.fixture
async def linkedin(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLinkedIn]:
    """A fake LinkedIn that both LinkedIn providers (member and page) talk to."""
    async with FakeLinkedIn() as server:
        point(
            monkeypatch,
            "linkedin",
            server,
            client_id=fake_linkedin.CLIENT_ID,
            client_secret=fake_linkedin.CLIENT_SECRET,
        )
        point(monkeypatch, "linkedin-page", server)
        yield server


@pytest.fixture(autouse=True)
async def _close_shared_clients() -> AsyncIterator[None]:
    """Providers built without a client share one per loop; close it after each test."""
    yield
    from tidings.channels.service import close_shared_http_clients

    await close_shared_http_clients()
