"""What a file is, decided from its bytes, never from its name.

Two steps, because uploads are streamed:

1. :func:`sniff_head` looks at the first :data:`HEAD_BYTES` bytes (magic numbers, ISO-BMFF ``ftyp``
   brands, the EBML DocType) and either names a supported type or refuses. It runs on the first
   chunk, so junk is refused before the rest is read, and it fixes the size limit that applies.
2. :func:`verify_media` checks that the whole file really is what its head claims: Pillow parses
   the image, PyAV opens the video with the demuxer of the sniffed container and decodes a frame,
   a PDF has its header and end-of-file marker.

A name is only a claim: when its extension names a different kind (``clip.mp4`` that is a JPEG) or
something that is not media at all (``photo.exe``), the upload is refused with a message saying
what the content really is. Within one kind a wrong extension is tolerated (PNG bytes named
``.jpg`` are common and harmless), because the stored key always gets the canonical extension of
the content and the file is served with the sniffed MIME type.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Final

import av
from PIL import Image, features

from tidings.media.errors import EmptyMediaError, MediaMismatchError, UnsupportedMediaError

# The sniffers need the first few hundred bytes at most; a generous head costs nothing.
HEAD_BYTES: Final = 4096


class MediaKind(StrEnum):
    """The ``type`` column of a media row."""

    IMAGE = "image"
    VIDEO = "video"
    PDF = "pdf"


@dataclass(frozen=True, slots=True)
class MediaType:
    """A supported type: its kind, MIME type, canonical extension and a human label."""

    kind: MediaKind
    mime: str
    extension: str
    label: str
    # Pillow's format name (images) or the FFmpeg demuxer to force (videos).
    decoder: str


PNG: Final = MediaType(MediaKind.IMAGE, "image/png", "png", "PNG image", "PNG")
JPEG: Final = MediaType(MediaKind.IMAGE, "image/jpeg", "jpg", "JPEG image", "JPEG")
GIF: Final = MediaType(MediaKind.IMAGE, "image/gif", "gif", "GIF image", "GIF")
WEBP: Final = MediaType(MediaKind.IMAGE, "image/webp", "webp", "WebP image", "WEBP")
AVIF: Final = MediaType(MediaKind.IMAGE, "image/avif", "avif", "AVIF image", "AVIF")
MP4: Final = MediaType(MediaKind.VIDEO, "video/mp4", "mp4", "MP4 video", "mov")
MOV: Final = MediaType(MediaKind.VIDEO, "video/quicktime", "mov", "QuickTime video", "mov")
WEBM: Final = MediaType(MediaKind.VIDEO, "video/webm", "webm", "WebM video", "webm")
PDF: Final = MediaType(MediaKind.PDF, "application/pdf", "pdf", "PDF document", "pdf")

SUPPORTED_TYPES: Final = (PNG, JPEG, GIF, WEBP, AVIF, MP4, MOV, WEBM, PDF)

# Extensions a name may carry for each kind (lower case, without the dot).
EXTENSION_KINDS: Final[dict[str, MediaKind]] = {
    **dict.fromkeys(
        ("png", "apng", "jpg", "jpeg", "jpe", "jfif", "pjpeg", "pjp", "gif", "webp", "avif"),
        MediaKind.IMAGE,
    ),
    **dict.fromkeys(("mp4", "m4v", "mov", "qt", "webm"), MediaKind.VIDEO),
    "pdf": MediaKind.PDF,
}

_SUPPORTED_LIST = "PNG, JPEG, GIF, WebP, AVIF images, MP4, MOV, WebM videos and PDF documents"

# ISO-BMFF brands. A file is judged by its major brand first, then by its compatible brands.
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
_HEIF_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1"})
_QUICKTIME_BRANDS: Final = frozenset({b"qt  "})
_AUDIO_BRANDS: Final = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})
_3GP_PREFIXES: Final = (b"3gp", b"3g2", b"3ge", b"3gg")
_MP4_BRANDS: Final = frozenset(
    {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9", b"isoa"}
    | {b"mp41", b"mp42", b"mp71", b"avc1", b"dash", b"M4V ", b"M4VH", b"M4VP", b"f4v ", b"mmp4"}
    | {b"MSNV", b"XAVC", b"cmfc", b"cmfs", b"hvc1", b"av01"}
    | {b"NDAS", b"NDSC", b"NDSH", b"NDSM", b"NDSP", b"NDSS", b"NDXC", b"NDXH", b"NDXM", b"NDXP"}
)
# Top-level atoms that may open a QuickTime file written without an ``ftyp``.
_QUICKTIME_ATOMS: Final = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})

# Well-known non-media signatures, only to tell the user what the file really is.
_FOREIGN_SIGNATURES: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\xfe\xed\xfa\xce", "a Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "a Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "an executable (Mach-O universal binary or Java class)"),
    (b"#!", "a script"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"PK\x07\x08", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an MS Office (OLE) document"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"II*\x00", "a TIFF image (not supported)"),
    (b"MM\x00*", "a TIFF image (not supported)"),
    (b"BM", "a BMP image (not supported)"),
    (b"\x00\x00\x01\x00", "an ICO image (not supported)"),
    (b"8BPS", "a Photoshop document (not supported)"),
    (b"\xff\x0a", "a JPEG XL image (not supported)"),
    (b"\x00\x00\x00\x0cJXL ", "a JPEG XL image (not supported)"),
    (b"OggS", "an Ogg file (not supported)"),
    (b"fLaC", "a FLAC audio file (not supported)"),
    (b"ID3", "an MP3 audio file (not supported)"),
    (b"FLV", "a Flash video (not supported)"),
    (b"\x00\x00\x01\xba", "an MPEG program stream (not supported)"),
    (b"\x00\x00\x01\xb3", "an MPEG video stream (not supported)"),
)


def extension_of(filename: str | None) -> str | None:
    """The lower-case extension of the last component of ``filename`` (Windows or POSIX path)."""
    if not filename:
        return None
    name = PureWindowsPath(PurePosixPath(filename).name).name
    suffix = PurePosixPath(name).suffix
    return suffix[1:].lower() if len(suffix) > 1 else None


def _read_vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``pos``: (value, next position), or None if cut."""
    if pos >= len(data):
        return None
    first = data[pos]
    length = 1
    mask = 0x80
    while length <= 8 and not first & mask:
        mask >>= 1
        length += 1
    if length > 8 or pos + length > len(data):
        return None
    value = first if keep_marker else first & (mask - 1)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    return value, pos + length


