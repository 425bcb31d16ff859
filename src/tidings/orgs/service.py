"""Organizations: creation, lookup, membership and the Public API key."""

from __future__ import annotations

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User, UserSession
from tidings.core import crypto
from tidings.core.enums import Role
from tidings.core.errors import BadRequest, Forbidden, NotFound
from tidings.core.ids import new_token
from tidings.core.tenancy import OrgId, owned_by
from tidings.orgs.models import Organization, UserOrganization

API_KEY_PREFIX = "tdg_"
MAX_NAME_LENGTH = 200


def clean_org_name(name: str) -> str:
    """A trimmed organization name, or :class:`BadRequest` naming the field."""
    cleaned = name.strip()
    if not cleaned:
        raise BadRequest("organization name must not be empty", field="name")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise BadRequest(
            f"organization name must be at most {MAX_NAME_LENGTH} characters", field="name"
        )
    return cleaned


async def create_organization(
    session: AsyncSession, name: str, *, owner_id: str, role: Role = Role.ADMIN
) -> Organization:
    """Create an organization with ``owner_id`` as its first member (ADMIN by default)."""
    org = Organization(name=clean_org_name(name))
    session.add(org)
    await session.flush()
    session.add(UserOrganization(user_id=owner_id, organization_id=org.id, role=role))
    await session.flush()
    return org


async def find_organization(session: AsyncSession, name_or_id: str) -> Organization:
    """The organization with this id, else the one with this exact name.

    A name shared by several organizations is ambiguous: the caller must give the id.
    """
    rows = (
        (
            await session.execute(
                select(Organization).where(
                    or_(Organization.id == name_or_id, Organization.name == name_or_id)
                )
            )
        )
        .scalars()
        .all()
    )
    by_id = [o for o in rows if o.id == name_or_id]
    if by_id:
        return by_id[0]
    if not rows:
        raise NotFound(f"no organization named or with id {name_or_id!r}", field="org")
    if len(rows) > 1:
        raise BadRequest(
            f"{len(rows)} organizations are named {name_or_id!r}; give its id instead",
            field="org",
        )
    return rows[0]


async def rotate_api_key(session: AsyncSession, org_id: OrgId) -> str:
    """Issue a new Public API key for the organization; the old one stops working at once.

    The key is returned once; only its hash is stored.
    """
    org = await session.get(Organization, org_id, with_for_update=True)
    if org is None:
        raise NotFound("organization not found", field="org")
    key = API_KEY_PREFIX + new_token(32)
    org.api_key = crypto.hash_token(key)
    await session.flush()
    return key


async def organization_for_api_key(session: AsyncSession, key: str) -> Organization | None:
    """The organization whose Public API key is ``key``, if any."""
    if not key:
        return None
    return (
        await session.execute(
            select(Organization).where(Organization.api_key == crypto.hash_token(key))
        )
    ).scalar_one_or_none()


# --- my organizations ---------------------------------------------------------------------


async def active_membership(session: AsyncSession, user_id: str, org_id: str) -> UserOrganization:
    """The active membership of ``user_id`` in ``org_id``; :class:`NotFound` when the user is
    not (or no longer) a member, so other organizations cannot even be probed."""
    membership = (
        await session.execute(
            select(UserOrganization).where(
                UserOrganization.user_id == user_id,
                UserOrganization.organization_id == org_id,
                UserOrganization.disabled.is_(False),
            )
        )
    ).scalar_one_or_none()
    if membership is None:
        raise NotFound("organization not found", field="org_id")
    return membership


async def update_organization(
    session: AsyncSession, org_id: OrgId, changes: dict[str, str | None]
) -> Organization:
    """Rename the organization or change its description."""
    org = await session.get(Organization, org_id, with_for_update=True)
    if org is None:
        raise NotFound("organization not found", field="org_id")
    if "name" in changes:
        org.name = clean_org_name(changes["name"] or "")
    if "description" in changes:
        org.description = (changes["description"] or "").strip() or None
    await session.flush()
    return org


async def switch_organization(
    session: AsyncSession, user_session: UserSession, org_id: str
) -> Organization:
    """Make ``org_id`` the session's current organization (the user must be a member)."""
    await active_membership(session, user_session.user_id, org_id)
    user_session.organization_id = org_id
    org = await session.get(Organization, org_id)
    assert org is not None
    await session.flush()
    return org


# --- members ------------------------------------------------------------------------------

_MANAGER_ROLES = frozenset({Role.ADMIN, Role.SUPERADMIN})


async def list_members(session: AsyncSession, org_id: OrgId) -> list[tuple[UserOrganization, User]]:
    """Every member of the organization (disabled ones too), oldest first."""
    rows = await session.execute(
        select(UserOrganization, User)
        .join(User, User.id == UserOrganization.user_id)
        .where(owned_by(UserOrganization, org_id))
        .order_by(UserOrganization.created_at, UserOrganization.id)
    )
    return [(membership, user) for membership, user in rows]


async def _member_row(
    session: AsyncSession, org_id: OrgId, user_id: str
) -> tuple[UserOrganization, User]:
    row = (
        await session.execute(
            select(UserOrganization, User)
            .join(User, User.id == UserOrganization.user_id)
            .where(owned_by(UserOrganization, org_id), UserOrganization.user_id == user_id)
            .with_for_update(of=UserOrganization)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("member not found", field="user_id")
    membership, user = row
    return membership, user


def _check_may_manage(
    actor_id: str, actor_role: Role, target: UserOrganization, new_role: Role | None = None
) -> None:
    if actor_role not in _MANAGER_ROLES:
        raise Forbidden("only an admin of the organization may manage members")
    if target.user_id == actor_id:
        # Keeps at least one admin in every organization: nobody can demote or drop themselves.
        raise BadRequest("you cannot change your own membership", field="user_id")
    if Role.SUPERADMIN in (target.role, new_role) and actor_role != Role.SUPERADMIN:
        raise Forbidden("only a SUPERADMIN may manage SUPERADMIN members", field="role")


async def update_member(
    session: AsyncSession,
    org_id: OrgId,
    user_id: str,
    *,
    actor_id: str,
    actor_role: Role,
    role: Role | None = None,
    disabled: bool | None = None,
) -> tuple[UserOrganization, User]:
    """Change a member's role and/or disable (or re-enable) them."""
    membership, user = await _member_row(session, org_id, user_id)
    _check_may_manage(actor_id, actor_role, membership, role)
    if role is not None:
        membership.role = role
    if disabled is not None:
        membership.disabled = disabled
    await session.flush()
    return membership, user


async def remove_member(
    session: AsyncSession, org_id: OrgId, user_id: str, *, actor_id: str, actor_role: Role
) -> None:
    """Remove a member from the organization (their account stays)."""
    membership, _ = await _member_row(session, org_id, user_id)
    _check_may_manage(actor_id, actor_role, membership)
    await session.delete(membership)
    # Sessions parked in this organization fall back to the user's next membership.
    await session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.organization_id == org_id)
        .values(organization_id=None)
    )
    await session.flush()
