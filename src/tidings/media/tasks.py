"""Background jobs of the media library: removing the bytes of deleted media, and cleanup.

- ``media.purge_deleted`` (deferred by a delete): the objects of one deleted media.
- ``media.delete_unused_objects`` (deferred by a thumbnail change): superseded thumbnails.
- ``media.housekeeping`` (hourly): the objects of every deleted media that no live QUEUE/DRAFT
  post refers to any more (kept until then so scheduled posts can still publish), plus spool
  files and partial writes left behind by a crashed process.

A purged media keeps its (soft-deleted) row with ``storage_key``/``thumbnail_key`` cleared, so
each purge is done once and can safely be retried: deleting a missing object is not an error.
"""

from __future__ import annotations

import logging
from typing import Final

from sqlalchemy import exists, or_, select

from tidings.core.jobs import job_app
from tidings.db import get_database
from tidings.media.deps import MediaEnv, media_env
from tidings.media.ingest import purge_stale_spool
from tidings.media.models import Media
from tidings.media.service import TASK_DELETE_UNUSED, TASK_PURGE, referencing_posts_condition
from tidings.media.storage import InvalidKeyError, LocalStorage
from tidings.posts.models import Post

logger = logging.getLogger("tidings.media.tasks")

PURGE_BATCH: Final = 500


async def purge_deleted_media(
    *, media_ids: list[str] | None = None, env: MediaEnv | None = None, batch: int = PURGE_BATCH
) -> int:
    """Delete the stored objects of soft-deleted media no live QUEUE/DRAFT post refers to.

    ``media_ids`` limits the sweep to those media (a just-deleted one); otherwise up to
    ``batch`` media are handled per call. Each media is purged in its own transaction, with its
    row locked and the references checked again, so a post saved meanwhile keeps its file.
    Returns how many media had their objects deleted.
    """
    env = env or media_env()
    database = get_database()
    unused = ~exists(
        select(Post.id).where(
            referencing_posts_condition(Media.organization_id, Media.id, Media.path)
        )
    )
    stmt = (
        select(Media.id)
        .where(
            Media.deleted_at.is_not(None),
            or_(Media.storage_key.is_not(None), Media.thumbnail_key.is_not(None)),
            unused,
        )
        .order_by(Media.deleted_at)
        .limit(batch)
        .execution_options(include_deleted=True)
    )
    if media_ids is not None:
        stmt = stmt.where(Media.id.in_(media_ids))
    async with database.session() as session:
        candidates = list((await session.execute(stmt)).scalars())
    purged = 0
    for media_id in candidates:
        async with database.session() as session:
            locked = (
                select(Media)
                .where(Media.id == media_id, Media.deleted_at.is_not(None), unused)
                .with_for_update(skip_locked=True, of=Media)
                .execution_options(include_deleted=True)
            )
            media = (await session.execute(locked)).scalar_one_or_none()
            if media is None:
                continue  # restored, referenced again, or another worker has it
            for key in (media.storage_key, media.thumbnail_key):
                if key is not None:
                    try:
                        await env.storage.delete(key)
                    except InvalidKeyError:
                        logger.warning("media %s has an invalid storage key %r", media.id, key)
            media.storage_key = None
            media.thumbnail_key = None
            purged += 1
    if purged:
        logger.info("purged the files of %d deleted media", purged)
    return purged


async def delete_unused_objects(keys: list[str], *, env: MediaEnv | None = None) -> int:
    """Delete the objects ``keys`` that no media row (live or deleted) points at any more.

    Used for superseded thumbnails: the job is deferred in the transaction that replaced the
    key, so by the time it runs the row points at the new object. Returns how many it deleted.
    """
    env = env or media_env()
    if not keys:
        return 0
    async with get_database().session() as session:
        used = set(
            (
                await session.execute(
                    select(Media.storage_key)
                    .where(Media.storage_key.in_(keys))
                    .union(select(Media.thumbnail_key).where(Media.thumbnail_key.in_(keys)))
                    .execution_options(include_deleted=True)
                )
            ).scalars()
        )
    deleted = 0
    for key in keys:
        if key in used:
            continue
        try:
            await env.storage.delete(key)
        except InvalidKeyError:
            logger.warning("not deleting invalid storage key %r", key)
            continue
        deleted += 1
    return deleted


async def media_housekeeping(*, env: MediaEnv | None = None) -> dict[str, int]:
    """The periodic cleanup: purge deleted media's objects, stale spool files, partial writes."""
    env = env or media_env()
    counts = {"purged_media": 0, "spool_files": 0, "partial_writes": 0}
    while True:
        purged = await purge_deleted_media(env=env)
        counts["purged_media"] += purged
        if purged < PURGE_BATCH:
            break
    counts["spool_files"] = await purge_stale_spool(env.ingest.spool_dir)
    if isinstance(env.storage, LocalStorage):
        counts["partial_writes"] = await env.storage.purge_partial_writes()
    if any(counts.values()):
        logger.info("media housekeeping: %s", counts)
    return counts


@job_app.task(name=TASK_PURGE, retry=3)
async def purge_deleted_task(media_id: str) -> None:
    """Delete the objects of one just-deleted media (unless a scheduled post uses it)."""
    await purge_deleted_media(media_ids=[media_id])


@job_app.task(name=TASK_DELETE_UNUSED, retry=3)
async def delete_unused_objects_task(keys: list[str]) -> None:
    """Delete superseded objects (old thumbnails) once nothing points at them."""
    await delete_unused_objects(keys)


@job_app.periodic(cron="41 * * * *")
@job_app.task(name="media.housekeeping", queueing_lock="media.housekeeping")
async def housekeeping_task(timestamp: int) -> None:
    """Hourly media cleanup (see :func:`media_housekeeping`)."""
    await media_housekeeping()
