from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tidings.config import get_settings


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Providers and publishers keep one outbound client per loop; close them after each test."""
    yield
    from tidings.channels.service import close_shared_http_clients
    from tidings.posts.engine import close_publishers

    await close_shared_http_clients()
    await close_publishers()


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let user-given URLs (media, instances) point at loopback test servers."""
    monkeypatch.setenv("TIDINGS_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("TIDINGS_ALLOW_PRIVATE_URLS")
    get_settings.cache_clear()