def _ebml_doctype(head: bytes) -> str | None:
    """The DocType of an EBML header (``webm``, ``matroska``), or None if not found in ``head``."""
    header = _read_vint(head, 4, keep_marker=False)
    if header is None:
        return None
    size, pos = header
    end = min(len(head), pos + size)
    while pos < end:
        element = _read_vint(head, pos, keep_marker=True)
        if element is None:
            return None
        element_id, pos = element
        length = _read_vint(head, pos, keep_marker=False)
        if length is None:
            return None
        element_size, pos = length
        if element_id == 0x4282:  # DocType
            return head[pos : pos + element_size].rstrip(b"\x00").decode("ascii", "replace")
        pos += element_size
    return None


def _ftyp_brands(head: bytes) -> tuple[bytes, set[bytes]] | None:
    """(major brand, compatible brands) of an ISO-BMFF ``ftyp`` box at offset 0."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    (size,) = struct.unpack(">I", head[:4])
    start = 8
    if size == 1 and len(head) >= 16:  # 64-bit box size follows the type
        (size,) = struct.unpack(">Q", head[8:16])
        start = 16
    if size == 0:
        size = len(head)
    if size < start + 8:
        return None
    end = min(size, len(head))
    major = head[start : start + 4]
    compatible = {head[i : i + 4] for i in range(start + 8, end - 3, 4)}
    return major, compatible


def _sniff_bmff(head: bytes) -> MediaType | str | None:
    """Type of an ISO-BMFF file (MP4, MOV, AVIF), a refusal message, or None if not BMFF."""
    brands = _ftyp_brands(head)
    if brands is None:
        if len(head) >= 8 and head[4:8] in _QUICKTIME_ATOMS:
            return MOV  # pre-ftyp QuickTime; PyAV's verification decides whether it is real
        return None
    major, compatible = brands
    all_brands = {major} | compatible
    if major in _AVIF_BRANDS or (major in _HEIF_BRANDS and all_brands & _AVIF_BRANDS):
        if not features.check("avif"):
            return "AVIF images are not supported by this server's image library"
        return AVIF
    if major in _HEIF_BRANDS or major in {b"msf1", b"miaf"}:
        return "HEIC/HEIF images are not supported; export the photo as JPEG or PNG"
    if major in _QUICKTIME_BRANDS:
        return MOV
    if major in _AUDIO_BRANDS:
        return "audio files are not supported"
    if major.startswith(_3GP_PREFIXES):
        return "3GP videos are not supported; use MP4, MOV or WebM"
    if major in _MP4_BRANDS or compatible & _MP4_BRANDS:
        return MP4
    if compatible & _QUICKTIME_BRANDS:
        return MOV
    return f"unsupported ISO media file (brand {major.decode('latin-1')!r})"


def _sniff_riff(head: bytes) -> MediaType | str | None:
    if head[:4] != b"RIFF" or len(head) < 12:
        return None
    form = head[8:12]
    if form == b"WEBP":
        return WEBP
    if form == b"AVI ":
        return "AVI videos are not supported; use MP4, MOV or WebM"
    if form == b"WAVE":
        return "audio files are not supported"
    return "unsupported RIFF file"


def _sniff(head: bytes) -> MediaType | str | None:
    """The supported type of ``head``; a message for a recognised unsupported type; else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        doctype = _ebml_doctype(head)
        if doctype == "webm":
            return WEBM
        if doctype == "matroska":
            return "Matroska (MKV) videos are not supported; use MP4, MOV or WebM"
        return "unsupported EBML file"
    for sniffer in (_sniff_riff, _sniff_bmff):
        found = sniffer(head)
        if found is not None:
            return found
    return None


