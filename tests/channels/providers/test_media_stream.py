"""Media streams for uploads: MediaBody's exact chunks and spans, size checks, and
Provider.open_media's sources (a sized stream, a stream of unknown size spooled to disk, bytes)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import httpx
import pytest

from tests.channels.providers.helpers import StreamedFile, video
from tidings.channels.providers import BadBodyError, MediaBody, Provider, ProviderConfig

DATA = os.urandom(1000)


def body_of(data: bytes, piece: int = 37, size: int | None = None) -> MediaBody:
    source = StreamedFile(data, piece)
    return MediaBody(len(data) if size is None else size, source.stream, url="https://m/v.mp4")


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


class Plain(Provider):  # type: ignore[type-arg]
    # No identifier: a test double that the registry must not pick up.
    display_name = "Plain"


@pytest.fixture
async def plain() -> AsyncIterator[Plain]:
    async with httpx.AsyncClient() as client:
        yield Plain(client, ProviderConfig())


@pytest.mark.parametrize("piece", [1, 37, 100, 1000, 4096])
async def test_chunks_are_exactly_the_chunk_size_the_last_shorter(piece: int) -> None:
    chunks = await collect(body_of(DATA, piece).chunks(100))
    assert [len(c) for c in chunks] == [100] * 10
    chunks = await collect(body_of(DATA, piece).chunks(300))
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    assert b"".join(chunks) == DATA
    assert b"".join(await collect(body_of(DATA, piece).chunks(64, start=450))) == DATA[450:]
    assert b"".join(await collect(body_of(DATA, piece).chunks(64, start=1, end=99))) == DATA[1:99]


async def test_spans_in_one_pass_or_reopened() -> None:
    source = StreamedFile(DATA)
    body = MediaBody(len(DATA), source.stream, url="u")
    spans = [(0, 100), (100, 350), (350, 1000)]
    assert await collect(body.spans(spans)) == [DATA[a:b] for a, b in spans]
    assert source.opens == 1
    back = [(500, 600), (100, 200), (900, 1000)]
    assert await collect(body.spans(back)) == [DATA[a:b] for a, b in back]
    assert source.opens == 3  # the span before the last one reopened the stream
    with pytest.raises(BadBodyError, match="asked for bytes 900-1001"):
        await collect(body.spans([(900, 1001)]))


async def test_a_file_of_another_size_than_recorded_is_refused() -> None:
    with pytest.raises(BadBodyError, match="changed since it was stored"):
        await collect(body_of(DATA, size=1200).chunks(100))  # shorter than recorded
    with pytest.raises(BadBodyError, match="changed since it was stored"):
        await collect(body_of(DATA, size=900).chunks(100))  # longer
    with pytest.raises(BadBodyError, match="changed since it was stored"):
        await collect(body_of(DATA, size=1000 - 37 * 3).chunks(37))  # longer, at a boundary
    with pytest.raises(BadBodyError, match="changed since it was stored"):
        await collect(body_of(DATA, size=1100).spans([(0, 1100)]))


async def test_open_media_streams_a_sized_stream(plain: Plain) -> None:
    source = StreamedFile(DATA)
    async with plain.open_media(source.item()) as body:
        assert body.size == len(DATA)
        assert b"".join(await collect(body.chunks(128))) == DATA
    async with plain.open_media(source.item()) as body:
        assert [len(c) for c in await collect(body.chunks(400))] == [400, 400, 200]
    assert source.opens == 2  # streamed each time, never read whole


async def test_open_media_spools_a_stream_of_unknown_size_to_disk(
    plain: Plain, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    source = StreamedFile(DATA)
    async with plain.open_media(source.item(size=None)) as body:
        assert body.size == len(DATA)
        assert [p.name.startswith("tidings-media-") for p in tmp_path.iterdir()] == [True]
        assert b"".join(await collect(body.chunks(333))) == DATA
        assert b"".join(await collect(body.chunks(333))) == DATA  # reopened from the file
    assert source.opens == 1
    assert list(tmp_path.iterdir()) == []  # the spool is gone
    # Also when the upload fails midway.
    with pytest.raises(RuntimeError):
        async with plain.open_media(source.item(size=None)):
            raise RuntimeError("upload failed")
    assert list(tmp_path.iterdir()) == []


async def test_open_media_without_a_stream_uses_the_bytes(plain: Plain) -> None:
    item = video(DATA)
    assert item.stream is None
    async with plain.open_media(item) as body:
        assert body.size == len(DATA)
        assert b"".join(await collect(body.chunks(7))) == DATA


async def test_a_streamed_multipart_body_parses_back_with_its_exact_length() -> None:
    body = body_of(DATA, piece=41)
    headers, stream = body.multipart(
        {"key": "rte/1/v.mp4", "acl": "private"},
        file_field="file",
        filename='evil"\r\nX-Injected: 1.mp4',
        mime_type="video/mp4",
    )
    raw = b"".join(await collect(stream))
    assert int(headers["Content-Length"]) == len(raw)
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + raw
    )
    parts = list(message.iter_parts())
    assert [p.get_param("name", header="content-disposition") for p in parts] == [
        "key",
        "acl",
        "file",
    ]
    assert [p.get_payload(decode=True) for p in parts[:2]] == [b"rte/1/v.mp4", b"private"]
    assert parts[2].get_payload(decode=True) == DATA
    assert parts[2].get_content_type() == "video/mp4"
    # The file name cannot break out of its header line.
    assert parts[2]["X-Injected"] is None
    assert parts[2].get_filename() == "evil%22%0D%0AX-Injected: 1.mp4"
