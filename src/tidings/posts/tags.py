"""Tags: labels with a color, one live tag per name in an organization."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.errors import Conflict
from tidings.core.tenancy import OrgId, get_owned, select_owned
from tidings.posts.models import Tags, TagsPosts
from tidings.posts.schemas import TagCreate, TagIn, TagUpdate

# Colors given to tags created without one (picked by name, so a name keeps its color).
PALETTE = (
    "#2563EB",
    "#16A34A",
    "#DC2626",
    "#9333EA",
    "#EA580C",
    "#0891B2",
    "#CA8A04",
    "#DB2777",
    "#4F46E5",
    "#65A30D",
)


def default_color(name: str) -> str:
    """A stable palette color for a tag name."""
    digest = hashlib.sha256(name.casefold().encode()).digest()
    return PALETTE[digest[0] % len(PALETTE)]


async def list_tags(session: AsyncSession, org_id: OrgId) -> list[Tags]:
    """The organization's tags by name."""
    rows = await session.execute(select_owned(Tags, org_id).order_by(Tags.name, Tags.id))
    return list(rows.scalars())


async def _by_name(session: AsyncSession, org_id: OrgId, name: str) -> Tags | None:
    stmt = select_owned(Tags, org_id).where(func.lower(Tags.name) == name.casefold())
    return (await session.execute(stmt.limit(1))).scalars().first()


async def create_tag(session: AsyncSession, org_id: OrgId, data: TagCreate) -> Tags:
    """A new tag; 409 when a live tag has that name already."""
    name = data.name.strip()
    if not name:
        raise Conflict("a tag needs a name", field="name")
    if await _by_name(session, org_id, name) is not None:
        raise Conflict(f"a tag named {name!r} exists already", field="name")
    tag = Tags(org_id=org_id, name=name, color=data.color or default_color(name))
    session.add(tag)
    await session.flush()
    return tag


async def update_tag(session: AsyncSession, org_id: OrgId, tag_id: str, data: TagUpdate) -> Tags:
    """Rename or recolor a tag."""
    tag = await get_owned(session, Tags, tag_id, org_id, what="tag")
    if data.name is not None and data.name.strip() != tag.name:
        name = data.name.strip()
        other = await _by_name(session, org_id, name)
        if other is not None and other.id != tag.id:
            raise Conflict(f"a tag named {name!r} exists already", field="name")
        tag.name = name
    if data.color is not None:
        tag.color = data.color
    await session.flush()
    return tag


async def delete_tag(session: AsyncSession, org_id: OrgId, tag_id: str) -> None:
    """Soft-delete a tag and take it off its posts."""
    tag = await get_owned(session, Tags, tag_id, org_id, what="tag")
    tag.deleted_at = datetime.now(UTC)
    await session.execute(delete(TagsPosts).where(TagsPosts.tag_id == tag.id))
    await session.flush()


async def resolve_tags(session: AsyncSession, org_id: OrgId, tags: Sequence[TagIn]) -> list[Tags]:
    """The organization's tags named by ``tags`` (matched by label, case-insensitively),
    created with a palette color when new. One statement finds them all."""
    names: dict[str, str] = {}
    for item in tags:
        name = item.label.strip()
        if name:
            names.setdefault(name.casefold(), name)
    if not names:
        return []
    stmt = select_owned(Tags, org_id).where(func.lower(Tags.name).in_(list(names)))
    existing: dict[str, Tags] = {}
    for tag in (await session.execute(stmt.order_by(Tags.created_at, Tags.id))).scalars():
        existing.setdefault(tag.name.casefold(), tag)
    out: list[Tags] = []
    for key, name in names.items():
        found = existing.get(key)
        if found is None:
            found = Tags(org_id=org_id, name=name, color=default_color(name))
            session.add(found)
        out.append(found)
    await session.flush()
    return out


async def set_post_tags(
    session: AsyncSession, post_ids: Sequence[str], tags: Sequence[Tags]
) -> None:
    """Make ``tags`` the tags of each of ``post_ids`` (replacing what they had)."""
    if not post_ids:
        return
    await session.execute(delete(TagsPosts).where(TagsPosts.post_id.in_(list(post_ids))))
    session.add_all(TagsPosts(post_id=pid, tag_id=tag.id) for pid in post_ids for tag in tags)
    await session.flush()


async def tags_of(session: AsyncSession, post_ids: Sequence[str]) -> dict[str, list[Tags]]:
    """Live tags of each post."""
    if not post_ids:
        return {}
    rows = await session.execute(
        select(TagsPosts.post_id, Tags)
        .join(Tags, Tags.id == TagsPosts.tag_id)
        .where(TagsPosts.post_id.in_(list(post_ids)))
        .order_by(Tags.name)
    )
    out: dict[str, list[Tags]] = {}
    for post_id, tag in rows:
        out.setdefault(post_id, []).append(tag)
    return out
