"""Fixtures of the automation tests: settings overrides, loopback receiver and feeds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from tests.automation.helpers import FeedServer, Receiver
from tidings.config import get_settings


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set settings for this test (``configure(webhook_max_attempts=2)``); loopback URLs are
    always allowed here since every server of these tests is on 127.0.0.1."""

    def apply(**values: object) -> None:
        for key, value in values.items():
            monkeypatch.setenv(f"TIDINGS_{key.upper()}", str(value))
        get_settings.cache_clear()

    apply(allow_private_urls="true")
    yield apply
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


@pytest.fixture
async def feeds() -> AsyncIterator[FeedServer]:
    async with FeedServer() as server:
        yield server
