"""Small builders shared by the provider tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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
