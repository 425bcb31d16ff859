from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Tenant
from tidings.core.tenancy import OrgId
from tidings.orgs.service import rotate_api_key


@dataclass
class ApiKey:
    """An organization's Public API key, sent the way Postiz clients send it."""

    org_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.key}


@pytest.fixture
async def api(db: AsyncSession, tenant: Tenant) -> ApiKey:
    """Organization A's API key."""
    key = await rotate_api_key(db, OrgId(tenant.org_id))
    await db.flush()
    return ApiKey(tenant.org_id, key)


@pytest.fixture
async def other_api(db: AsyncSession, other_tenant: Tenant) -> ApiKey:
    """Organization B's API key."""
    key = await rotate_api_key(db, OrgId(other_tenant.org_id))
    await db.flush()
    return ApiKey(other_tenant.org_id, key)


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Providers, publishers and the Redis limiter keep clients per loop: close them."""
    yield
    from tidings.channels.service import close_shared_http_clients
    from tidings.public_api.ratelimit import close_redis_clients

    await close_shared_http_clients()
    await close_redis_clients()
    try:
        from tidings.posts.engine import close_publishers
    except ImportError:
        return
    await close_publishers()
