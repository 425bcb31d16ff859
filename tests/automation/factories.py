"""Rows the automation tests need: channels, members, endpoints, feeds."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.service import create_local_user
from tidings.accounts.sessions import create_session
from tidings.automation.models import AutoPost
from tidings.channels.models import Integration
from tidings.core.enums import Role
from tidings.db import Database
from tidings.orgs.models import UserOrganization


async def make_channel(
    session: AsyncSession,
    org_id: str,
    *,
    identifier: str = "mastodon",
    name: str | None = None,
    posting_times: list[dict[str, int]] | None = None,
) -> Integration:
    """A connected channel of ``org_id`` (no network involved)."""
    suffix = uuid.uuid4().hex[:8]
    channel = Integration(
        organization_id=org_id,
        internal_id=f"acct-{suffix}",
        name=name or f"{identifier} {suffix}",
        provider_identifier=identifier,
        type="social",
        token=f"token-{suffix}",
        profile=f"user{suffix}",
    )
    if posting_times is not None:
        channel.posting_times = posting_times
    session.add(channel)
    await session.flush()
    return channel


async def make_feed(
    session: AsyncSession,
    org_id: str,
    url: str,
    channel_ids: list[str],
    *,
    name: str = "feed",
    template: str = "{{title}}",
    primed: bool = False,
) -> AutoPost:
    """A feed of ``org_id`` posting to ``channel_ids`` (``primed``: its next poll posts the
    items already there)."""
    feed = AutoPost(
        organization_id=org_id,
        name=name,
        url=url,
        integrations=channel_ids,
        template=template,
        primed=primed,
    )
    session.add(feed)
    await session.flush()
    return feed


async def make_member(database: Database, org_id: str) -> dict[str, str]:
    """A signed-in plain member (role USER) of ``org_id``; returns app API headers."""
    async with database.session() as session:
        user = await create_local_user(
            session,
            email=f"member-{uuid.uuid4().hex[:8]}@example.com",
            password="correct horse battery",
        )
        session.add(UserOrganization(user_id=user.id, organization_id=org_id, role=Role.USER))
        await session.flush()
        token, _ = await create_session(session, user.id, organization_id=org_id)
    return {"Authorization": f"Bearer {token}", "X-Tidings-Org": org_id}
