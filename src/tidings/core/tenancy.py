"""Tenant scoping: the one helper every service uses to reach an organization's rows.

:data:`OrgId` is produced only by the authentication dependencies (``tidings.accounts.auth``), so a
service that takes an ``OrgId`` cannot be handed an organization the caller does not belong to
without mypy noticing. A row of another organization is answered 404, exactly like a row that does
not exist, so ids of other tenants cannot even be probed.
"""

from __future__ import annotations

from typing import Any, NewType, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.errors import NotFound

OrgId = NewType("OrgId", str)

T = TypeVar("T")


def org_column(model: type[Any]) -> Any:
    """The column holding a model's organization (``organization_id`` or the spec's ``org_id``)."""
    column = getattr(model, "organization_id", None)
    if column is None:
        column = getattr(model, "org_id", None)
    if column is None:
        raise TypeError(f"{model.__name__} is not a tenant model")
    return column


def owned_by(model: type[Any], org_id: OrgId) -> ColumnElement[bool]:
    """``WHERE <model's organization> = org_id``."""
    condition: ColumnElement[bool] = org_column(model) == org_id
    return condition


def select_owned(model: type[T], org_id: OrgId) -> Select[T]:
    """``SELECT model WHERE model belongs to org_id`` (soft-deleted rows hidden by default)."""
    return select(model).where(owned_by(model, org_id))


async def get_owned(
    session: AsyncSession,
    model: type[T],
    row_id: str,
    org_id: OrgId,
    *,
    what: str | None = None,
    include_deleted: bool = False,
    for_update: bool = False,
) -> T:
    """The row ``row_id`` of ``model`` if it belongs to ``org_id``; else :class:`NotFound`."""
    stmt = select_owned(model, org_id).where(model.id == row_id)  # type: ignore[attr-defined]
    if include_deleted:
        stmt = stmt.execution_options(include_deleted=True)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        name = what or model.__name__.lower()
        raise NotFound(f"{name} not found", field="id")
    return row
