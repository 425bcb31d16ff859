from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The client providers get in production, with short timeouts for the loopback servers."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=1.0)) as client:
        yield client
