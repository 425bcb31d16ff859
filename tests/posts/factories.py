"""Builders for the posts tests: channels and posts rows."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.models import Integration
from tidings.core.enums import State
from tidings.posts.models import Post


async def make_channel(
    session: AsyncSession,
    org_id: str,
    *,
    provider: str = "mastodon",
    name: str = "Alice",
    custom: dict[str, Any] | None = None,
    internal_id: str | None = None,
    token: str = "access-1",
    **fields: Any,
) -> Integration:
    """An Integration row of ``org_id`` (flushed)."""
    row = Integration(
        organization_id=org_id,
        internal_id=internal_id or f"{uuid.uuid4().hex[:8]}@example",
        name=name,
        provider_identifier=provider,
        type="social",
        token=token,
        custom_instance_details=json.dumps(custom) if custom is not None else None,
        **fields,
    )
    session.add(row)
    await session.flush()
    return row


async def make_post(
    session: AsyncSession,
    org_id: str,
    integration_id: str,
    *,
    publish_date: datetime,
    content: str = "hello",
    state: State = State.QUEUE,
    group: str | None = None,
    **fields: Any,
) -> Post:
    """A post row (no publish job; flushed)."""
    row = Post(
        organization_id=org_id,
        integration_id=integration_id,
        content=content,
        group=group or str(uuid.uuid4()),
        publish_date=publish_date,
        state=state,
        **fields,
    )
    session.add(row)
    await session.flush()
    return row
