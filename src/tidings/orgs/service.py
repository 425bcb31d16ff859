"""Organizations: creation, lookup, membership and the Public API key."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core import crypto
from tidings.core.enums import Role
from tidings.core.errors import BadRequest, NotFound
from tidings.core.ids import new_token
from tidings.core.tenancy import OrgId
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
