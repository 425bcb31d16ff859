"""RSS 2.0 and Atom documents for the auto-posting tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

BASE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@dataclass
class Entry:
    n: int
    title: str | None = None
    description: str | None = None
    author: str | None = None
    guid: bool = True  # RSS: give a <guid>; Atom always has an <id>
    link: bool = True

    @property
    def when(self) -> datetime:
        return BASE + timedelta(hours=self.n)

    @property
    def the_title(self) -> str:
        return self.title if self.title is not None else f"Article {self.n}"

    @property
    def url(self) -> str:
        return f"https://blog.example.com/articles/{self.n}"


def rss(entries: list[Entry], *, title: str = "Example blog") -> bytes:
    """An RSS 2.0 feed, newest item first (as blogs publish them)."""
    items = []
    for e in sorted(entries, key=lambda e: e.n, reverse=True):
        parts = [f"<title>{escape(e.the_title)}</title>"]
        if e.link:
            parts.append(f"<link>{e.url}</link>")
        if e.guid:
            parts.append(f'<guid isPermaLink="false">urn:example:{e.n}</guid>')
        if e.description is not None:
            parts.append(f"<description>{escape(e.description)}</description>")
        if e.author is not None:
            parts.append(f"<author>{escape(e.author)}</author>")
        parts.append(f"<pubDate>{format_datetime(e.when)}</pubDate>")
        items.append("<item>" + "".join(parts) + "</item>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://blog.example.com/</link>"
        "<description>Posts</description>" + "".join(items) + "</channel></rss>"
    ).encode()


def atom(entries: list[Entry], *, title: str = "Example Atom") -> bytes:
    """An Atom 1.0 feed, newest entry first."""
    items = []
    for e in sorted(entries, key=lambda e: e.n, reverse=True):
        parts = [
            f"<title>{escape(e.the_title)}</title>",
            f"<id>tag:example.com,2026:{e.n}</id>",
            f"<updated>{e.when.isoformat()}</updated>",
        ]
        if e.link:
            parts.append(f'<link rel="alternate" href="{e.url}"/>')
        if e.description is not None:
            parts.append(f'<summary type="html">{escape(e.description)}</summary>')
        if e.author is not None:
            parts.append(f"<author><name>{escape(e.author)}</name></author>")
        items.append("<entry>" + "".join(parts) + "</entry>")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{escape(title)}</title><id>tag:example.com,2026:feed</id>"
        f"<updated>{BASE.isoformat()}</updated>" + "".join(items) + "</feed>"
    ).encode()
