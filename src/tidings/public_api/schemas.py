"""JSON shapes of the Public API v1, as Postiz clients send and read them (camelCase).

Where the posts, channels and media domains already define a shape (a post in lists, the media
row, the status/settings/release-id bodies), the Public API answers with theirs; this module
holds only what the Public API adds: the ``POST /posts`` body as Postiz clients send it, the
channel list, settings and tool answers, analytics, notifications and the error body.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from tidings.posts.schemas import ChannelPostsIn, PostOut, PostType, TagIn

#: Identifiers in paths and queries: what Tidings and Postiz generate (uuid, cuid, short ids),
#: never control characters or slashes.
ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,200}$"
#: Earliest and latest dates the API accepts (a post's replies are planned after its date, and
#: dates far outside this are always mistakes).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class PublicModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown input fields are ignored (Postiz
    clients send a few Tidings has no use for)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def check_date(value: datetime | None, field: str = "date") -> datetime | None:
    """``value`` as aware UTC, refused (ValueError) outside 1970..9000; naive means UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"{field} is out of range") from exc
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"{field} must be between 1970 and 9000")
    return value


# ---- errors --------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error answer: a machine code, a message naming the problem and, where one input is
    at fault, the field (dotted path, e.g. ``posts.0.value.1.content``). Post validation errors
    add ``channel``, ``rule`` and ``violations``; validation errors add ``details``."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(examples=["not_found"])
    message: str = Field(examples=["post not found"])
    field: str | None = Field(default=None, examples=["id"])
    details: list[ErrorDetail] | None = None


# ---- channels ------------------------------------------------------------------------------


class CustomerRef(PublicModel):
    id: str
    name: str


class IntegrationOut(PublicModel):
    """A channel of the organization."""

    id: str
    name: str
    identifier: str = Field(description="The provider identifier, e.g. 'bluesky', 'x'")
    picture: str | None = None
    disabled: bool
    profile: str | None = Field(default=None, description="Handle / username on the platform")
    customer: CustomerRef | None = None


class IntegrationSettings(PublicModel):
    rules: str = Field(description="The channel's posting rules in words")
    max_length: int = Field(description="Most characters one post (or reply) may have")
    settings: dict[str, Any] = Field(description="JSON schema of the channel's post settings")
    tools: list[str] = Field(description="Method names accepted by /integration-trigger/{id}")


class IntegrationSettingsOut(PublicModel):
    output: IntegrationSettings


class TriggerIn(PublicModel):
    """Run a provider tool of a channel."""

    method_name: str = Field(min_length=1, max_length=200, examples=["list_flairs"])
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class TriggerOut(PublicModel):
    output: Any = Field(description="The tool's JSON result")


class ConnectedOut(PublicModel):
    connected: bool


class SlotOut(PublicModel):
    date: datetime


class ChannelDeletedOut(PublicModel):
    id: str
    deleted: bool = True


class SocialUrlOut(PublicModel):
    url: str = Field(description="Send the user's browser here to authorize the channel")


# ---- media ---------------------------------------------------------------------------------


class UploadFromUrlIn(PublicModel):
    url: str = Field(min_length=1, max_length=4096, examples=["https://example.com/photo.png"])


# ---- posts ---------------------------------------------------------------------------------


class CreatePostsIn(PublicModel):
    """The body of ``POST /posts``: one entry of ``posts`` per channel, each a thread."""

    type: PostType = Field(
        default="schedule",
        description="draft: stored as a draft; schedule: published at `date`; now: at once; "
        "update: edit the existing group named by posts[].group",
    )
    date: datetime | None = Field(
        default=None, description="ISO 8601 publish date (ignored for type 'now')"
    )
    short_link: bool = Field(default=False, description="Accepted for compatibility; unused")
    tags: list[TagIn] = Field(
        default_factory=list,
        max_length=50,
        description="Matched to the organization's tags by label; created when new",
    )
    inter: int | None = Field(default=None, ge=1, le=3650, description="Repeat every N days")
    republish: bool = Field(
        default=False, description="Needed to schedule again a group that was published"
    )
    creation_method: Literal["API", "CLI"] | None = Field(
        default=None, description="Recorded on the posts (default API)"
    )
    posts: list[ChannelPostsIn] = Field(min_length=1, max_length=100)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "schedule",
                    "date": "2030-12-31T12:00:00Z",
                    "shortLink": False,
                    "tags": [{"value": "launch", "label": "Launch"}],
                    "posts": [
                        {
                            "integration": {"id": "<channel id>"},
                            "settings": {"__type": "bluesky"},
                            "value": [
                                {"content": "First post of the thread", "image": []},
                                {"content": "A reply 5 minutes later", "delay": 5},
                            ],
                        }
                    ],
                }
            ]
        }
    )

    @field_validator("date")
    @classmethod
    def _date(cls, value: datetime | None) -> datetime | None:
        return check_date(value)

    @field_validator("tags", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class PostsListOut(PublicModel):
    posts: list[PostOut]


class MissingItem(PublicModel):
    id: str = Field(description="The platform's id of the content")
    url: str


# ---- analytics -----------------------------------------------------------------------------


class AnalyticsPoint(PublicModel):
    total: float
    date: str


class AnalyticsOut(PublicModel):
    label: str
    data: list[AnalyticsPoint]
    percentage_change: float


class MissingOut(PublicModel):
    missing: Literal[True] = True


# ---- notifications -------------------------------------------------------------------------


class NotificationItem(PublicModel):
    id: str
    content: str
    link: str | None = None
    created_at: datetime


class NotificationsPage(PublicModel):
    """One page of the organization's notifications, newest first (``page`` starts at 0)."""

    notifications: list[NotificationItem]
    total: int
    page: int
    limit: int
    has_more: bool


# ---- input hygiene -------------------------------------------------------------------------


def bad_json_value(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first value PostgreSQL could not store, as ``(dotted path, reason)``: text with NUL
    or unpaired surrogates, or a non-finite number (JSON has none; Python's parser accepts
    them). None when everything is storable."""
    if isinstance(value, str):
        if "\x00" in value:
            return path, "must not contain NUL characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "is not valid Unicode text"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return path, "must be a finite number"
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            problem = bad_json_value(key, where) if isinstance(key, str) else None
            problem = problem or bad_json_value(item, where)
            if problem:
                return problem
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = bad_json_value(item, f"{path}.{index}" if path else str(index))
            if problem:
                return problem
    return None
