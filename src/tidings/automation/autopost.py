"""Auto-posting from RSS/Atom feeds.

Each feed (``AutoPost``) is polled by its own job (``automation.poll_feed``), in its own
transaction, so a broken, slow or hostile feed only ever affects itself.

One poll:

1. Fetch the feed through the URL guard with a timeout and a size cap, as a conditional GET
   (``If-None-Match`` / ``If-Modified-Since`` from the ETag / Last-Modified stored on the row).
   304 means nothing to do.
2. Parse it with feedparser (RSS 0.9x/1.0/2.0, Atom). A document with no recognisable feed is an
   error.
3. In one transaction, with the feed's row locked: for every item (oldest first) insert its key
   (GUID, else link, else a hash of title and text) into ``auto_post_item`` with ON CONFLICT DO
   NOTHING *before* creating anything. Only an item whose key was really inserted creates posts,
   so an item is posted once even across restarts, overlapping polls or a crash mid-way (the
   remembered key and the posts commit or roll back together).
4. The first successful read of a feed only remembers the items already there: a user adding a
   feed expects the *next* articles to be posted, not fifty old ones at once. A feed created with
   ``post_existing`` starts primed, so its current items are posted too.

Errors (unreachable, timeout, HTTP error, not a feed) are kept in ``last_error`` and notified
once (when the feed goes from working to failing); ``last_run`` records every poll.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import feedparser
import httpx
import regex
from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from tidings import __version__
from tidings.automation import posting
from tidings.automation.models import AutoPost, AutoPostItem
from tidings.automation.schemas import AutoPostCreate, AutoPostRead, AutoPostUpdate, PollResult
from tidings.automation.service import check_channels, check_user_url
from tidings.channels.models import Integration
from tidings.channels.providers.base import PostPart
from tidings.channels.service import credentials_of, provider_for
from tidings.config import get_settings
from tidings.core.errors import BadRequest, Conflict, TidingsError
from tidings.core.jobs import defer_in_session
from tidings.core.tenancy import OrgId, get_owned, select_owned
from tidings.core.urlguard import UnsafeURLError, guarded_request
from tidings.db import Database
from tidings.notifications.service import notify
from tidings.posts.schemas import MAX_CONTENT

logger = logging.getLogger("tidings.automation.autopost")

POLL_TASK = "automation.poll_feed"
MAX_FEED_BYTES = 5 * 1024 * 1024
MAX_KEY_LENGTH = 500
ELLIPSIS = "…"
_PLACEHOLDER = re.compile(r"\{\{\s*(title|url|description|author)\s*\}\}")
_SPACES = re.compile(r"\s+")
_GRAPHEME = regex.compile(r"\X")


class FeedError(Exception):
    """The feed could not be read; the message is for the user."""


# ---- items and templates -----------------------------------------------------------------------


@dataclass(frozen=True)
class FeedItem:
    """One entry of a feed, reduced to what templates use."""

    key: str
    title: str
    url: str
    description: str
    author: str


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "li"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """Plain text of an HTML fragment, whitespace collapsed."""
    parser = _TextOnly()
    try:
        parser.feed(text)
        parser.close()
        plain = "".join(parser.parts)
    except Exception:  # HTMLParser is lenient; this is a last line of defence
        plain = re.sub(r"<[^>]*>", " ", html.unescape(text))
    return _SPACES.sub(" ", plain.replace("\x00", "")).strip()


def _item_key(entry: Any, title: str, description: str) -> str:
    key = str(entry.get("id") or entry.get("guid") or entry.get("link") or "")
    key = key.replace("\x00", "").strip()  # feedparser keeps NUL; PostgreSQL text cannot
    if not key:
        key = "sha256:" + hashlib.sha256(f"{title}\n{description}".encode()).hexdigest()
    if len(key) > MAX_KEY_LENGTH:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def _timestamp(entry: Any) -> float | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    return float(calendar.timegm(parsed)) if parsed else None


def parse_feed(content: bytes, *, url: str, content_type: str | None = None) -> list[FeedItem]:
    """The items of a feed document, oldest first; :class:`FeedError` if it is not a feed."""
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(content, response_headers=headers)
    if not parsed.get("version") and not parsed.entries:
        reason = parsed.get("bozo_exception")
        raise FeedError(f"not an RSS or Atom feed{f' ({reason})' if reason else ''}")
    items: list[FeedItem] = []
    stamps: list[float | None] = []
    for entry in parsed.entries:
        title = strip_html(str(entry.get("title") or ""))
        raw = entry.get("summary") or ""
        if not raw and entry.get("content"):
            raw = entry["content"][0].get("value") or ""
        description = strip_html(str(raw))
        author = strip_html(str(entry.get("author") or ""))
        link = str(entry.get("link") or "").replace("\x00", "").strip()
        if not (title or description or link):
            continue  # nothing to post (a broken or empty entry)
        items.append(
            FeedItem(_item_key(entry, title, description), title, link, description, author)
        )
        stamps.append(_timestamp(entry))
    if not items and parsed.get("bozo"):
        # A broken document that yielded nothing usable is an error, not an empty feed; a broken
        # one that still has items (unescaped '&' and the like are common) is read as it is.
        reason = parsed.get("bozo_exception")
        raise FeedError(f"not an RSS or Atom feed{f' ({reason})' if reason else ''}")
    # Feeds list newest first; dates decide when every item has one, else document order reversed.
    if items and all(s is not None for s in stamps):
        order = sorted(range(len(items)), key=lambda i: (stamps[i], -i))
        return [items[i] for i in order]
    return list(reversed(items))


def render(template: str, item: FeedItem) -> str:
    """The template with the item's values."""
    values = {
        "title": item.title,
        "url": item.url,
        "description": item.description,
        "author": item.author,
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template).strip()


