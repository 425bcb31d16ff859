from __future__ import annotations

from collections.abc import Iterator

import pytest

from tidings.config import get_settings


@pytest.fixture(autouse=True)
def _only_needed_routers(monkeypatch: pytest.MonkeyPatch) -> None:
    """TEMPORARY: apps get only the routers these tests need (other domains are mid-change)."""
    import tidings.app

    monkeypatch.setattr(
        tidings.app, "ROUTER_MODULES", ["tidings.accounts.routes", "tidings.channels.routes"]
    )


@pytest.fixture
def billing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """TIDINGS_BILLING=true for this test."""
    monkeypatch.setenv("TIDINGS_BILLING", "true")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("TIDINGS_BILLING")
    get_settings.cache_clear()


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TIDINGS_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("TIDINGS_ALLOW_PRIVATE_URLS")
    get_settings.cache_clear()
