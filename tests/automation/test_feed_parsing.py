"""Feed parsing, item keys, templates and per-channel truncation (no database)."""

from __future__ import annotations

import pytest
import regex

from tests.automation.feeds import Entry, atom, rss
from tidings.automation.autopost import (
    FeedError,
    FeedItem,
    content_for,
    parse_feed,
    render,
    render_for_channel,
    strip_html,
)
from tidings.channels.models import Integration
from tidings.channels.providers.base import PostPart
from tidings.channels.providers.bluesky import grapheme_count
from tidings.channels.providers.x import weighted_length
from tidings.channels.service import provider_for

URL = "https://blog.example.com/feed"


def test_rss_items_oldest_first_with_guid_keys() -> None:
    doc = rss(
        [
            Entry(1, description="<p>First <b>bold</b> &amp; <a href='x'>linked</a></p>"),
            Entry(2, author="ann@example.com (Ann)"),
            Entry(3, guid=False),
        ]
    )
    items = parse_feed(doc, url=URL, content_type="application/rss+xml")
    assert [i.title for i in items] == ["Article 1", "Article 2", "Article 3"]
    assert items[0].key == "urn:example:1"
    assert items[2].key == "https://blog.example.com/articles/3"  # no GUID: the link
    assert items[0].description == "First bold & linked"
    assert items[0].url == "https://blog.example.com/articles/1"
    assert "Ann" in items[1].author


def test_atom_items() -> None:
    items = parse_feed(atom([Entry(5, description="Hello <i>world</i>", author="Bo")]), url=URL)
    [item] = items
    assert item.key == "tag:example.com,2026:5"
    assert item.title == "Article 5"
    assert item.description == "Hello world"
    assert item.author == "Bo"
    assert item.url == "https://blog.example.com/articles/5"


def test_an_item_without_guid_or_link_gets_a_content_hash() -> None:
    items = parse_feed(rss([Entry(1, guid=False, link=False, description="d")]), url=URL)
    assert items[0].key.startswith("sha256:")
    again = parse_feed(rss([Entry(1, guid=False, link=False, description="d")]), url=URL)
    assert again[0].key == items[0].key


@pytest.mark.parametrize(
    "content",
    [b"<html><body>Not a feed</body></html>", b"\x00\x01 garbage", b"", b"<rss><channel><item>"],
)
def test_documents_that_are_not_feeds_are_refused(content: bytes) -> None:
    with pytest.raises(FeedError, match="not an RSS or Atom feed"):
        parse_feed(content, url=URL)


def test_strip_html() -> None:
    assert strip_html("<script>alert(1)</script><p>a</p><p>b&nbsp;c</p>") == "a b c"
    assert strip_html("plain") == "plain"


ITEM = FeedItem(
    key="k",
    title="A rather long title about the things that happened this week",
    url="https://blog.example.com/articles/2026/11/a-rather-long-slug-for-the-article",
    description="word " * 200,
    author="Ann",
)


def test_render_placeholders() -> None:
    assert render("{{title}} by {{ author }}: {{url}}", ITEM) == (
        f"{ITEM.title} by Ann: {ITEM.url}"
    )
    assert render("{{unknown}} stays", ITEM) == "{{unknown}} stays"


def test_truncation_keeps_the_url_and_cuts_the_description_first() -> None:
    text = render_for_channel(
        "{{title}}\n\n{{description}}\n\n{{url}}", ITEM, max_length=300, text_length=len
    )
    assert len(text) <= 300
    assert text.endswith(ITEM.url)
    assert text.startswith(ITEM.title)
    assert "…" in text


def test_truncation_cuts_the_title_when_the_description_is_not_enough() -> None:
    text = render_for_channel("{{title}} {{url}}", ITEM, max_length=100, text_length=len)
    assert len(text) <= 100
    assert text.endswith(ITEM.url)
    assert text.startswith("A rather")
    assert "… " in text


def test_short_text_is_untouched() -> None:
    text = render_for_channel("{{title}}", ITEM, max_length=500, text_length=len)
    assert text == ITEM.title


def _channel(identifier: str) -> Integration:
    return Integration(
        organization_id="o",
        internal_id="i",
        name="n",
        provider_identifier=identifier,
        type="social",
        token="t",
        additional_settings=[],
    )


async def test_each_channel_gets_its_own_limit() -> None:
    template = "{{title}}\n{{description}}\n{{url}}"
    for identifier, limit in (("bluesky", 300), ("mastodon", 500), ("linkedin", 3000)):
        channel = _channel(identifier)
        text = content_for(channel, template, ITEM)
        # Each platform's own counting (Mastodon counts a URL as 23 characters).
        assert provider_for(channel).text_length(text) <= limit, identifier
        assert text.endswith(ITEM.url), identifier
        if identifier == "linkedin":
            assert "…" not in text  # everything fits


FAMILY = "👨\u200d👩\u200d👧\u200d👦"  # one grapheme, seven code points


@pytest.mark.parametrize("offset", range(8))
def test_truncation_never_splits_a_grapheme(offset: int) -> None:
    """Counting code points (Mastodon, LinkedIn...) must not cut an emoji or an accented
    letter in half (a dangling joiner or half a flag shows as garbage)."""
    description = "x" * offset + (FAMILY + "e\u0301🇫🇷") * 200
    item = FeedItem(key="k", title="T", url="https://e.com/a", description=description, author="")
    text = render_for_channel(
        "{{title}} {{description}} {{url}}", item, max_length=300, text_length=len
    )
    assert len(text) <= 300 and text.endswith("… https://e.com/a")
    kept = text.removeprefix("T ").removesuffix("… https://e.com/a")
    clusters = regex.findall(r"\X", description)
    assert kept == "".join(clusters[: len(regex.findall(r"\X", kept))]), repr(kept[-10:])


async def test_x_counts_weighted_characters() -> None:
    """X counts CJK characters and emoji as two and any link as 23."""
    item = FeedItem(
        key="k", title="新しい記事", url=ITEM.url, description="漢字のテキスト" * 100, author=""
    )
    channel = _channel("x")
    text = content_for(channel, "{{title}} {{description}} {{url}}", item)
    assert 270 < weighted_length(text) <= 280
    kept = text.split(" ", 1)[1].split("…")[0]
    assert 120 < len(kept) < 135  # about (280 - 23 - 12) / 2; code points would keep ~190
    assert text.endswith(ITEM.url)


async def test_bluesky_counts_graphemes_within_its_byte_cap() -> None:
    """Bluesky counts graphemes (300) and also caps the text at 3000 bytes: text made of long
    emoji sequences must respect both, or the post is refused."""
    item = FeedItem(key="k", title="Family", url=ITEM.url, description=FAMILY * 400, author="")
    channel = _channel("bluesky")
    text = content_for(channel, "{{title}} {{description}} {{url}}", item)
    provider = provider_for(channel)
    assert provider.validate([PostPart(content=text)]) == []
    assert len(text.encode()) <= 3000 and grapheme_count(text) <= 300
    assert text.startswith("Family " + FAMILY) and text.endswith("… " + ITEM.url)
    # Plain text is cut at 300 graphemes, not at 300 code points.
    accents = FeedItem(key="k", title="T", url=ITEM.url, description="e\u0301" * 400, author="")
    cut = content_for(channel, "{{title}} {{description}} {{url}}", accents)
    assert grapheme_count(cut) == 300 and len(cut) > 300
