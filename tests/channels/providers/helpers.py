"""Small builders shared by the provider tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from tidings.channels.providers import MediaItem

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 64
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x02" * 256


def reader(data: bytes) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return data

    return read


def image(
    data: bytes = PNG, mime: str = "image/png", alt: str | None = None, name: str = "a.png"
) -> MediaItem:
    return MediaItem(
        url=f"https://media.example/{name}",
        type="image",
        mime_type=mime,
        alt=alt,
        width=800,
        height=600,
        size=len(data),
        read=reader(data),
    )


def video(data: bytes = MP4, mime: str = "video/mp4", name: str = "v.mp4") -> MediaItem:
    return MediaItem(
        url=f"https://media.example/{name}",
        type="video",
        mime_type=mime,
        width=1280,
        height=720,
        size=len(data),
        read=reader(data),
        thumbnail_url="https://media.example/thumb.jpg",
        read_thumbnail=reader(JPEG),
    )


class StreamedFile:
    """A file that can only be streamed: ``read`` fails, ``stream`` yields ``piece``-byte
    chunks. ``opens`` counts the streams opened."""

    def __init__(self, data: bytes, piece: int = 37) -> None:
        self.data = data
        self.piece = piece
        self.opens = 0

    async def read(self) -> bytes:
        raise AssertionError("the whole file was read instead of streamed")

    async def stream(self) -> AsyncIterator[bytes]:
        self.opens += 1
        for start in range(0, len(self.data), self.piece):
            yield self.data[start : start + self.piece]

    def item(
        self, *, size: int | None = -1, mime: str = "video/mp4", name: str = "v.mp4"
    ) -> MediaItem:
        """A video item of this file (``size`` -1: the true size; None: unknown)."""
        return MediaItem(
            url=f"https://media.example/{name}",
            type="video",
            mime_type=mime,
            width=1280,
            height=720,
            size=len(self.data) if size == -1 else size,
            read=self.read,
            stream=self.stream,
            thumbnail_url="https://media.example/thumb.jpg",
            read_thumbnail=reader(JPEG),
        )
