"""Inviting people into an organization.

An invite is a row (organization, email, role, expiry) and an emailed link carrying a signed
token that names the row. The link works once (the row records its acceptance), until it
expires, and not after an admin revokes it or sends a newer invite to the same address. It is
accepted by a signed-in user with the invited email, or by registering with it (which works even
when registration is otherwise disabled).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts import links
from tidings.accounts.mailer import Mail, send_mail
from tidings.accounts.models import User
from tidings.config import Settings
from tidings.core.enums import Role
from tidings.core.errors import BadRequest, Conflict, Forbidden, NotFound
from tidings.core.tenancy import OrgId, get_owned, owned_by
from tidings.orgs.models import Organization, OrganizationInvite, UserOrganization

logger = logging.getLogger("tidings.orgs")

INVITE_PURPOSE = "invite"


def _pending() -> ColumnElement[bool]:
    return and_(
        OrganizationInvite.accepted_at.is_(None),
        OrganizationInvite.revoked_at.is_(None),
        OrganizationInvite.expires_at > datetime.now(UTC),
    )


async def create_invite(
    session: AsyncSession,
    settings: Settings,
    org_id: OrgId,
    *,
    inviter: User,
    inviter_role: Role,
    email: str,
    role: Role,
) -> tuple[OrganizationInvite, str, bool]:
    """Invite ``email`` (already normalised) with ``role``; returns the invite, its link and
    whether the mail went out. An earlier pending invite to the same address is revoked."""
    if inviter_role not in (Role.ADMIN, Role.SUPERADMIN):
        raise Forbidden("only an admin of the organization may invite members")
    if role == Role.SUPERADMIN and inviter_role != Role.SUPERADMIN:
        raise Forbidden("only a SUPERADMIN may invite a SUPERADMIN", field="role")
    already = (
        await session.execute(
            select(UserOrganization.id)
            .join(User, User.id == UserOrganization.user_id)
            .where(
                owned_by(UserOrganization, org_id),
                User.email == email,
                UserOrganization.disabled.is_(False),
            )
            .limit(1)
        )
    ).first()
    if already is not None:
        raise Conflict("this person is already a member of the organization", field="email")
    now = datetime.now(UTC)
    await session.execute(
        update(OrganizationInvite)
        .where(
            owned_by(OrganizationInvite, org_id),
            OrganizationInvite.email == email,
            _pending(),
        )
        .values(revoked_at=now)
    )
    invite = OrganizationInvite(
        organization_id=org_id,
        email=email,
        role=role,
        invited_by_id=inviter.id,
        expires_at=now + timedelta(days=settings.invite_ttl_days),
    )
    session.add(invite)
    await session.flush()
    org = await session.get(Organization, org_id)
    assert org is not None
    url = links.public_link(settings, "/invite", links.make_token(INVITE_PURPOSE, {"i": invite.id}))
    inviter_name = inviter.name or inviter.email
    sent = await send_mail(
        Mail(
            to=email,
            subject=f"{inviter_name} invited you to {org.name} on Tidings",
            text=(
                f"{inviter_name} invited you to join {org.name} on Tidings as "
                f"{role.value.lower()}.\n\nAccept the invitation here (valid for "
                f"{settings.invite_ttl_days} days):\n{url}\n"
            ),
        ),
        settings,
    )
    return invite, url, sent


async def list_pending_invites(session: AsyncSession, org_id: OrgId) -> list[OrganizationInvite]:
    """The organization's invites that can still be accepted, newest first."""
    rows = await session.execute(
        select(OrganizationInvite)
        .where(owned_by(OrganizationInvite, org_id), _pending())
        .order_by(OrganizationInvite.created_at.desc(), OrganizationInvite.id)
    )
    return list(rows.scalars())


async def revoke_invite(session: AsyncSession, org_id: OrgId, invite_id: str) -> None:
    """Revoke a pending invite: its link stops working."""
    invite = await get_owned(
        session, OrganizationInvite, invite_id, org_id, what="invite", for_update=True
    )
    if invite.accepted_at is not None or invite.revoked_at is not None:
        raise NotFound("invite not found", field="id")
    invite.revoked_at = datetime.now(UTC)
    await session.flush()


async def invite_from_token(session: AsyncSession, token: str) -> OrganizationInvite:
    """The pending invite a link's token names; :class:`BadRequest` naming ``token`` when the
    token is forged or expired, or the invite was used, revoked or replaced."""
    payload = links.read_token(
        INVITE_PURPOSE, token, max_age_seconds=int(timedelta(days=366).total_seconds())
    )
    invite_id = payload.get("i")
    invite = (
        (
            await session.execute(
                select(OrganizationInvite)
                .where(OrganizationInvite.id == invite_id, _pending())
                .with_for_update()
            )
        ).scalar_one_or_none()
        if isinstance(invite_id, str)
        else None
    )
    if invite is None:
        raise BadRequest(
            "this invite was already used, revoked or has expired",
            field="token",
            code="invalid_token",
        )
    return invite


async def accept_invite(
    session: AsyncSession, invite: OrganizationInvite, user: User
) -> UserOrganization:
    """Make ``user`` (who must have the invited email) a member with the invited role."""
    if user.email != invite.email:
        raise BadRequest("this invite was sent to another email address", field="token")
    membership = (
        await session.execute(
            select(UserOrganization)
            .where(
                UserOrganization.organization_id == invite.organization_id,
                UserOrganization.user_id == user.id,
            )
            .with_for_update()
        )
    ).scalar_one_or_none()
    if membership is not None and not membership.disabled:
        raise Conflict("you are already a member of this organization", field="token")
    if membership is None:
        membership = UserOrganization(
            user_id=user.id, organization_id=invite.organization_id, role=invite.role
        )
        session.add(membership)
    else:
        # Re-inviting a disabled member is how an admin lets them back in.
        membership.disabled = False
        membership.role = invite.role
    now = datetime.now(UTC)
    invite.accepted_at = now
    invite.accepted_by_id = user.id
    user.invite_id = invite.id
    await session.flush()
    logger.info("user %s joined organization %s by invite", user.id, invite.organization_id)
    return membership


async def invite_organization(session: AsyncSession, invite: OrganizationInvite) -> Organization:
    """The organization of an invite."""
    org = await session.get(Organization, invite.organization_id)
    if org is None:
        raise NotFound("organization not found")
    return org
