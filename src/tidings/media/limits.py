"""Size limits per media kind, enforced while the bytes stream in.

A limit is checked *before* a chunk is passed on, so an oversize upload is refused the moment it
crosses the limit: nothing past the limit is ever written, and nothing is held in memory but the
current chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Final

from tidings.media.errors import MediaTooLargeError
from tidings.media.sniff import MediaKind

MB: Final = 1024 * 1024


def human_size(size: int) -> str:
    """``10 MB``, ``1 GB``, ``512 KB``, ``12 bytes``: binary units, as limits are configured."""
    for unit, factor in (("GB", 1024 * MB), ("MB", MB), ("KB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


@dataclass(frozen=True, slots=True)
class MediaLimits:
    """Largest accepted file per kind, in bytes (``TIDINGS_MAX_{IMAGE,VIDEO,PDF}_BYTES``)."""

    image_bytes: int = 10 * MB
    video_bytes: int = 1024 * MB
    pdf_bytes: int = 20 * MB

    def __post_init__(self) -> None:
        for name in ("image_bytes", "video_bytes", "pdf_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    def for_kind(self, kind: MediaKind) -> int:
        """The limit of ``kind``."""
        return {
            MediaKind.IMAGE: self.image_bytes,
            MediaKind.VIDEO: self.video_bytes,
            MediaKind.PDF: self.pdf_bytes,
        }[kind]

    @property
    def largest(self) -> int:
        """The largest limit: what applies while the kind is not known yet."""
        return max(self.image_bytes, self.video_bytes, self.pdf_bytes)


class SizeBudget:
    """Counts bytes against a limit; :meth:`take` refuses the chunk that would cross it."""

    def __init__(self, limit: int, *, kind: MediaKind | None = None, field: str = "file") -> None:
        self.limit = limit
        self.kind = kind
        self.field = field
        self.used = 0

    def take(self, size: int) -> None:
        """Count ``size`` more bytes, or raise :class:`MediaTooLargeError` (counting nothing)."""
        if self.used + size > self.limit:
            raise too_large(self.limit, self.kind, field=self.field)
        self.used += size

    def narrow(self, limit: int, kind: MediaKind) -> None:
        """Apply a kind's (smaller or equal) limit once the content is known."""
        self.limit = limit
        self.kind = kind
        if self.used > limit:
            raise too_large(limit, kind, field=self.field)


def too_large(limit: int, kind: MediaKind | None, *, field: str = "file") -> MediaTooLargeError:
    """The 413 error for ``limit`` (message names the kind when known)."""
    what = f"{kind.value} files" if kind is not None else "files"
    return MediaTooLargeError(
        f"the file is too large: {what} may be at most {human_size(limit)}",
        limit=limit,
        kind=kind.value if kind is not None else None,
        field=field,
    )


async def limit_stream(
    chunks: AsyncIterable[bytes], limit: int, *, kind: MediaKind | None = None
) -> AsyncIterator[bytes]:
    """Yield ``chunks`` unchanged, raising :class:`MediaTooLargeError` before the first chunk that
    would take the total past ``limit`` (that chunk is never yielded)."""
    budget = SizeBudget(limit, kind=kind)
    async for chunk in chunks:
        budget.take(len(chunk))
        yield chunk