def _longest_fitting(text: str, fits: Callable[[str], bool], *, at_word: bool = True) -> str | None:
    """The longest prefix of ``text`` (with an ellipsis) such that ``fits``; None if none.
    Cuts only between graphemes: never through an emoji sequence, a flag or an accent."""
    if fits(text):
        return text
    ends = [match.end() for match in _GRAPHEME.finditer(text)]
    low, high = 0, len(ends)  # search the largest number of graphemes that fits
    best: str | None = None
    while low <= high:
        mid = (low + high) // 2
        candidate = text[: ends[mid - 1]].rstrip() + ELLIPSIS if mid else ""
        if fits(candidate):
            best, low = candidate, mid + 1
        else:
            high = mid - 1
    if best and at_word and len(best) > 1:
        cut = best[:-1]
        space = cut.rfind(" ")
        if space >= len(cut) * 0.7:  # end at a word when that costs little
            best = cut[:space].rstrip() + ELLIPSIS
    return best


def render_for_channel(
    template: str,
    item: FeedItem,
    *,
    max_length: int,
    text_length: Callable[[str], int],
    accept: Callable[[str], bool] | None = None,
) -> str:
    """The template rendered to fit ``max_length`` (in the channel's own counting) and pass
    ``accept`` (the channel's other length rules): the URL is never cut; the description is
    shortened first, then the title, each with an ellipsis."""

    def fits(text: str) -> bool:
        # A post's own cap binds too: some channels (Slack) allow more than a post may hold.
        return (
            len(text) <= MAX_CONTENT
            and text_length(text) <= max_length
            and (accept is None or accept(text))
        )

    rendered = render(template, item)
    if fits(rendered):
        return rendered

    def fits_description(description: str) -> bool:
        candidate = FeedItem(item.key, item.title, item.url, description, item.author)
        return fits(render(template, candidate))

    description = _longest_fitting(item.description, fits_description)
    if description is not None:
        return render(template, FeedItem(item.key, item.title, item.url, description, item.author))

    def fits_title(title: str) -> bool:
        candidate = FeedItem(item.key, title, item.url, "", item.author)
        return fits(render(template, candidate))

    title = _longest_fitting(item.title, fits_title)
    if title is not None:
        return render(template, FeedItem(item.key, title, item.url, "", item.author))
    # Even the bare template with the URL is too long: keep what fits (the URL may suffer).
    bare = render(template, FeedItem(item.key, "", item.url, "", ""))
    cut = _longest_fitting(bare, fits, at_word=False)
    return cut or ""


