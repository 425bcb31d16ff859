"""Request and response bodies of the automation app API (webhooks, auto-posting, connectors)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

EventType = Literal[
    "post.published",
    "post.failed",
    "post.created",
    "post.updated",
    "post.deleted",
    "integration.connected",
    "integration.disconnected",
    "subscription.updated",
]

MAX_URL_LENGTH = 2048
MAX_NAME_LENGTH = 200
MAX_TEMPLATE_LENGTH = 10_000
MAX_CHANNELS = 50


def without_nul(value: Any) -> Any:
    """``value`` unless a string in it (a key or value, at any depth) holds a NUL character:
    PostgreSQL text and JSON cannot store one, so it is refused here, naming the field."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            without_nul(key)
            without_nul(item)
    elif isinstance(value, list):
        for item in value:
            without_nul(item)
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _no_nul = field_validator("*")(without_nul)


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


# ---- webhooks ----------------------------------------------------------------------------------


class WebhookCreate(Strict):
    """A new endpoint. Without ``secret`` one is generated (``whsec_...``)."""

    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    events: list[EventType] = Field(min_length=1)
    secret: str | None = Field(
        default=None,
        max_length=200,
        description="'whsec_' followed by base64 of 24 to 64 random bytes; generated if absent",
    )
    enabled: bool = True
    integrations: list[str] = Field(
        default_factory=list,
        max_length=MAX_CHANNELS,
        description="Channel ids; empty: events of every channel",
    )

    _dedupe = field_validator("events", "integrations")(_unique)


class WebhookUpdate(Strict):
    """Changes to an endpoint; absent fields stay. Enabling resets the failure count and
    sends the pending events at once."""

    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH)
    events: list[EventType] | None = Field(default=None, min_length=1)
    secret: str | None = Field(default=None, max_length=200)
    rotate_secret: bool = Field(default=False, description="Generate a new secret")
    enabled: bool | None = None
    integrations: list[str] | None = Field(default=None, max_length=MAX_CHANNELS)

    @field_validator("events", "integrations")
    @classmethod
    def _dedupe(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _unique(values)


class DeliveryRead(BaseModel):
    """One attempt to deliver an event."""

    id: str
    event_id: str
    event_type: str
    attempt: int
    succeeded: bool
    status_code: int | None
    response_excerpt: str | None
    error: str | None
    duration_ms: int
    created_at: datetime


class EventRead(BaseModel):
    """An event of one endpoint and where its delivery stands."""

    id: str
    type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    payload: dict[str, Any]


class WebhookRead(BaseModel):
    """An endpoint. ``secret`` is shown to admins only."""

    id: str
    name: str | None
    url: str
    events: list[str]
    enabled: bool
    integrations: list[str]
    consecutive_failures: int
    secret: str | None
    created_at: datetime
    updated_at: datetime


class WebhookDetail(WebhookRead):
    recent_deliveries: list[DeliveryRead]


class TestResult(BaseModel):
    """What the endpoint answered to the test event."""

    event_id: str
    delivery: DeliveryRead


# ---- auto-posting ------------------------------------------------------------------------------


class AutoPostCreate(Strict):
    """A feed to turn into posts."""

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH, description="RSS or Atom feed")
    integrations: list[str] = Field(min_length=1, max_length=MAX_CHANNELS)
    template: str = Field(
        default="{{title}} {{url}}",
        min_length=1,
        max_length=MAX_TEMPLATE_LENGTH,
        description="Placeholders: {{title}}, {{url}}, {{description}}, {{author}}",
    )
    enabled: bool = True
    on_slot: bool = Field(
        default=False,
        description="true: schedule into each channel's next free slot; false: create drafts",
    )
    post_existing: bool = Field(
        default=False,
        description=(
            "true: the items already in the feed become posts at the first poll; "
            "false (default): they are only remembered and later items are posted"
        ),
    )

    _dedupe = field_validator("integrations")(_unique)


class AutoPostUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH)
    integrations: list[str] | None = Field(default=None, min_length=1, max_length=MAX_CHANNELS)
    template: str | None = Field(default=None, min_length=1, max_length=MAX_TEMPLATE_LENGTH)
    enabled: bool | None = None
    on_slot: bool | None = None

    @field_validator("integrations")
    @classmethod
    def _dedupe(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _unique(values)


class AutoPostRead(BaseModel):
    id: str
    name: str
    url: str
    integrations: list[str]
    template: str
    enabled: bool
    on_slot: bool
    primed: bool = Field(
        description="false until the first read; that read only remembers the items already "
        "in the feed, unless the feed was created with post_existing"
    )
    last_run: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class PollResult(BaseModel):
    """What one poll of a feed did."""

    status: Literal["ok", "not_modified", "error", "skipped"]
    new_items: int
    posts_created: int
    error: str | None = None


# ---- third-party connectors --------------------------------------------------------------------

ThirdPartyProvider = Literal["n8n", "make", "zapier"]


class ThirdPartyCreate(Strict):
    """A connector. ``api_key`` is the connector's key (kept encrypted); ``webhook_url`` (if
    any) receives the organization's events like a webhook endpoint."""

    provider: ThirdPartyProvider
    api_key: str = Field(min_length=1, max_length=2000)
    webhook_url: str | None = Field(default=None, min_length=1, max_length=MAX_URL_LENGTH)
    events: list[EventType] | None = Field(
        default=None, min_length=1, description="Events sent to webhook_url; default: all"
    )
    config: dict[str, Any] | None = None
    enabled: bool = True

    @field_validator("events")
    @classmethod
    def _dedupe(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _unique(values)


class ThirdPartyUpdate(Strict):
    api_key: str | None = Field(default=None, min_length=1, max_length=2000)
    webhook_url: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    events: list[EventType] | None = Field(default=None, min_length=1)
    config: dict[str, Any] | None = None
    enabled: bool | None = None

    @field_validator("events")
    @classmethod
    def _dedupe(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _unique(values)


class ThirdPartyRead(BaseModel):
    """A connector; the API key is never shown again, only its last four characters."""

    id: str
    provider: str
    api_key_hint: str
    webhook_url: str | None
    events: list[str]
    signing_secret: str | None = Field(
        description="Secret of the Standard Webhooks signature of the events (admins only)"
    )
    config: dict[str, Any] | None
    enabled: bool
    receiving_events: bool = Field(
        description="false when there is no webhook URL, or deliveries were disabled after "
        "repeated failures (enable the connector again to resume)"
    )
    auth_header: str | None = Field(
        description="Header that carries the API key on every delivery, if any"
    )
    created_at: datetime
    updated_at: datetime