def describe_foreign(head: bytes) -> str | None:
    """What a non-media head looks like ("a ZIP archive", "an ELF executable"), for messages."""
    for signature, label in _FOREIGN_SIGNATURES:
        if head.startswith(signature):
            return label
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        lowered = text[:512].lower()
        if b"<svg" in lowered:
            return "an SVG image (not supported)"
        if b"<html" in lowered or b"<!doctype html" in lowered:
            return "an HTML page"
        return "an XML/HTML document"
    if text[:1] in (b"{", b"["):
        return "a JSON document"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:512]):
        return "a text file"
    return None


def sniff_head(head: bytes, *, filename: str | None = None) -> MediaType:
    """The media type of a file from its first bytes, checked against its name if given.

    Raises :class:`EmptyMediaError` for no bytes, :class:`MediaMismatchError` when the name's
    extension contradicts the content, :class:`UnsupportedMediaError` for anything else.
    """
    if not head:
        raise EmptyMediaError()
    found = _sniff(head[:HEAD_BYTES])
    extension = extension_of(filename)
    claimed_kind = EXTENSION_KINDS.get(extension) if extension else None
    shown = repr(PureWindowsPath(PurePosixPath(filename).name).name) if filename else "the file"
    if isinstance(found, MediaType):
        if extension is not None and claimed_kind != found.kind:
            raise MediaMismatchError(
                f"{shown} is named as {_claim(extension, claimed_kind)} "
                f"but its content is {_article(found.label)}"
            )
        return found
    if isinstance(found, str):  # a recognised type we do not accept: say which
        raise UnsupportedMediaError(f"{shown}: {found}")
    what = describe_foreign(head) or "not a recognised file type"
    if claimed_kind is not None:
        raise MediaMismatchError(
            f"{shown} is named as {_claim(extension, claimed_kind)} but its content is {what}; "
            f"supported: {_SUPPORTED_LIST}"
        )
    raise UnsupportedMediaError(f"unsupported file type ({what}); supported: {_SUPPORTED_LIST}")


