"""Isolation-test registrations of the accounts and organizations routes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.isolation_fixtures import OwnerContext, isolation_factory, not_tenant_scoped
from tidings.accounts.models import User
from tidings.core.enums import Provider, Role
from tidings.orgs.models import OrganizationInvite, UserOrganization

not_tenant_scoped("/api/auth/oauth/{provider}/start", "a sign-in provider name, not a row")
not_tenant_scoped("/api/auth/oauth/{provider}/callback", "a sign-in provider name, not a row")


@isolation_factory("org_id", prefix="/api/orgs")
async def organization_a(ctx: OwnerContext) -> dict[str, str]:
    return {"org_id": ctx.org_id}


@isolation_factory("user_id", prefix="/api/orgs/current/members")
async def member_of_a(ctx: OwnerContext) -> dict[str, str]:
    user = User(email="isolation.member@example.com", provider_name=Provider.LOCAL)
    ctx.db.add(user)
    await ctx.db.flush()
    ctx.db.add(UserOrganization(user_id=user.id, organization_id=ctx.org_id, role=Role.USER))
    await ctx.db.flush()
    return {"user_id": user.id}


@isolation_factory("invite_id", prefix="/api/orgs/current/invites")
async def invite_of_a(ctx: OwnerContext) -> dict[str, str]:
    invite = OrganizationInvite(
        organization_id=ctx.org_id,
        email="isolation.invitee@example.com",
        role=Role.USER,
        invited_by_id=ctx.user_id,
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    ctx.db.add(invite)
    await ctx.db.flush()
    return {"invite_id": invite.id}
