"""The organizations API: my organizations, switching, members, invites and the API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from tidings.accounts.auth import (
    Admin,
    CurrentSession,
    CurrentUser,
    DbSession,
    Member,
    set_org_cookie,
)
from tidings.accounts.models import User
from tidings.accounts.service import memberships
from tidings.config import Settings
from tidings.core.enums import Role
from tidings.core.errors import Forbidden, NotFound
from tidings.core.tenancy import OrgId
from tidings.orgs import invites as invite_service
from tidings.orgs import service
from tidings.orgs.models import Organization, OrganizationInvite, UserOrganization
from tidings.orgs.schemas import (
    ApiKeyOut,
    InviteAcceptIn,
    InviteCreatedOut,
    InviteIn,
    InviteOut,
    InvitePreviewOut,
    MemberOut,
    MemberUpdateIn,
    OrgCreateIn,
    OrgOut,
    OrgUpdateIn,
    SwitchIn,
)

router = APIRouter(prefix="/api", tags=["organizations"])

PathId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


def _org_out(org: Organization, role: Role) -> OrgOut:
    return OrgOut(
        id=org.id,
        name=org.name,
        description=org.description,
        role=role,
        api_key_set=org.api_key is not None,
        created_at=org.created_at,
    )


def _member_out(membership: UserOrganization, user: User) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=membership.role,
        disabled=membership.disabled,
        joined_at=membership.created_at,
        last_online=user.last_online,
    )


def _invite_out(invite: OrganizationInvite) -> InviteOut:
    return InviteOut(
        id=invite.id,
        email=invite.email,
        role=invite.role,
        created_at=invite.created_at,
        expires_at=invite.expires_at,
    )


async def _organization(db: DbSession, org_id: str) -> Organization:
    org = await db.get(Organization, org_id)
    if org is None:
        raise NotFound("organization not found", field="org_id")
    return org


@router.get("/orgs")
async def list_my_orgs(user: CurrentUser, db: DbSession) -> list[OrgOut]:
    """The organizations I am an active member of."""
    return [_org_out(org, role) for org, role in await memberships(db, user.id)]


@router.post("/orgs", status_code=status.HTTP_201_CREATED)
async def create_org(body: OrgCreateIn, user: CurrentUser, db: DbSession) -> OrgOut:
    """Create another organization; I become its ADMIN."""
    org = await service.create_organization(db, body.name, owner_id=user.id)
    if body.description:
        org = await service.update_organization(
            db, OrgId(org.id), {"description": body.description}
        )
    return _org_out(org, Role.ADMIN)


@router.post("/orgs/switch")
async def switch_org(
    body: SwitchIn, request: Request, response: Response, active: CurrentSession, db: DbSession
) -> OrgOut:
    """Make another of my organizations the current one (session and cookie)."""
    org = await service.switch_organization(db, active.session, body.organization_id)
    membership = await service.active_membership(db, active.user.id, org.id)
    set_org_cookie(request, response, org.id)
    return _org_out(org, membership.role)


@router.get("/orgs/current")
async def current_org(caller: Member, db: DbSession) -> OrgOut:
    """The organization this request acts in."""
    return _org_out(await _organization(db, caller.organization_id), caller.role)


@router.post("/orgs/current/api-key", status_code=status.HTTP_201_CREATED)
async def rotate_api_key(caller: Admin, db: DbSession) -> ApiKeyOut:
    """Issue a new Public API key (the previous one stops working); shown once."""
    return ApiKeyOut(api_key=await service.rotate_api_key(db, caller.organization_id))


@router.get("/orgs/current/members")
async def list_members(caller: Member, db: DbSession) -> list[MemberOut]:
    """The members of the current organization."""
    return [_member_out(m, u) for m, u in await service.list_members(db, caller.organization_id)]


@router.patch("/orgs/current/members/{user_id}")
async def update_member(
    user_id: PathId, body: MemberUpdateIn, caller: Admin, db: DbSession
) -> MemberOut:
    """Change a member's role, or disable / re-enable them (admins only)."""
    assert caller.user is not None
    membership, user = await service.update_member(
        db,
        caller.organization_id,
        user_id,
        actor_id=caller.user.id,
        actor_role=caller.role,
        role=body.role,
        disabled=body.disabled,
    )
    return _member_out(membership, user)