def _claim(extension: str | None, kind: MediaKind | None) -> str:
    label = {MediaKind.IMAGE: "an image", MediaKind.VIDEO: "a video", MediaKind.PDF: "a PDF"}
    if kind is None:
        return f"a .{extension} file"
    return f"{label[kind]} (.{extension})"


def _article(label: str) -> str:
    return f"an {label}" if label[0].lower() in "aeiou" else f"a {label}"


async def sniff_file(path: Path, *, filename: str | None = None) -> MediaType:
    """:func:`sniff_head` on the start of a file on disk."""
    head = await asyncio.to_thread(_read_head, path)
    return sniff_head(head, filename=filename)


def _read_head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(HEAD_BYTES)


# Decoding an image costs about 4 bytes per pixel; 64 megapixels covers 8000x8000 and every phone
# camera while keeping one decode under ~256 MB. Pillow's own bomb check is the backstop. The
# same limit applies to the frames of a video (8K is 33 megapixels): a few kilobytes of video
# may declare frames of 16384x16384 that would take gigabytes to decode.
DEFAULT_MAX_IMAGE_PIXELS: Final = 64_000_000

# A PDF's last "%%EOF" must be near the end; a little trailing whitespace/garbage is common.
_PDF_TAIL_BYTES: Final = 2048


