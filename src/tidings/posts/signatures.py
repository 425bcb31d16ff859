"""Signatures: text appended to posts; at most one per organization is added automatically."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.tenancy import OrgId, get_owned, owned_by, select_owned
from tidings.posts.models import Signatures
from tidings.posts.schemas import SignatureIn, SignatureUpdate


async def list_signatures(session: AsyncSession, org_id: OrgId) -> list[Signatures]:
    """The organization's signatures, the auto-add one first."""
    rows = await session.execute(
        select_owned(Signatures, org_id).order_by(
            Signatures.auto_add.desc(), Signatures.created_at, Signatures.id
        )
    )
    return list(rows.scalars())


async def _clear_auto_add(session: AsyncSession, org_id: OrgId, keep: str | None = None) -> None:
    stmt = update(Signatures).where(
        owned_by(Signatures, org_id), Signatures.auto_add.is_(True), Signatures.deleted_at.is_(None)
    )
    if keep is not None:
        stmt = stmt.where(Signatures.id != keep)
    await session.execute(stmt.values(auto_add=False))


async def create_signature(session: AsyncSession, org_id: OrgId, data: SignatureIn) -> Signatures:
    """A new signature; made the auto-add one when asked (the previous one stops being it)."""
    if data.auto_add:
        await _clear_auto_add(session, org_id)
    row = Signatures(organization_id=org_id, content=data.content, auto_add=data.auto_add)
    session.add(row)
    await session.flush()
    return row


async def update_signature(
    session: AsyncSession, org_id: OrgId, signature_id: str, data: SignatureUpdate
) -> Signatures:
    """Change a signature's text or whether it is added automatically."""
    row = await get_owned(session, Signatures, signature_id, org_id, what="signature")
    if data.auto_add:
        await _clear_auto_add(session, org_id, keep=row.id)
    if data.auto_add is not None:
        row.auto_add = data.auto_add
    if data.content is not None:
        row.content = data.content
    await session.flush()
    return row


async def delete_signature(session: AsyncSession, org_id: OrgId, signature_id: str) -> None:
    """Soft-delete a signature."""
    row = await get_owned(session, Signatures, signature_id, org_id, what="signature")
    row.deleted_at = datetime.now(UTC)
    row.auto_add = False
    await session.flush()


async def auto_add_signature(session: AsyncSession, org_id: OrgId) -> Signatures | None:
    """The organization's auto-add signature, if it has one."""
    stmt = select_owned(Signatures, org_id).where(Signatures.auto_add.is_(True)).limit(1)
    return (await session.execute(stmt)).scalars().first()


def append_signature(content: str, signature: str) -> str:
    """``content`` with ``signature`` appended on a paragraph of its own (once)."""
    signature = signature.strip()
    if not signature or content.rstrip().endswith(signature):
        return content
    if not content.strip():
        return signature
    return content.rstrip() + "\n\n" + signature