@router.delete("/orgs/current/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(user_id: PathId, caller: Admin, db: DbSession) -> None:
    """Remove a member from the organization (admins only)."""
    assert caller.user is not None
    await service.remove_member(
        db, caller.organization_id, user_id, actor_id=caller.user.id, actor_role=caller.role
    )


@router.get("/orgs/current/invites")
async def list_invites(caller: Admin, db: DbSession) -> list[InviteOut]:
    """Pending invites of the current organization (admins only)."""
    pending = await invite_service.list_pending_invites(db, caller.organization_id)
    return [_invite_out(i) for i in pending]


@router.post("/orgs/current/invites", status_code=status.HTTP_201_CREATED)
async def create_invite(
    body: InviteIn, request: Request, caller: Admin, db: DbSession
) -> InviteCreatedOut:
    """Invite someone by email with a role; the link is emailed (admins only)."""
    assert caller.user is not None
    settings: Settings = request.app.state.settings
    invite, url, sent = await invite_service.create_invite(
        db,
        settings,
        caller.organization_id,
        inviter=caller.user,
        inviter_role=caller.role,
        email=body.email,
        role=body.role,
    )
    return InviteCreatedOut(**_invite_out(invite).model_dump(), url=url, email_sent=sent)


@router.delete("/orgs/current/invites/{invite_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_invite(invite_id: PathId, caller: Admin, db: DbSession) -> None:
    """Revoke a pending invite (admins only)."""
    await invite_service.revoke_invite(db, caller.organization_id, invite_id)


@router.get("/orgs/{org_id}")
async def get_org(org_id: PathId, user: CurrentUser, db: DbSession) -> OrgOut:
    """One of my organizations."""
    membership = await service.active_membership(db, user.id, org_id)
    return _org_out(await _organization(db, org_id), membership.role)


@router.patch("/orgs/{org_id}")
async def update_org(org_id: PathId, body: OrgUpdateIn, user: CurrentUser, db: DbSession) -> OrgOut:
    """Rename one of my organizations or change its description (its admins only)."""
    membership = await service.active_membership(db, user.id, org_id)
    if membership.role not in (Role.ADMIN, Role.SUPERADMIN):
        raise Forbidden("only an admin of the organization may change it")
    changes = body.model_dump(include=body.model_fields_set)
    # The membership check above is what makes this id the caller's organization.
    org = await service.update_organization(db, OrgId(org_id), changes)
    return _org_out(org, membership.role)


@router.get("/invites/preview")
async def preview_invite(
    db: DbSession, token: Annotated[str, Query(min_length=1, max_length=1000)]
) -> InvitePreviewOut:
    """What an invite link offers (for the accept page; no sign-in needed)."""
    invite = await invite_service.invite_from_token(db, token)
    org = await invite_service.invite_organization(db, invite)
    return InvitePreviewOut(
        organization_id=org.id,
        organization_name=org.name,
        email=invite.email,
        role=invite.role,
        expires_at=invite.expires_at,
    )


@router.post("/invites/accept")
async def accept_invite(
    body: InviteAcceptIn,
    request: Request,
    response: Response,
    active: CurrentSession,
    db: DbSession,
) -> OrgOut:
    """Join the organization of an invite as the signed-in user (who must have the invited
    email); it becomes the current organization."""
    invite = await invite_service.invite_from_token(db, body.token)
    membership = await invite_service.accept_invite(db, invite, active.user)
    org = await service.switch_organization(db, active.session, invite.organization_id)
    set_org_cookie(request, response, org.id)
    return _org_out(org, membership.role)
