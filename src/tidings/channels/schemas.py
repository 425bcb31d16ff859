"""Request and response bodies of the channels app API."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from tidings.accounts.schemas import RowId, no_nul
from tidings.channels.models import Integration
from tidings.channels.service import channel_problem, has_control, settings_dict
from tidings.orgs.models import Customer

MAX_POSTING_TIMES = 48
MAX_PICTURE_LENGTH = 2000
MAX_FIELD_LENGTH = 4000

#: Text PostgreSQL can store (no NUL character).
Text = Annotated[str, AfterValidator(no_nul)]
#: An OAuth state as Tidings issues them.
State = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")]


def no_control(value: str) -> str:
    """Refuse control characters (NUL, tab, newline, ...) where a single token is expected."""
    if has_control(value):
        raise ValueError("must not contain control characters")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- reads -------------------------------------------------------------------------------------


class CustomerRead(BaseModel):
    id: str
    name: str

    @classmethod
    def of(cls, customer: Customer) -> CustomerRead:
        return cls(id=customer.id, name=customer.name)


class PostingTime(Strict):
    """A posting slot: minutes after 00:00 UTC."""

    time: int = Field(ge=0, le=1439)


class ChannelRead(BaseModel):
    """A channel as the app shows it (never any token)."""

    id: str
    name: str
    identifier: str = Field(description="The provider identifier, e.g. 'bluesky'")
    picture: str | None
    disabled: bool
    profile: str | None = Field(description="Username / handle on the platform")
    internal_id: str
    customer: CustomerRead | None
    posting_times: list[PostingTime]
    preferences: dict[str, Any] = Field(description="Additional settings as {key: value}")
    additional_settings: list[Any] = Field(description="Additional settings as stored")
    in_between_steps: bool
    refresh_needed: bool
    token_expiration: datetime | None
    problem: str | None = Field(description="Why the channel cannot publish, if it cannot")
    created_at: datetime

    @classmethod
    def of(cls, channel: Integration, customer: Customer | None = None) -> ChannelRead:
        """``customer`` is the channel's customer (loaded by the caller), if it has one."""
        times = [
            PostingTime(time=t["time"])
            for t in channel.posting_times or []
            if isinstance(t, dict) and isinstance(t.get("time"), int) and 0 <= t["time"] <= 1439
        ]
        return cls(
            id=channel.id,
            name=channel.name,
            identifier=channel.provider_identifier,
            picture=channel.picture,
            disabled=channel.disabled,
            profile=channel.profile,
            internal_id=channel.internal_id,
            customer=CustomerRead.of(customer) if customer is not None else None,
            posting_times=times,
            preferences=settings_dict(channel.additional_settings),
            additional_settings=list(channel.additional_settings or []),
            in_between_steps=channel.in_between_steps,
            refresh_needed=channel.refresh_needed,
            token_expiration=channel.token_expiration,
            problem=channel_problem(channel),
            created_at=channel.created_at,
        )


class ChoiceRead(BaseModel):
    """A page / channel / account the user may pick while a channel is in between steps."""

    id: str
    name: str
    picture: str | None = None
    username: str | None = None


class ConnectedRead(BaseModel):
    """The result of a connection: the channel, and the choices when it needs a pick."""

    channel: ChannelRead
    created: bool = Field(description="False when an existing channel was reconnected")
    choices: list[ChoiceRead] | None = None


class AuthorizationRead(BaseModel):
    url: str = Field(description="Send the user's browser here to authorize")
    state: str
    expires_at: datetime


class FieldRead(BaseModel):
    name: str
    label: str
    secret: bool
    required: bool
    default: str | None
    help: str | None


class MediaRulesRead(BaseModel):
    max_images: int
    max_videos: int
    allow_mixed: bool
    min_media: int
    replies_allow_media: bool
    image_mime_types: list[str]
    video_mime_types: list[str]


class ProviderRead(BaseModel):
    identifier: str
    display_name: str
    connect_kind: Literal["oauth", "fields"]
    configured: bool = Field(
        description="False when the server lacks a setting the provider needs to connect and "
        "publish (see missing_config)"
    )
    missing_config: list[str] = Field(
        description="Environment variables still to set, e.g. TIDINGS_DISCORD_BOT_TOKEN"
    )
    fields: list[FieldRead] = Field(
        description="Credential fields ('fields' providers) or instance inputs (OAuth)"
    )
    max_length: int
    text_counting: str = Field(
        description="How the length is counted: code_points, graphemes, utf16, x_weighted "
        "(twitter-text: CJK weighs 2, URLs 23) or mastodon (graphemes, URLs 23)"
    )
    supports_replies: bool
    media_rules: MediaRulesRead
    settings_schema: dict[str, Any]
    tools: list[str]


class ChannelRulesRead(BaseModel):
    """What a post must respect on one channel."""

    identifier: str
    max_length: int
    text_counting: str = Field(
        description="How the length is counted: code_points, graphemes, utf16, x_weighted "
        "(twitter-text: CJK weighs 2, URLs 23) or mastodon (graphemes, URLs 23)"
    )
    supports_replies: bool
    media_rules: MediaRulesRead
    settings_schema: dict[str, Any]
    tools: list[str]


# ---- writes ------------------------------------------------------------------------------------


class FieldsConnect(Strict):
    """Credential fields of a 'fields' provider, e.g. Bluesky's service, identifier, password."""

    fields: dict[str, str] = Field(default_factory=dict)
    customer: Text | None = Field(
        default=None, description="Assign to this customer (created by name if new)"
    )

    @field_validator("fields")
    @classmethod
    def _short(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if len(item) > MAX_FIELD_LENGTH:
                raise ValueError(f"{key} is longer than {MAX_FIELD_LENGTH} characters")
        return value


class CallbackBody(Strict):
    code: Annotated[str, Field(min_length=1, max_length=4000), AfterValidator(no_control)]
    state: State


class ChooseBody(Strict):
    choice_id: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(no_control)]


class ChannelUpdate(Strict):
    """Fields to change; omitted fields are kept. ``customer`` null unassigns."""

    name: Text | None = Field(default=None, max_length=200)
    picture: str | None = Field(default=None, max_length=MAX_PICTURE_LENGTH)
    disabled: bool | None = None
    posting_times: list[PostingTime] | None = Field(default=None, max_length=MAX_POSTING_TIMES)
    customer: Text | None = Field(
        default=None, description="Customer name (created if new); null unassigns"
    )
    customer_id: RowId | None = Field(default=None, description="An existing customer's id")
    preferences: dict[str, str | int | float | bool | None] | None = Field(
        default=None, description="Additional settings to set, as {key: value}"
    )

    @field_validator("preferences")
    @classmethod
    def _storable(
        cls, value: dict[str, str | int | float | bool | None] | None
    ) -> dict[str, str | int | float | bool | None] | None:
        for key, item in (value or {}).items():
            no_nul(key)
            if isinstance(item, str):
                no_nul(item)
            if isinstance(item, float) and not math.isfinite(item):
                # JSON bodies may say NaN or 1e400; JSONB cannot hold them.
                raise ValueError(f"{key} must be a finite number")
        return value

    @field_validator("picture")
    @classmethod
    def _picture_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        no_control(value)
        is_path = value.startswith("/") and not value.startswith("//")
        if not (is_path or value.startswith(("https://", "http://"))):
            raise ValueError("must be an http(s) URL or a path on this server")
        return value


class CustomerCreate(Strict):
    name: Text = Field(min_length=1, max_length=200)


class ToolResult(BaseModel):
    result: Any
