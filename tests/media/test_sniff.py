"""Type from content: magic numbers, ftyp brands, EBML DocType, names checked against content."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import features

from tidings.media import sniff
from tidings.media.errors import EmptyMediaError, MediaMismatchError, UnsupportedMediaError
from tidings.media.sniff import MediaKind, sniff_head, verify_media
from tidings.media.thumbnails import describe_video

from .factories import (
    ELF_EXECUTABLE,
    PE_EXECUTABLE,
    animated_gif,
    audio_only_m4a,
    audio_with_cover_mp4,
    image_bytes,
    matroska_as_webm,
    video_file,
    webm_with_attachment,
    zip_archive,
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (image_bytes("PNG"), sniff.PNG),
        (image_bytes("JPEG"), sniff.JPEG),
        (animated_gif(), sniff.GIF),
        (image_bytes("WEBP"), sniff.WEBP),
        (image_bytes("PDF"), sniff.PDF),
    ],
    ids=["png", "jpeg", "gif", "webp", "pdf"],
)
def test_images_and_pdf_are_recognised_by_content(data: bytes, expected: sniff.MediaType) -> None:
    assert sniff_head(data) is expected
    # The name does not decide: a neutral or missing name gives the same answer.
    assert sniff_head(data, filename="upload") is expected


@pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF")
def test_avif_is_recognised() -> None:
    found = sniff_head(image_bytes("AVIF"), filename="photo.avif")
    assert found is sniff.AVIF
    assert (found.kind, found.mime, found.extension) == (MediaKind.IMAGE, "image/avif", "avif")


@pytest.mark.parametrize(
    ("container", "codec", "expected"),
    [
        ("mp4", "libx264", sniff.MP4),
        ("mp4", "mpeg4", sniff.MP4),
        ("mov", "libx264", sniff.MOV),
        ("webm", "libvpx-vp9", sniff.WEBM),
        ("webm", "libvpx", sniff.WEBM),
    ],
)
async def test_videos_are_recognised_and_verified(
    tmp_path: Path, container: str, codec: str, expected: sniff.MediaType
) -> None:
    path = video_file(tmp_path / f"clip.{container}", container=container, codec=codec, frames=5)
    found = await sniff.sniff_file(path, filename=path.name)
    assert found is expected
    assert found.kind is MediaKind.VIDEO
    await verify_media(path, found)


def test_media_type_fields() -> None:
    assert (sniff.MP4.mime, sniff.MP4.extension) == ("video/mp4", "mp4")
    assert (sniff.MOV.mime, sniff.MOV.extension) == ("video/quicktime", "mov")
    assert (sniff.WEBM.mime, sniff.WEBM.extension) == ("video/webm", "webm")
    assert (sniff.PDF.kind, sniff.PDF.mime) == (MediaKind.PDF, "application/pdf")
    assert sniff.media_type_for_extension("jpg") is sniff.JPEG


@pytest.mark.parametrize(
    ("data", "filename", "what"),
    [
        (ELF_EXECUTABLE, "photo.png", "ELF executable"),
        (PE_EXECUTABLE, "photo.png", "Windows executable"),
        (PE_EXECUTABLE, "holiday.jpg", "Windows executable"),
        (zip_archive(), "photo.png", "ZIP archive"),
        (b"#!/bin/sh\nrm -rf /\n", "clip.mp4", "script"),
        (b"<html><script>alert(1)</script></html>", "doc.pdf", "HTML page"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "logo.png", "SVG"),
    ],
)
def test_non_media_with_a_media_name_is_refused_saying_what_it_is(
    data: bytes, filename: str, what: str
) -> None:
    with pytest.raises(MediaMismatchError) as caught:
        sniff_head(data, filename=filename)
    error = caught.value
    assert error.status_code == 415
    assert filename in error.message and what in error.message
    assert error.field == "file"


def test_media_of_another_kind_than_its_name_is_refused() -> None:
    with pytest.raises(MediaMismatchError, match=r"'clip.mp4' is named as a video .* JPEG image"):
        sniff_head(image_bytes("JPEG"), filename="clip.mp4")
    with pytest.raises(MediaMismatchError, match="named as an image"):
        sniff_head(image_bytes("PDF"), filename="scan.png")


def test_media_with_a_non_media_extension_is_refused() -> None:
    with pytest.raises(MediaMismatchError, match=r"a \.exe file but its content is a PNG image"):
        sniff_head(image_bytes("PNG"), filename="setup.exe")


def test_a_wrong_extension_within_the_same_kind_is_tolerated() -> None:
    # PNG bytes named .jpg: stored as .png and served as image/png, so the name does no harm.
    assert sniff_head(image_bytes("PNG"), filename="screenshot.JPG") is sniff.PNG
    # Browsers on Windows may send a full path.
    assert sniff_head(image_bytes("GIF"), filename="C:\\Users\\me\\cat.gif") is sniff.GIF


def test_zero_bytes_is_refused() -> None:
    with pytest.raises(EmptyMediaError) as caught:
        sniff_head(b"", filename="empty.png")
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (ELF_EXECUTABLE, "ELF executable"),
        (zip_archive(), "ZIP archive"),
        (b"hello world\n", "text file"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC"),
        (b"\x00\x00\x00\x14ftyp3gp5\x00\x00\x00\x003gp5", "3GP"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "AVI"),
        (b"\x1a\x45\xdf\xa3\x93\x42\x82\x88matroska\x42\x87\x81\x04", "Matroska"),
        (b"II*\x00" + b"\x00" * 20, "TIFF"),
        (bytes(range(256)) * 4, "not a recognised file type"),
    ],
)
def test_unsupported_content_is_refused_with_a_message(data: bytes, message: str) -> None:
    with pytest.raises(UnsupportedMediaError, match=message) as caught:
        sniff_head(data, filename=None)
    assert caught.value.status_code == 415


async def test_audio_only_mp4_is_refused(tmp_path: Path) -> None:
    path = audio_only_m4a(tmp_path / "song.mp4")
    found = await sniff.sniff_file(path)
    assert found is sniff.MP4  # the brand says MP4; only opening it shows there is no video
    with pytest.raises(UnsupportedMediaError, match="no video stream"):
        await verify_media(path, found)


async def test_damaged_png_is_refused(tmp_path: Path) -> None:
    data = bytearray(image_bytes("PNG", size=(64, 64)))
    data[40] ^= 0xFF  # inside IHDR/IDAT: the chunk CRC no longer matches
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    with pytest.raises(UnsupportedMediaError, match="damaged"):
        await verify_media(path, sniff_head(bytes(data)))


async def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    data = image_bytes("JPEG", size=(800, 600), color=(10, 120, 200), quality=95)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsupportedMediaError, match=r"truncated|damaged"):
        await verify_media(path, sniff.JPEG)


async def test_truncated_video_is_refused(tmp_path: Path) -> None:
    source = video_file(tmp_path / "clip.mp4", frames=10)
    path = tmp_path / "cut.mp4"
    path.write_bytes(source.read_bytes()[:200])  # ftyp and a little of mdat; moov is at the end
    with pytest.raises(UnsupportedMediaError):
        await verify_media(path, sniff.MP4)


async def test_pdf_needs_its_end_marker(tmp_path: Path) -> None:
    good = tmp_path / "good.pdf"
    good.write_bytes(image_bytes("PDF"))
    await verify_media(good, sniff.PDF)
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(image_bytes("PDF")[:300])
    with pytest.raises(UnsupportedMediaError, match="truncated"):
        await verify_media(bad, sniff.PDF)


async def test_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    path.write_bytes(image_bytes("PNG", size=(4000, 3000), mode="1", color=1))
    with pytest.raises(UnsupportedMediaError, match="4000x3000"):
        await verify_media(path, sniff.PNG, max_image_pixels=10_000_000)
    await verify_media(path, sniff.PNG)  # under the default 64 megapixels


@pytest.mark.parametrize(
    ("container", "codec", "media_type"),
    [("mp4", "libx264", sniff.MP4), ("webm", "libvpx", sniff.WEBM)],
)
async def test_a_video_with_too_many_pixels_is_refused_before_decoding(
    tmp_path: Path, container: str, codec: str, media_type: sniff.MediaType
) -> None:
    # A frame is decoded like an image: a small file of huge frames must not take gigabytes.
    path = video_file(
        tmp_path / f"wide.{container}", container=container, codec=codec, size=(640, 360)
    )
    with pytest.raises(UnsupportedMediaError, match="640x360"):
        await verify_media(path, media_type, max_image_pixels=200_000)
    with pytest.raises(UnsupportedMediaError, match="640x360"):
        await describe_video(path, media_type, max_pixels=200_000)
    await verify_media(path, media_type)  # under the default 64 megapixels


async def test_a_webm_hiding_an_attached_file_is_refused(tmp_path: Path) -> None:
    # Matroska can carry files (an executable here); relabelled "webm" it sniffs as WebM.
    path = webm_with_attachment(tmp_path / "clip.webm", ELF_EXECUTABLE * 50)
    assert ELF_EXECUTABLE[:16] in path.read_bytes()
    media_type = sniff_head(path.read_bytes()[: sniff.HEAD_BYTES], filename="clip.webm")
    assert media_type is sniff.WEBM
    with pytest.raises(UnsupportedMediaError, match=r"attached file.*payload\.exe"):
        await verify_media(path, media_type)


async def test_matroska_of_other_codecs_relabelled_webm_is_refused(tmp_path: Path) -> None:
    path = matroska_as_webm(tmp_path / "clip.webm")
    assert sniff_head(path.read_bytes()[: sniff.HEAD_BYTES]) is sniff.WEBM
    with pytest.raises(UnsupportedMediaError, match="h264"):
        await verify_media(path, sniff.WEBM)


async def test_audio_with_cover_art_is_not_a_video(tmp_path: Path) -> None:
    # An MP4 (brand isom) of sound and a still cover picture: the picture is no video.
    path = audio_with_cover_mp4(tmp_path / "song.mp4")
    assert sniff_head(path.read_bytes()[: sniff.HEAD_BYTES]) is sniff.MP4
    with pytest.raises(UnsupportedMediaError, match="no video stream"):
        await verify_media(path, sniff.MP4)


def _png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims a huge size, followed by a tiny IDAT: a decompression bomb shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


async def test_pillow_decompression_bomb_is_refused(tmp_path: Path) -> None:
    # 100000x100000: over Pillow's own hard limit, whatever max_image_pixels says.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_claiming(100_000, 100_000))
    with pytest.raises(UnsupportedMediaError, match="too many pixels"):
        await verify_media(path, sniff.PNG, max_image_pixels=10**12)


def test_ebml_header_parsing_handles_cut_data() -> None:
    with pytest.raises(UnsupportedMediaError):
        sniff_head(b"\x1a\x45\xdf\xa3\x9f\x42")