async def verify_media(
    path: Path, media_type: MediaType, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> None:
    """Check that the whole file at ``path`` really is ``media_type`` (runs in a thread).

    Images are parsed and decoded by Pillow restricted to the sniffed format; videos are opened
    by PyAV with the sniffed container's demuxer forced (so FFmpeg never probes its way into a
    playlist or concat format that could read other files), must hold a video stream and decode
    a frame; PDFs need their header and a final ``%%EOF``. Raises :class:`UnsupportedMediaError`.
    """
    await asyncio.to_thread(verify_media_sync, path, media_type, max_image_pixels=max_image_pixels)


def verify_media_sync(
    path: Path, media_type: MediaType, *, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> None:
    """The blocking body of :func:`verify_media`."""
    if media_type.kind is MediaKind.IMAGE:
        _verify_image(path, media_type, max_image_pixels)
    elif media_type.kind is MediaKind.VIDEO:
        _verify_video(path, media_type, max_image_pixels)
    else:
        _verify_pdf(path)


def open_image(path: Path, media_type: MediaType, max_pixels: int) -> Image.Image:
    """Open an image with only the sniffed format's plugin, refusing too many pixels."""
    try:
        image = Image.open(path, formats=[media_type.decoder])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnsupportedMediaError(f"the image has too many pixels ({exc})") from exc
    except Exception as exc:  # any parser failure means the bytes are not that format
        raise UnsupportedMediaError(
            f"the {media_type.label} is damaged and cannot be read"
        ) from exc
    width, height = image.size
    if width <= 0 or height <= 0 or width * height > max_pixels:
        image.close()
        raise UnsupportedMediaError(
            f"the image is {width}x{height} pixels; at most {max_pixels // 1_000_000} "
            "megapixels are accepted"
        )
    return image


def _verify_image(path: Path, media_type: MediaType, max_pixels: int) -> None:
    with open_image(path, media_type, max_pixels) as image:
        try:
            image.verify()  # structure and checksums (PNG CRCs), without decoding
        except Exception as exc:
            raise UnsupportedMediaError(
                f"the {media_type.label} is damaged and cannot be read"
            ) from exc
    # verify() leaves the image unusable and skips pixel data: decode the first frame too, so a
    # truncated JPEG is caught here rather than by whoever displays it. JPEG decodes at a reduced
    # scale, which still reads every entropy-coded segment.
    with open_image(path, media_type, max_pixels) as image:
        try:
            if media_type is JPEG:
                image.draft("RGB", (512, 512))
            image.load()
        except Exception as exc:
            raise UnsupportedMediaError(
                f"the {media_type.label} is damaged or truncated and cannot be decoded"
            ) from exc


# What a WebM file may hold (the WebM spec); the Matroska demuxer that reads it would take any
# codec, and attached files too.
_WEBM_CODECS: Final = {
    "video": frozenset({"vp8", "vp9", "av1"}),
    "audio": frozenset({"vorbis", "opus"}),
    "subtitle": frozenset({"webvtt"}),
}


def main_video_stream(container: Any, media_type: MediaType) -> Any:
    """The video stream of an opened container, after checking that the container hides
    nothing else: no attached files (Matroska can carry any file, an executable too), only the
    codecs WebM allows in a WebM, and a moving picture rather than only a cover picture (an
    audio file with its artwork). Raises :class:`UnsupportedMediaError`."""
    label = media_type.label
    for stream in container.streams:
        if stream.type == "attachment":
            name = stream.metadata.get("filename") or "unnamed"
            raise UnsupportedMediaError(
                f"the {label} carries an attached file ({name!r}); only plain videos are accepted"
            )
        if media_type is WEBM:
            context = stream.codec_context
            codec = context.codec.canonical_name if context is not None else "unknown"
            if codec not in _WEBM_CODECS.get(stream.type, frozenset()):
                raise UnsupportedMediaError(
                    f"the file is not a WebM video: it holds a {stream.type} stream of {codec} "
                    "(WebM allows VP8, VP9, AV1 video and Vorbis, Opus audio)"
                )
    pictures = [
        stream
        for stream in container.streams.video
        if not stream.disposition & av.stream.Disposition.attached_pic
    ]
    if not pictures:
        raise UnsupportedMediaError(f"the {label} has no video stream")
    return pictures[0]


def limit_video_frames(stream: Any, media_type: MediaType, max_pixels: int) -> None:
    """Refuse a video stream whose frames have more than ``max_pixels`` pixels, and make the
    decoder refuse any frame that does (should the bitstream contradict the container).

    Call before the first decode: the limit is set when the decoder opens.
    """
    width, height = stream.codec_context.width, stream.codec_context.height
    if not width or not height:
        raise UnsupportedMediaError(f"the {media_type.label} has no picture size")
    if width * height > max_pixels:
        raise UnsupportedMediaError(
            f"the video is {width}x{height} pixels; at most {max_pixels // 1_000_000} "
            "megapixels per frame are accepted"
        )
    stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(max_pixels)}


def _verify_video(path: Path, media_type: MediaType, max_pixels: int) -> None:
    try:
        with av.open(str(path), format=media_type.decoder, metadata_errors="ignore") as container:
            stream = main_video_stream(container, media_type)
            limit_video_frames(stream, media_type, max_pixels)
            for _frame in container.decode(stream):
                return
    except UnsupportedMediaError:
        raise
    except Exception as exc:  # FFmpeg errors, codec not available, malformed boxes
        raise UnsupportedMediaError(
            f"the {media_type.label} is damaged or uses an unreadable codec ({exc})"
        ) from exc
    raise UnsupportedMediaError(f"the {media_type.label} has no decodable video frame")


def _verify_pdf(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(16)
        size = f.seek(0, 2)
        f.seek(max(0, size - _PDF_TAIL_BYTES))
        tail = f.read()
    if not (head.startswith(b"%PDF-") and head[5:6].isdigit()):
        raise UnsupportedMediaError("the PDF document has no valid header")
    if b"%%EOF" not in tail:
        raise UnsupportedMediaError("the PDF document is truncated (no end-of-file marker)")


def media_type_for_extension(extension: str) -> MediaType:
    """The supported type whose canonical extension is ``extension`` (as in stored keys)."""
    for media_type in SUPPORTED_TYPES:
        if media_type.extension == extension.lower():
            return media_type
    raise KeyError(extension)
