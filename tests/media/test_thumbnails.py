"""Thumbnails: size, orientation, transparency, first frame, video frame at a time."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageStat, features

from tidings.media import sniff
from tidings.media.errors import UnsupportedMediaError
from tidings.media.thumbnails import describe_image, describe_media, describe_video

from .factories import (
    BLUE,
    GREEN,
    RED,
    animated_gif,
    color_for_frame,
    half_transparent_png,
    halves_jpeg,
    image_bytes,
    video_file,
)


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 30) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


def _mean(image: Image.Image) -> tuple[int, ...]:
    return tuple(round(v) for v in ImageStat.Stat(image.convert("RGB")).mean)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("format", "media_type"),
    [("PNG", sniff.PNG), ("JPEG", sniff.JPEG), ("GIF", sniff.GIF), ("WEBP", sniff.WEBP)]
    + ([("AVIF", sniff.AVIF)] if features.check("avif") else []),
)
@pytest.mark.parametrize("thumb_format", ["webp", "jpeg"])
async def test_image_thumbnail_fits_the_box_and_keeps_the_aspect(
    tmp_path: Path, format: str, media_type: sniff.MediaType, thumb_format: str
) -> None:
    path = _write(tmp_path, f"img.{media_type.extension}", image_bytes(format, size=(1600, 900)))
    details = await describe_image(path, media_type, box=512, format=thumb_format)  # type: ignore[arg-type]
    assert (details.width, details.height) == (1600, 900)
    thumb = details.thumbnail
    assert thumb is not None
    assert (thumb.width, thumb.height) == (512, 288)
    image = _open(thumb.data)
    assert image.size == (512, 288)
    assert image.format == ("WEBP" if thumb_format == "webp" else "JPEG")
    assert thumb.mime == f"image/{thumb_format}"
    assert _close(_mean(image), BLUE)


async def test_small_images_are_not_enlarged(tmp_path: Path) -> None:
    path = _write(tmp_path, "small.png", image_bytes("PNG", size=(100, 40)))
    details = await describe_image(path, sniff.PNG, box=512)
    assert details.thumbnail is not None
    assert (details.thumbnail.width, details.thumbnail.height) == (100, 40)


@pytest.mark.parametrize(
    ("orientation", "top_color", "size"),
    [(1, None, (400, 200)), (6, RED, (200, 400)), (8, BLUE, (200, 400)), (3, None, (400, 200))],
)
async def test_exif_orientation_is_honoured(
    tmp_path: Path, orientation: int, top_color: tuple[int, int, int] | None, size: tuple[int, int]
) -> None:
    # Stored 400x200, left half red, right half blue.
    path = _write(tmp_path, "photo.jpg", halves_jpeg((400, 200), RED, BLUE, orientation))
    details = await describe_image(path, sniff.JPEG, box=100)
    assert (details.width, details.height) == size  # displayed dimensions
    assert details.thumbnail is not None
    image = _open(details.thumbnail.data).convert("RGB")
    assert image.size == (size[0] // 4, size[1] // 4)
    w, h = image.size
    if top_color is not None:
        # Orientation 6 turns the picture clockwise: the left (red) half becomes the top.
        assert _close(image.getpixel((w // 2, h // 4)), top_color)  # type: ignore[arg-type]
        other = BLUE if top_color == RED else RED
        assert _close(image.getpixel((w // 2, 3 * h // 4)), other)  # type: ignore[arg-type]
    elif orientation == 3:  # upside down: red ends up on the right
        assert _close(image.getpixel((3 * w // 4, h // 2)), RED)  # type: ignore[arg-type]
    else:
        assert _close(image.getpixel((w // 4, h // 2)), RED)  # type: ignore[arg-type]


async def test_transparency_kept_in_webp_and_flattened_on_white_in_jpeg(tmp_path: Path) -> None:
    path = _write(tmp_path, "logo.png", half_transparent_png((400, 200)))
    webp = await describe_image(path, sniff.PNG, box=100, format="webp")
    assert webp.thumbnail is not None
    image = _open(webp.thumbnail.data)
    assert image.mode == "RGBA"
    assert image.getpixel((10, 25))[3] == 0  # type: ignore[index]
    assert image.getpixel((90, 25))[3] == 255  # type: ignore[index]
    jpeg = await describe_image(path, sniff.PNG, box=100, format="jpeg")
    assert jpeg.thumbnail is not None
    flat = _open(jpeg.thumbnail.data)
    assert flat.mode == "RGB"
    assert _close(flat.getpixel((10, 25)), (255, 255, 255), 8)  # type: ignore[arg-type]
    assert _close(flat.getpixel((90, 25)), BLUE)  # type: ignore[arg-type]


async def test_animated_gif_uses_the_first_frame(tmp_path: Path) -> None:
    path = _write(tmp_path, "anim.gif", animated_gif((RED, GREEN, BLUE), size=(300, 150)))
    details = await describe_image(path, sniff.GIF, box=150)
    assert details.frames == 3
    assert (details.width, details.height) == (300, 150)
    assert details.thumbnail is not None
    image = _open(details.thumbnail.data)
    assert image.size == (150, 75)
    assert _close(_mean(image), RED)


async def test_gif_with_transparency(tmp_path: Path) -> None:
    frame = Image.new("P", (64, 64), 0)
    frame.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    frame.paste(1, (32, 0, 64, 64))
    buffer = io.BytesIO()
    frame.save(buffer, "GIF", transparency=0)
    path = _write(tmp_path, "t.gif", buffer.getvalue())
    details = await describe_image(path, sniff.GIF, box=32)
    assert details.thumbnail is not None
    image = _open(details.thumbnail.data)
    assert image.mode == "RGBA"
    assert image.getpixel((4, 16))[3] == 0  # type: ignore[index]
    assert image.getpixel((28, 16))[3] == 255  # type: ignore[index]


async def test_sixteen_bit_greyscale_png(tmp_path: Path) -> None:
    image = Image.new("I;16", (200, 100), 40000)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    path = _write(tmp_path, "deep.png", buffer.getvalue())
    details = await describe_image(path, sniff.PNG, box=64)
    assert details.thumbnail is not None
    grey = _mean(_open(details.thumbnail.data))
    assert _close(grey, (156, 156, 156), 6)  # 40000 / 256, not clipped to white


async def test_damaged_image_is_refused_by_the_thumbnailer(tmp_path: Path) -> None:
    data = image_bytes("PNG", size=(300, 300))
    path = _write(tmp_path, "cut.png", data[: len(data) - 40])
    with pytest.raises(UnsupportedMediaError):
        await describe_image(path, sniff.PNG)


@pytest.mark.parametrize(
    ("container", "codec", "media_type"),
    [
        ("mp4", "libx264", sniff.MP4),
        ("mov", "mpeg4", sniff.MOV),
        ("webm", "libvpx-vp9", sniff.WEBM),
    ],
)
async def test_video_thumbnail_at_a_timestamp_differs_from_frame_zero(
    tmp_path: Path, container: str, codec: str, media_type: sniff.MediaType
) -> None:
    path = video_file(
        tmp_path / f"clip.{container}",
        container=container,
        codec=codec,
        frames=30,
        rate=10,
        size=(640, 360),
    )
    first = await describe_video(path, media_type, box=128)
    later = await describe_video(path, media_type, timestamp_ms=2000, box=128)
    assert (first.width, first.height) == (640, 360)
    assert first.duration_ms is not None and 2900 <= first.duration_ms <= 3100
    assert first.thumbnail is not None and later.thumbnail is not None
    assert (first.thumbnail.width, first.thumbnail.height) == (128, 72)
    assert first.thumbnail_timestamp_ms == 0
    assert later.thumbnail_timestamp_ms == 2000
    first_color = _mean(_open(first.thumbnail.data))
    later_color = _mean(_open(later.thumbnail.data))
    assert _close(first_color, color_for_frame(0), 20)
    assert _close(later_color, color_for_frame(20), 20)
    assert not _close(first_color, later_color, 40)


async def test_video_timestamp_past_the_end_is_clamped_to_the_last_frame(tmp_path: Path) -> None:
    path = video_file(tmp_path / "clip.mp4", frames=30, rate=10, gop=10)
    details = await describe_video(path, sniff.MP4, timestamp_ms=60_000, box=64)
    assert details.thumbnail is not None
    assert details.thumbnail_timestamp_ms == 2900
    assert _close(_mean(_open(details.thumbnail.data)), color_for_frame(29), 20)
    negative = await describe_video(path, sniff.MP4, timestamp_ms=-5, box=64)
    assert negative.thumbnail_timestamp_ms == 0


@pytest.mark.parametrize(("rotation", "top"), [(-90, RED), (90, BLUE)])
async def test_video_display_rotation_is_honoured(
    tmp_path: Path, rotation: int, top: tuple[int, int, int]
) -> None:
    # Stored landscape, left half red; -90 (counter-clockwise) is a clockwise turn on display,
    # as phones record portrait video, which brings the left (red) half to the top.
    path = video_file(
        tmp_path / "portrait.mp4", frames=3, size=(320, 240), rotation=rotation, halves=(RED, BLUE)
    )
    details = await describe_video(path, sniff.MP4, box=160)
    assert (details.width, details.height) == (240, 320)
    assert details.thumbnail is not None
    assert (details.thumbnail.width, details.thumbnail.height) == (120, 160)
    image = _open(details.thumbnail.data).convert("RGB")
    assert _close(image.getpixel((60, 30)), top)  # type: ignore[arg-type]
    assert not _close(image.getpixel((60, 130)), top)  # type: ignore[arg-type]


async def test_pdf_has_no_thumbnail(tmp_path: Path) -> None:
    path = _write(tmp_path, "doc.pdf", image_bytes("PDF"))
    details = await describe_media(path, sniff.PDF)
    assert details.thumbnail is None and details.width is None


async def test_box_is_validated(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.png", image_bytes("PNG"))
    with pytest.raises(ValueError, match="box"):
        await describe_image(path, sniff.PNG, box=0)