# ---- fetching ----------------------------------------------------------------------------------


@dataclass
class Fetched:
    """A feed document (``content`` None: not modified since the last poll)."""

    content: bytes | None
    content_type: str | None
    etag: str | None
    last_modified: str | None


async def fetch_feed(url: str, *, etag: str | None, last_modified: str | None) -> Fetched:
    """Conditional GET of a feed through the URL guard, with a timeout and a size cap."""
    settings = get_settings()
    timeout = settings.autopost_timeout_seconds
    headers = {
        "user-agent": f"Tidings/{__version__} (feed reader)",
        "accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
    }
    if etag:
        headers["if-none-match"] = etag
    if last_modified:
        headers["if-modified-since"] = last_modified
    try:
        async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=timeout) as client:
            response = await guarded_request(
                client,
                "GET",
                url,
                allow_private=settings.allow_private_urls,
                stream=True,
                headers=headers,
            )
            try:
                if response.status_code == 304:
                    return Fetched(None, None, etag, last_modified)
                if response.status_code != 200:
                    raise FeedError(f"the feed answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_FEED_BYTES:
                        raise FeedError(f"the feed is larger than {MAX_FEED_BYTES} bytes")
                return Fetched(
                    bytes(body),
                    response.headers.get("content-type"),
                    response.headers.get("etag"),
                    response.headers.get("last-modified"),
                )
            finally:
                await response.aclose()
    except UnsafeURLError as exc:
        raise FeedError(f"the feed URL is not allowed: {exc}") from exc
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise FeedError(f"the feed did not answer within {timeout:g} seconds") from exc
    except httpx.HTTPError as exc:
        raise FeedError(
            f"the feed could not be fetched: {type(exc).__name__} {exc}".strip()
        ) from exc


# ---- posting -----------------------------------------------------------------------------------


async def usable_channels(session: AsyncSession, feed: AutoPost) -> list[Integration]:
    """The feed's channels that can take posts (live, not disabled), in the feed's order."""
    ids = [str(i) for i in feed.integrations]
    if not ids:
        return []
    rows = (
        await session.execute(
            select_owned(Integration, OrgId(feed.organization_id)).where(
                Integration.id.in_(ids), Integration.disabled.is_(False)
            )
        )
    ).scalars()
    by_id = {r.id: r for r in rows}
    return [by_id[i] for i in ids if i in by_id]


def content_for(channel: Integration, template: str, item: FeedItem) -> str:
    """The post text for one channel, fitted to its provider's length rule."""
    provider = provider_for(channel)
    credentials = credentials_of(channel)

    def within_rules(text: str) -> bool:
        # The provider's own length rules beyond its count (Bluesky also caps the bytes).
        violations = provider.validate([PostPart(content=text)], credentials=credentials)
        return not any(v.code == "too_long" for v in violations)

    return render_for_channel(
        template,
        item,
        max_length=provider.max_length(credentials),
        text_length=provider.text_length,
        accept=within_rules,
    )


async def create_item_posts(
    session: AsyncSession, feed: AutoPost, channels: list[Integration], item: FeedItem
) -> int:
    """Create the posts of one new item (one per channel); returns how many."""
    contents = {channel.id: content_for(channel, feed.template, item) for channel in channels}
    return await posting.create_posts(
        session,
        OrgId(feed.organization_id),
        channels=channels,
        contents=contents,
        on_slot=feed.on_slot,
    )


# ---- one poll ----------------------------------------------------------------------------------


async def _record_error(database: Database, autopost_id: str, message: str) -> None:
    async with database.session() as session:
        feed = (
            await session.execute(
                select(AutoPost).where(AutoPost.id == autopost_id).with_for_update()
            )
        ).scalar_one_or_none()
        if feed is None:
            return
        first_failure = feed.last_error is None
        feed.last_run = datetime.now(UTC)
        feed.last_error = message[:1000]
        if first_failure:
            await notify(
                session,
                feed.organization_id,
                f"The feed {feed.name!r} could not be read: {message}. Auto-posting from it "
                "resumes by itself once it works again.",
            )
        await session.flush()


async def poll(database: Database, autopost_id: str) -> PollResult:
    """Poll one feed and create the posts of its new items (see the module docstring)."""
    async with database.session() as session:
        feed = (
            await session.execute(select(AutoPost).where(AutoPost.id == autopost_id))
        ).scalar_one_or_none()
        if feed is None or not feed.enabled:
            return PollResult(status="skipped", new_items=0, posts_created=0)
        url, etag, last_modified = feed.url, feed.etag, feed.last_modified
    try:
        fetched = await fetch_feed(url, etag=etag, last_modified=last_modified)
        items: list[FeedItem] = []
        if fetched.content is not None:
            items = await asyncio.to_thread(
                parse_feed, fetched.content, url=url, content_type=fetched.content_type
            )
    except FeedError as exc:
        logger.info("feed %s: %s", autopost_id, exc)
        await _record_error(database, autopost_id, str(exc))
        return PollResult(status="error", new_items=0, posts_created=0, error=str(exc))

    async with database.session() as session:
        feed = (
            await session.execute(
                select(AutoPost).where(AutoPost.id == autopost_id).with_for_update()
            )
        ).scalar_one_or_none()
        if feed is None or not feed.enabled or feed.url != url:
            return PollResult(status="skipped", new_items=0, posts_created=0)
        now = datetime.now(UTC)
        feed.last_run = now
        if fetched.content is None:
            feed.last_error = None
            return PollResult(status="not_modified", new_items=0, posts_created=0)
        channels = await usable_channels(session, feed) if feed.primed else []
        if feed.primed and not channels:
            # Keep the items unconsumed: they are posted once a channel is usable again.
            message = "none of the feed's channels can take posts (deleted or disabled)"
            first_failure = feed.last_error is None
            feed.last_error = message
            if first_failure:
                await notify(session, feed.organization_id, f"The feed {feed.name!r}: {message}.")
            return PollResult(status="error", new_items=0, posts_created=0, error=message)
        new_items = posts_created = 0
        problems: list[str] = []
        for item in items:
            inserted = (
                await session.execute(
                    insert(AutoPostItem)
                    .values(auto_post_id=feed.id, key=item.key)
                    .on_conflict_do_nothing(index_elements=["auto_post_id", "key"])
                    .returning(AutoPostItem.id)
                )
            ).scalar_one_or_none()
            if inserted is None:
                continue
            new_items += 1
            if not feed.primed:
                continue
            try:
                async with session.begin_nested():
                    posts_created += await create_item_posts(session, feed, channels, item)
            except TidingsError as exc:
                # The item stays remembered: retrying a refused post every poll helps nobody.
                problems.append(f"{item.title or item.url}: {exc.message}")
        feed.primed = True
        feed.etag = fetched.etag
        feed.last_modified = fetched.last_modified
        feed.last_error = ("; ".join(problems))[:1000] if problems else None
        if problems:
            await notify(
                session,
                feed.organization_id,
                f"The feed {feed.name!r}: some items could not be posted: {problems[0]}",
            )
        await session.flush()
    return PollResult(status="ok", new_items=new_items, posts_created=posts_created)


# ---- scheduling --------------------------------------------------------------------------------


def poll_lock(autopost_id: str) -> str:
    """The lock and queueing lock of one feed's poll job (one poll of a feed at a time)."""
    return f"autopost:{autopost_id}"


async def defer_poll(session: AsyncSession, autopost_id: str) -> None:
    """Queue a poll of one feed (no-op when one is already waiting)."""
    await defer_in_session(
        session,
        POLL_TASK,
        lock=poll_lock(autopost_id),
        queueing_lock=poll_lock(autopost_id),
        autopost_id=autopost_id,
    )


async def defer_due_polls(database: Database) -> int:
    """Queue a poll for every enabled feed not polled within the interval; returns how many."""
    interval = timedelta(minutes=get_settings().autopost_interval_minutes)
    cutoff = datetime.now(UTC) - interval
    async with database.session() as session:
        ids = list(
            (
                await session.execute(
                    select(AutoPost.id).where(
                        AutoPost.enabled.is_(True),
                        or_(AutoPost.last_run.is_(None), AutoPost.last_run <= cutoff),
                    )
                )
            ).scalars()
        )
        for autopost_id in ids:
            await defer_poll(session, autopost_id)
    return len(ids)


# ---- CRUD --------------------------------------------------------------------------------------


def _read(feed: AutoPost) -> AutoPostRead:
    return AutoPostRead(
        id=feed.id,
        name=feed.name,
        url=feed.url,
        integrations=[str(i) for i in feed.integrations],
        template=feed.template,
        enabled=feed.enabled,
        on_slot=feed.on_slot,
        primed=feed.primed,
        last_run=feed.last_run,
        last_error=feed.last_error,
        created_at=feed.created_at,
        updated_at=feed.updated_at,
    )


async def list_autoposts(session: AsyncSession, org_id: OrgId) -> list[AutoPostRead]:
    """The organization's feeds, oldest first."""
    rows = await session.execute(
        select_owned(AutoPost, org_id).order_by(AutoPost.created_at, AutoPost.id)
    )
    return [_read(r) for r in rows.scalars()]


async def create_autopost(
    session: AsyncSession, org_id: OrgId, data: AutoPostCreate
) -> AutoPostRead:
    """Add a feed and queue its first poll."""
    url = await check_user_url(data.url)
    channels = await check_channels(session, org_id, data.integrations)
    feed = AutoPost(
        organization_id=org_id,
        name=data.name.strip(),
        url=url,
        integrations=channels,
        template=data.template,
        enabled=data.enabled,
        on_slot=data.on_slot,
        primed=data.post_existing,
    )
    session.add(feed)
    await session.flush()
    if feed.enabled:
        await defer_poll(session, feed.id)
    await session.refresh(feed)
    return _read(feed)


async def get_autopost(session: AsyncSession, org_id: OrgId, autopost_id: str) -> AutoPostRead:
    """One feed."""
    return _read(await get_owned(session, AutoPost, autopost_id, org_id, what="feed"))


async def update_autopost(
    session: AsyncSession, org_id: OrgId, autopost_id: str, data: AutoPostUpdate
) -> AutoPostRead:
    """Change a feed. A new URL is a new feed: its current items are only remembered."""
    feed = await get_owned(session, AutoPost, autopost_id, org_id, what="feed", for_update=True)
    fields = data.model_fields_set
    for name in ("name", "template", "enabled", "on_slot"):
        value = getattr(data, name)
        if name in fields:
            if value is None:
                raise BadRequest(f"{name} cannot be null", field=name)
            setattr(feed, name, value.strip() if name == "name" else value)
    if "integrations" in fields:
        if not data.integrations:
            raise BadRequest("choose at least one channel", field="integrations")
        feed.integrations = await check_channels(session, org_id, data.integrations)
    if "url" in fields:
        if not data.url:
            raise BadRequest("url cannot be null", field="url")
        url = await check_user_url(data.url)
        if url != feed.url:
            feed.url = url
            feed.etag = feed.last_modified = None
            feed.primed = False
            feed.last_error = None
    await session.flush()
    if feed.enabled and ("url" in fields or "enabled" in fields):
        await defer_poll(session, feed.id)
    await session.refresh(feed)
    return _read(feed)


async def delete_autopost(session: AsyncSession, org_id: OrgId, autopost_id: str) -> None:
    """Soft-delete a feed (its posts stay)."""
    feed = await get_owned(session, AutoPost, autopost_id, org_id, what="feed")
    feed.deleted_at = datetime.now(UTC)
    feed.enabled = False
    await session.flush()


async def request_poll(session: AsyncSession, org_id: OrgId, autopost_id: str) -> None:
    """Queue a poll of one feed now."""
    feed = await get_owned(session, AutoPost, autopost_id, org_id, what="feed")
    if not feed.enabled:
        raise Conflict("the feed is disabled: enable it first", field="enabled")
    await defer_poll(session, feed.id)
