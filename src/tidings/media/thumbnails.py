"""Thumbnails and the dimensions the providers' rules need.

Images: the first frame, turned upright by its EXIF orientation, scaled to fit a square box
(never enlarged), transparency kept (WebP) or flattened on white (JPEG). Videos: the frame at the
requested time (milliseconds; clamped to the last frame), turned by the container's display
rotation, scaled the same way.

Recorded dimensions are the *displayed* ones (after EXIF orientation / display rotation), which
is what aspect-ratio rules of the platforms are about.

Decoding is CPU work: the public functions run it in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal

import av
import av.container
import av.video.stream
from PIL import ExifTags, Image, ImageOps

from tidings.media.errors import MediaError, UnsupportedMediaError
from tidings.media.sniff import (
    DEFAULT_MAX_IMAGE_PIXELS,
    JPEG,
    MediaKind,
    MediaType,
    limit_video_frames,
    main_video_stream,
    open_image,
)

ThumbnailFormat = Literal["webp", "jpeg"]

DEFAULT_THUMBNAIL_BOX: Final = 512
DEFAULT_THUMBNAIL_FORMAT: Final[ThumbnailFormat] = "webp"
_TRANSPOSED_ORIENTATIONS: Final = frozenset({5, 6, 7, 8})  # EXIF values that swap width/height


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """An encoded thumbnail, ready to store."""

    data: bytes
    mime: str
    extension: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class MediaDetails:
    """What was learnt while making the thumbnail (all None for a PDF: no renderer)."""

    width: int | None = None
    height: int | None = None
    # Videos only: duration and the time of the frame actually used for the thumbnail.
    duration_ms: int | None = None
    thumbnail_timestamp_ms: int | None = None
    # Images only: number of frames (animated GIF/WebP/AVIF > 1).
    frames: int | None = None
    thumbnail: Thumbnail | None = None


async def describe_media(
    path: Path,
    media_type: MediaType,
    *,
    timestamp_ms: int | None = None,
    box: int = DEFAULT_THUMBNAIL_BOX,
    format: ThumbnailFormat = DEFAULT_THUMBNAIL_FORMAT,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> MediaDetails:
    """Dimensions and thumbnail of a verified file of ``media_type`` (``timestamp_ms``: videos)."""
    if media_type.kind is MediaKind.IMAGE:
        return await describe_image(
            path, media_type, box=box, format=format, max_pixels=max_image_pixels
        )
    if media_type.kind is MediaKind.VIDEO:
        return await describe_video(
            path,
            media_type,
            timestamp_ms=timestamp_ms,
            box=box,
            format=format,
            max_pixels=max_image_pixels,
        )
    return MediaDetails()


async def describe_image(
    path: Path,
    media_type: MediaType,
    *,
    box: int = DEFAULT_THUMBNAIL_BOX,
    format: ThumbnailFormat = DEFAULT_THUMBNAIL_FORMAT,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> MediaDetails:
    """Displayed size, frame count and thumbnail of an image (in a thread)."""
    _check_box(box)
    return await asyncio.to_thread(_describe_image, path, media_type, box, format, max_pixels)


async def describe_video(
    path: Path,
    media_type: MediaType,
    *,
    timestamp_ms: int | None = None,
    box: int = DEFAULT_THUMBNAIL_BOX,
    format: ThumbnailFormat = DEFAULT_THUMBNAIL_FORMAT,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> MediaDetails:
    """Displayed size, duration and the thumbnail of the frame at ``timestamp_ms`` (None or
    <= 0: the first frame; past the end: the last frame), in a thread. Frames over
    ``max_pixels`` are refused."""
    _check_box(box)
    return await asyncio.to_thread(
        _describe_video, path, media_type, timestamp_ms, box, format, max_pixels
    )


def _check_box(box: int) -> None:
    if not 16 <= box <= 4096:
        raise ValueError("thumbnail box must be between 16 and 4096 pixels")


def _encode(image: Image.Image, box: int, format: ThumbnailFormat, icc: bytes | None) -> Thumbnail:
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale: scale to 8 bits instead of letting conversion clip to white.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    elif has_alpha:
        image = image.convert("RGBA")
    elif image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    image.thumbnail((box, box), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if format == "jpeg" and image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        image = background
    buffer = io.BytesIO()
    extra: dict[str, bytes] = {"icc_profile": icc} if icc else {}
    if format == "webp":
        image.save(buffer, "WEBP", quality=80, method=4, **extra)
        mime, extension = "image/webp", "webp"
    else:
        image.save(buffer, "JPEG", quality=85, optimize=True, progressive=True, **extra)
        mime, extension = "image/jpeg", "jpg"
    return Thumbnail(buffer.getvalue(), mime, extension, image.width, image.height)


def _describe_image(
    path: Path, media_type: MediaType, box: int, format: ThumbnailFormat, max_pixels: int
) -> MediaDetails:
    with open_image(path, media_type, max_pixels) as image:
        try:
            frames = int(getattr(image, "n_frames", 1))
            image.seek(0)
            width, height = image.size
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
            if orientation in _TRANSPOSED_ORIENTATIONS:
                width, height = height, width
            if media_type is JPEG:
                # Let libjpeg decode at 1/2..1/8 scale; draft keeps both sides >= the box.
                image.draft(None, (box, box))
            icc = image.info.get("icc_profile")
            upright = ImageOps.exif_transpose(image)
            thumbnail = _encode(upright, box, format, icc if isinstance(icc, bytes) else None)
        except MediaError:
            raise
        except Exception as exc:  # decoder failures on damaged files
            raise UnsupportedMediaError(
                f"the {media_type.label} is damaged and cannot be decoded"
            ) from exc
    return MediaDetails(width=width, height=height, frames=frames, thumbnail=thumbnail)


def _duration_seconds(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _frame_at(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    target: float,
) -> av.VideoFrame | None:
    """The first frame at or after ``target`` seconds, else the last frame of the stream."""
    if target > 0 and stream.time_base:
        start = stream.start_time or 0
        # Seek to the keyframe before the target, then decode forward to it.
        container.seek(
            start + int(Fraction(target).limit_denominator(1_000_000) / stream.time_base),
            stream=stream,
            backward=True,
            any_frame=False,
        )
    last: av.VideoFrame | None = None
    for frame in container.decode(stream):
        last = frame
        if target <= 0 or frame.time is None or frame.time >= target - 0.0005:
            return frame
    return last


def _rotate(image: Image.Image, degrees: int) -> Image.Image:
    # ``degrees`` is counter-clockwise, as is Pillow's ROTATE_*.
    turns = round(degrees / 90) % 4
    if turns == 1:
        return image.transpose(Image.Transpose.ROTATE_90)
    if turns == 2:
        return image.transpose(Image.Transpose.ROTATE_180)
    if turns == 3:
        return image.transpose(Image.Transpose.ROTATE_270)
    return image


def _describe_video(
    path: Path,
    media_type: MediaType,
    timestamp_ms: int | None,
    box: int,
    format: ThumbnailFormat,
    max_pixels: int,
) -> MediaDetails:
    try:
        with av.open(str(path), format=media_type.decoder, metadata_errors="ignore") as container:
            stream = main_video_stream(container, media_type)
            limit_video_frames(stream, media_type, max_pixels)
            duration = _duration_seconds(container, stream)
            target = max(0, timestamp_ms or 0) / 1000
            if duration is not None:
                target = min(target, duration)
            frame = _frame_at(container, stream, target)
            if frame is None and target > 0:
                container.seek(0)  # seeking failed to land anywhere: fall back to the start
                frame = _frame_at(container, stream, 0)
            if frame is None:
                raise UnsupportedMediaError(f"the {media_type.label} has no decodable video frame")
            image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
            aspect = stream.codec_context.sample_aspect_ratio
            if aspect and aspect != 1:  # anamorphic pixels: show them at display proportions
                image = image.resize((max(1, round(image.width * aspect)), image.height))
            image = _rotate(image, frame.rotation)
            frame_ms = round(frame.time * 1000) if frame.time is not None else 0
    except MediaError:
        raise
    except Exception as exc:
        raise UnsupportedMediaError(
            f"the {media_type.label} is damaged or uses an unreadable codec ({exc})"
        ) from exc
    return MediaDetails(
        width=image.width,
        height=image.height,
        duration_ms=round(duration * 1000) if duration is not None else None,
        thumbnail_timestamp_ms=frame_ms,
        thumbnail=_encode(image, box, format, None),
    )
