"""Request and response bodies of posts, in the Postiz wire shape (camelCase).

The app API and the Public API share :class:`CreatePostsRequest`: it is the Public API's
``POST /posts`` body, plus a few Tidings extras (``republish``, ``timezone``, signatures).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

PostType = Literal["draft", "schedule", "now", "update"]
#: Longest delay of a reply after the previous part, in minutes (30 days).
MAX_DELAY_MINUTES = 60 * 24 * 30
MAX_CONTENT = 100_000


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; both accepted on input."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def check_timezone(value: str | None) -> str | None:
    """``value`` if it is a known IANA zone name (None passes)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
        ) from exc
    return value


# ---- posts in -------------------------------------------------------------------------------


class MediaRef(ApiModel):
    """One media file of a part: ``path`` is a public URL; ``id`` the media row when known."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    id: str | None = Field(default=None, max_length=200)
    path: str = Field(min_length=1, max_length=4096)
    alt: str | None = Field(default=None, max_length=5000)
    thumbnail: str | None = Field(default=None, max_length=4096)


class PartIn(ApiModel):
    """One part of a thread: the first is the post, the next ones are replies under it."""

    id: str | None = Field(default=None, max_length=200)
    content: str = Field(default="", max_length=MAX_CONTENT)
    image: list[MediaRef] = Field(default_factory=list, max_length=20)
    delay: int = Field(default=0, ge=0, le=MAX_DELAY_MINUTES, description="minutes")

    @field_validator("image", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class ChannelRef(ApiModel):
    id: str = Field(min_length=1, max_length=200)


class ChannelPostsIn(ApiModel):
    """The thread for one channel, with that channel's provider settings."""

    integration: ChannelRef
    group: str | None = Field(default=None, max_length=200)
    settings: dict[str, Any] = Field(default_factory=dict)
    value: list[PartIn] = Field(min_length=1, max_length=100)

    @field_validator("settings", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class TagIn(ApiModel):
    """A tag by name (``label``; Postiz sends ``{value, label}``); a plain string works too."""

    value: str | None = Field(default=None, max_length=100)
    label: str = Field(min_length=1, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"label": data, "value": data}
        if isinstance(data, dict) and not data.get("label") and data.get("value"):
            return {**data, "label": data["value"]}
        return data


class CreatePostsRequest(ApiModel):
    """Create (or, with the group of existing posts, replace) a group of posts."""

    type: PostType = "schedule"
    date: datetime | None = None
    short_link: bool = False
    tags: list[TagIn] = Field(default_factory=list, max_length=50)
    inter: int | None = Field(default=None, ge=1, le=3650, description="repeat every N days")
    posts: list[ChannelPostsIn] = Field(min_length=1, max_length=100)
    # Tidings extras.
    group: str | None = Field(default=None, max_length=200)
    republish: bool = False
    timezone: str | None = Field(default=None, description="IANA zone of the wall-clock time")
    add_signature: bool = Field(default=False, description="append the auto-add signature")
    signature_id: str | None = Field(default=None, description="append this signature")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return check_timezone(value)

    @field_validator("tags", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class EditGroupRequest(CreatePostsRequest):
    """Replace the content, date and channels of an existing group."""

    type: PostType = "update"


class RescheduleRequest(ApiModel):
    date: datetime
    republish: bool = False


class StatusRequest(ApiModel):
    status: Literal["draft", "schedule"]


class SettingsRequest(ApiModel):
    settings: dict[str, Any]


class ReleaseIdRequest(ApiModel):
    release_id: str = Field(min_length=1, max_length=500)


class DuplicateRequest(ApiModel):
    date: datetime | None = None
    type: Literal["draft", "schedule"] = "draft"


# ---- posts out ------------------------------------------------------------------------------


class CustomerOut(ApiModel):
    id: str
    name: str


class ChannelOut(ApiModel):
    id: str
    name: str
    provider_identifier: str
    picture: str | None = None
    customer: CustomerOut | None = None


class TagOut(ApiModel):
    id: str
    name: str
    color: str


class PostOut(ApiModel):
    """A post in lists and the calendar (the head of a thread on one channel)."""

    id: str
    group: str
    content: str
    publish_date: datetime
    state: str
    release_url: str | None = Field(default=None, serialization_alias="releaseURL")
    release_id: str | None = None
    error: str | None = None
    integration: ChannelOut
    image: list[dict[str, Any]] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    tags: list[TagOut] = Field(default_factory=list)
    interval_in_days: int | None = None
    # True for a future repetition of a recurring post (same id as the post it repeats).
    occurrence: bool = False
    parent_post_id: str | None = None
    creation_method: str | None = None


class PostList(ApiModel):
    posts: list[PostOut]
    next_cursor: str | None = None


class PartOut(ApiModel):
    id: str
    content: str
    image: list[dict[str, Any]] = Field(default_factory=list)
    delay: int = 0
    state: str
    publish_date: datetime
    release_url: str | None = Field(default=None, serialization_alias="releaseURL")
    release_id: str | None = None
    error: str | None = None


class ChannelThreadOut(ApiModel):
    integration: ChannelOut
    settings: dict[str, Any] = Field(default_factory=dict)
    value: list[PartOut]


class GroupOut(ApiModel):
    group: str
    publish_date: datetime
    state: str
    interval_in_days: int | None = None
    timezone: str | None = None
    tags: list[TagOut] = Field(default_factory=list)
    posts: list[ChannelThreadOut]


class CreatedPost(ApiModel):
    post_id: str
    integration: str


class CreatePostsResult(ApiModel):
    group: str
    posts: list[CreatedPost]


class DeletedOut(ApiModel):
    id: str | None = None
    group: str
    deleted: int


# ---- tags, comments, signatures, sets, slots ------------------------------------------------

HEX_COLOR = r"^#[0-9a-fA-F]{6}$"


class TagCreate(ApiModel):
    name: str = Field(min_length=1, max_length=100)
    color: str | None = Field(default=None, pattern=HEX_COLOR)


class TagUpdate(ApiModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    color: str | None = Field(default=None, pattern=HEX_COLOR)


class CommentIn(ApiModel):
    content: str = Field(min_length=1, max_length=10_000)


class CommentOut(ApiModel):
    id: str
    post_id: str
    user_id: str
    content: str
    created_at: datetime
    updated_at: datetime


class SignatureIn(ApiModel):
    content: str = Field(min_length=1, max_length=10_000)
    auto_add: bool = False


class SignatureUpdate(ApiModel):
    content: str | None = Field(default=None, min_length=1, max_length=10_000)
    auto_add: bool | None = None


class SignatureOut(ApiModel):
    id: str
    content: str
    auto_add: bool
    created_at: datetime


class SetTime(ApiModel):
    """A posting time of a set: weekday (0 = Sunday ... 6 = Saturday) and ``HH:MM``."""

    day: int = Field(ge=0, le=6)
    time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class SetIn(ApiModel):
    name: str = Field(min_length=1, max_length=200)
    times: list[SetTime] = Field(min_length=1, max_length=500)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        checked = check_timezone(value)
        if checked is None:
            raise ValueError("a time zone is required")
        return checked


class SetUpdate(ApiModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    times: list[SetTime] | None = Field(default=None, min_length=1, max_length=500)
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return check_timezone(value)


class SetOut(ApiModel):
    id: str
    name: str
    times: list[SetTime]
    timezone: str


class SlotOut(ApiModel):
    date: datetime
