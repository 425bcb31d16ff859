"""Customers: the clients of an agency, used to group channels."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.errors import BadRequest
from tidings.core.ids import new_uuid
from tidings.core.tenancy import OrgId, get_owned, owned_by, select_owned
from tidings.orgs.models import Customer

MAX_NAME_LENGTH = 200


def clean_customer_name(name: str, *, field: str = "name") -> str:
    """A trimmed customer name, or :class:`BadRequest` naming ``field``."""
    cleaned = " ".join(name.split())
    if "\x00" in cleaned:
        raise BadRequest("customer name must not contain NUL characters", field=field)
    if not cleaned:
        raise BadRequest("customer name must not be empty", field=field)
    if len(cleaned) > MAX_NAME_LENGTH:
        raise BadRequest(f"customer name must be at most {MAX_NAME_LENGTH} characters", field=field)
    return cleaned


async def list_customers(session: AsyncSession, org_id: OrgId) -> list[Customer]:
    """The organization's customers, by name."""
    rows = await session.execute(select_owned(Customer, org_id).order_by(Customer.name))
    return list(rows.scalars())


async def get_customer(session: AsyncSession, org_id: OrgId, customer_id: str) -> Customer:
    """One customer of the organization (404 otherwise)."""
    return await get_owned(session, Customer, customer_id, org_id, what="customer")


async def get_or_create_customer(
    session: AsyncSession, org_id: OrgId, name: str, *, field: str = "name"
) -> Customer:
    """The organization's live customer called ``name``, created if there is none.

    Concurrent creations of one name end with one row (the unique constraint settles it).
    """
    cleaned = clean_customer_name(name, field=field)
    await session.execute(
        insert(Customer).values(id=new_uuid(), name=cleaned, org_id=org_id).on_conflict_do_nothing()
    )
    customer = (
        await session.execute(
            select(Customer).where(owned_by(Customer, org_id), Customer.name == cleaned)
        )
    ).scalar_one()
    return customer
