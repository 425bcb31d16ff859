"""Real media files, generated with Pillow and PyAV, for the media tests and the benchmark."""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image

RED = (220, 20, 20)
GREEN = (20, 200, 20)
BLUE = (20, 20, 220)


def image_bytes(
    format: str,
    size: tuple[int, int] = (640, 480),
    color: tuple[int, ...] = BLUE,
    mode: str = "RGB",
    **save: object,
) -> bytes:
    """An image of one colour, encoded by Pillow in ``format`` (PNG, JPEG, GIF, WEBP, AVIF, PDF)."""
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format, **save)
    return buffer.getvalue()


def halves_jpeg(
    size: tuple[int, int],
    left: tuple[int, int, int],
    right: tuple[int, int, int],
    orientation: int | None = None,
) -> bytes:
    """A JPEG whose left half is ``left`` and right half ``right``, with an EXIF orientation."""
    image = Image.new("RGB", size, right)
    image.paste(left, (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    extra: dict[str, object] = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    image.save(buffer, "JPEG", quality=95, **extra)
    return buffer.getvalue()


def half_transparent_png(size: tuple[int, int] = (400, 200)) -> bytes:
    """Left half fully transparent, right half opaque blue."""
    image = Image.new("RGBA", size, (*BLUE, 255))
    image.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def animated_gif(
    colors: Sequence[tuple[int, int, int]] = (RED, GREEN, BLUE), size: tuple[int, int] = (300, 150)
) -> bytes:
    frames = [Image.new("RGB", size, color) for color in colors]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def color_for_frame(index: int) -> tuple[int, int, int]:
    """Frame colours that change steadily, so a frame's time can be read from its colour."""
    return (min(255, 10 + index * 8), 60, max(0, 245 - index * 8))


def video_file(
    path: Path,
    *,
    container: str = "mp4",
    codec: str = "libx264",
    frames: int = 30,
    rate: int = 10,
    size: tuple[int, int] = (320, 240),
    rotation: int | None = None,
    gop: int | None = None,
    halves: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None,
) -> Path:
    """A short video whose frame ``i`` is filled with :func:`color_for_frame` ``(i)``."""
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(frames):
            image = Image.new("RGB", size, color_for_frame(index))
            if halves is not None:  # left half / right half colours instead
                image.paste(halves[0], (0, 0, size[0] // 2, size[1]))
                image.paste(halves[1], (size[0] // 2, 0, size[0], size[1]))
            frame = av.VideoFrame.from_image(image)
            frame.pts = index
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def _encode_silence(output: Any, stream: Any, frames: int) -> None:
    """``frames`` frames of silence (1024 samples each, mono, 8 kHz) through ``stream``."""
    frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = 8000
    for index in range(frames):
        frame.pts = index * 1024
        for packet in stream.encode(frame):
            output.mux(packet)
    for packet in stream.encode():
        output.mux(packet)


def audio_only_m4a(path: Path) -> Path:
    """An MP4 container with only an audio stream (must be refused as a video)."""
    with av.open(str(path), "w", format="mp4") as output:
        _encode_silence(output, output.add_stream("aac", rate=8000), 4)
    return path


# A tiny but real ELF header (what `file` recognises): the start of an x86-64 executable.
ELF_EXECUTABLE = (
    b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + b"\x00" * 200
)
# A DOS/PE header start.
PE_EXECUTABLE = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 200 + b"PE\x00\x00"
)


def zip_archive() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not an image")
    return buffer.getvalue()


async def chunks_of(data: bytes, size: int = 64 * 1024):  # type: ignore[no-untyped-def]
    """``data`` as an async stream of ``size``-byte chunks (like a multipart upload)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def big_video(path: Path, size_mb: int, *, size: tuple[int, int] = (1280, 720)) -> Path:
    """A real MP4 of at least ``size_mb`` MB: a few noise frames (which barely compress) encoded
    over and over at a very high bitrate, so a large file takes seconds, not minutes."""
    import os

    width, height = size
    noise = [
        Image.frombytes("RGB", size, os.urandom(width * height * 3)).convert("RGB")
        for _ in range(3)
    ]
    target = size_mb * 1024 * 1024
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("mpeg4", rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.bit_rate = 400_000_000
        stream.codec_context.gop_size = 30
        stream.codec_context.options = {"qmin": "1", "qmax": "2"}
        index = 0
        while not path.exists() or path.stat().st_size < target:
            for _ in range(10):
                frame = av.VideoFrame.from_image(noise[index % len(noise)])
                frame.pts = index
                frame.time_base = Fraction(1, 30)
                for packet in stream.encode(frame):
                    output.mux(packet)
                index += 1
        for packet in stream.encode():
            output.mux(packet)
    return path


def _encode_frames(output: Any, stream: Any, size: tuple[int, int], frames: int) -> None:
    for index in range(frames):
        frame = av.VideoFrame.from_image(Image.new("RGB", size, color_for_frame(index)))
        frame.pts = index
        frame.time_base = Fraction(1, 10)
        for packet in stream.encode(frame):
            output.mux(packet)
    for packet in stream.encode():
        output.mux(packet)


def _add_cover(output: Any, size: tuple[int, int]) -> Any:
    """An attached picture (cover art) stream: a video stream of one JPEG frame."""
    cover = output.add_stream("mjpeg")
    cover.width, cover.height = size
    cover.pix_fmt = "yuvj420p"
    cover.disposition = av.stream.Disposition.attached_pic
    return cover


def _mux_cover(output: Any, cover: Any, size: tuple[int, int]) -> None:
    frame = av.VideoFrame.from_image(Image.new("RGB", size, RED)).reformat(format="yuvj420p")
    frame.pts = 0
    frame.time_base = Fraction(1, 25)
    for packet in cover.encode(frame):
        output.mux(packet)
    for packet in cover.encode():
        output.mux(packet)


def audio_with_cover_mp4(path: Path) -> Path:
    """An audio track and its cover art in an MP4 (brand isom): no moving picture at all."""
    with av.open(str(path), "w", format="mp4") as output:
        audio = output.add_stream("aac", rate=8000)
        cover = _add_cover(output, (64, 64))
        _encode_silence(output, audio, 10)
        _mux_cover(output, cover, (64, 64))
    return path


def _matroska_relabelled_webm(path: Path, codec: str, attachment: bytes | None) -> Path:
    """A Matroska file of ``codec`` (with ``attachment`` as an attached file) whose EBML DocType
    was rewritten to a NUL-padded ``webm``: it sniffs as WebM."""
    with av.open(str(path), "w", format="matroska") as output:
        stream = output.add_stream(codec, rate=10)
        stream.width, stream.height = (64, 64)
        stream.pix_fmt = "yuv420p"
        if attachment is not None:
            output.add_attachment("payload.exe", "application/x-msdownload", attachment)
        _encode_frames(output, stream, (64, 64), 5)
    data = path.read_bytes()
    at = data.index(b"matroska")
    path.write_bytes(data[:at] + b"webm\x00\x00\x00\x00" + data[at + 8 :])
    return path


def matroska_as_webm(path: Path) -> Path:
    """A Matroska file of H.264 relabelled as WebM: it sniffs as WebM but is no WebM video."""
    return _matroska_relabelled_webm(path, "libx264", None)


def webm_with_attachment(path: Path, attachment: bytes) -> Path:
    """A VP8 Matroska file carrying an attached file, relabelled as WebM (WebM forbids
    attachments, so its own muxer would drop it)."""
    return _matroska_relabelled_webm(path, "libvpx", attachment)
