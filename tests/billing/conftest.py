from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tidings.config import get_settings


@pytest.fixture
def billing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """TIDINGS_BILLING=true for this test."""
    monkeypatch.setenv("TIDINGS_BILLING", "true")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("TIDINGS_BILLING")
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
async def _close_shared_clients() -> AsyncIterator[None]:
    """Providers built without a client share one per loop; close it after each test."""
    yield
    from tidings.channels.service import close_shared_http_clients

    await close_shared_http_clients()
