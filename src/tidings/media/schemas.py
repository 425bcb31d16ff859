"""Request and response bodies of the media library (app API and the Postiz-shaped answer)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tidings.media.models import Media
from tidings.media.sniff import MediaKind

MAX_NAME_LENGTH: Final = 255
# The most any supported platform accepts (Bluesky: 2000; X 1000, Mastodon 1500 are checked by
# their providers' rules).
MAX_ALT_LENGTH: Final = 2000
MAX_URL_LENGTH: Final = 4096
# About 24 days: more than any video we accept lasts.
MAX_THUMBNAIL_TIMESTAMP_MS: Final = 2**31 - 1


class MediaRead(BaseModel):
    """A media of the library, as the app shows it."""

    id: str
    name: str
    path: str = Field(description="Public URL platforms fetch the file from")
    type: MediaKind
    mime_type: str | None
    file_size: int = Field(description="Bytes")
    alt: str | None
    thumbnail: str | None = Field(description="Public URL of the thumbnail (images, videos)")
    thumbnail_timestamp: int | None = Field(
        description="Videos: time of the thumbnail frame, in milliseconds"
    )
    width: int | None = Field(description="Displayed width in pixels (images, videos)")
    height: int | None = Field(description="Displayed height in pixels (images, videos)")
    duration_ms: int | None = Field(description="Videos: duration in milliseconds")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, media: Media) -> MediaRead:
        return cls(
            id=media.id,
            name=media.name,
            path=media.path,
            type=MediaKind(media.type),
            mime_type=media.mime_type,
            file_size=media.file_size,
            alt=media.alt,
            thumbnail=media.thumbnail,
            thumbnail_timestamp=media.thumbnail_timestamp,
            width=media.width,
            height=media.height,
            duration_ms=media.duration_ms,
            created_at=media.created_at,
            updated_at=media.updated_at,
        )


class MediaPageRead(BaseModel):
    """One page of the library, newest first."""

    items: list[MediaRead]
    page: int = Field(description="1-based page number")
    per_page: int
    total: int = Field(description="Media matching the filter, on all pages")
    pages: int


class MediaUpdate(BaseModel):
    """Changes to a media; fields left out are unchanged (``alt: null`` clears the alt text)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LENGTH)
    alt: str | None = Field(default=None, max_length=MAX_ALT_LENGTH)
    thumbnail_timestamp: int | None = Field(
        default=None,
        ge=0,
        le=MAX_THUMBNAIL_TIMESTAMP_MS,
        description="Videos: take the thumbnail from the frame at this time (milliseconds)",
    )

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str | None) -> str | None:
        # Only called for a name that was sent: null cannot unname a media.
        if value is None:
            raise ValueError("the name cannot be null")
        if not value.strip():
            raise ValueError("the name cannot be blank")
        return value


class MediaFromUrl(BaseModel):
    """Upload from a URL."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1, max_length=MAX_URL_LENGTH, examples=["https://example.com/a.png"]
    )
    name: str | None = Field(default=None, max_length=MAX_NAME_LENGTH)
    alt: str | None = Field(default=None, max_length=MAX_ALT_LENGTH)


class MediaDeleted(BaseModel):
    """The answer to a delete."""

    id: str
    deleted: bool = True
    kept_for_posts: int = Field(
        description="Scheduled or draft posts still using the file: its bytes are kept (and "
        "served) until none does"
    )


class PublicMediaRead(BaseModel):
    """The media row as Postiz's Public API answers it (``POST /upload``), camelCase."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    name: str
    path: str
    organization_id: str = Field(alias="organizationId")
    thumbnail: str | None
    thumbnail_timestamp: int | None = Field(alias="thumbnailTimestamp")
    alt: str | None
    file_size: int = Field(alias="fileSize")
    type: str
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")
    deleted_at: datetime | None = Field(alias="deletedAt")

    @classmethod
    def of(cls, media: Media) -> PublicMediaRead:
        return cls(
            id=media.id,
            name=media.name,
            path=media.path,
            organization_id=media.organization_id,
            thumbnail=media.thumbnail,
            thumbnail_timestamp=media.thumbnail_timestamp,
            alt=media.alt,
            file_size=media.file_size,
            type=media.type,
            created_at=media.created_at,
            updated_at=media.updated_at,
            deleted_at=media.deleted_at,
        )

    def to_json(self) -> dict[str, object]:
        """The camelCase JSON body (what a route should answer)."""
        return self.model_dump(mode="json", by_alias=True)
