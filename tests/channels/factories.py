"""Builders of channel rows for the channels tests."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.models import Integration


async def make_channel(
    session: AsyncSession,
    org_id: str,
    *,
    provider: str = "bluesky",
    internal_id: str | None = None,
    name: str = "Alice",
    token: str = "access-1",
    refresh_token: str | None = "refresh-1",
    expires_at: datetime | None = None,
    custom: dict[str, Any] | None = None,
    **fields: Any,
) -> Integration:
    """An Integration row of ``org_id`` (flushed, not committed)."""
    row = Integration(
        organization_id=org_id,
        internal_id=internal_id or f"id-{uuid.uuid4().hex[:8]}",
        name=name,
        provider_identifier=provider,
        type="social",
        token=token,
        refresh_token=refresh_token,
        token_expiration=expires_at,
        custom_instance_details=json.dumps(custom) if custom is not None else None,
        **fields,
    )
    session.add(row)
    await session.flush()
    return row
