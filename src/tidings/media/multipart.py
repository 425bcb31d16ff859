"""Streaming ``multipart/form-data`` parsing for uploads.

Starlette's ``request.form()`` / FastAPI's ``UploadFile`` write the whole file to a temporary file
before the route runs, so a size limit could only be checked after the disk had taken it all.
:func:`open_multipart_file` instead parses the request body as it arrives (python-multipart's
push parser) and hands the file part on as an async stream of chunks, which
:func:`tidings.media.ingest.ingest_stream` sniffs and limits while reading. Small text fields are
collected on the side (those after the file are available once the file stream is exhausted).

Usage in a route::

    upload = await open_multipart_file(request.stream(), request.headers["content-type"])
    media = await ingest_stream(upload.chunks, filename=upload.filename, ...)
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Final

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from tidings.media.errors import MultipartError

MAX_FIELD_BYTES: Final = 64 * 1024
MAX_FIELDS: Final = 32
#: Most bytes a form may have besides the file's: its text fields, part headers and boundaries
#: (and whatever a client sends before the first or after the last boundary).
MAX_FORM_BYTES: Final = MAX_FIELDS * MAX_FIELD_BYTES + 64 * 1024


@dataclass(slots=True)
class MultipartUpload:
    """The file part of a multipart request, as a stream.

    ``filename`` and ``content_type`` are what the client claims (never trusted for the type).
    ``fields`` holds the form's small text fields: those sent before the file at once, those
    after it once ``chunks`` has been read to the end.
    """

    filename: str | None
    content_type: str | None
    chunks: AsyncIterator[bytes]
    fields: dict[str, str] = field(default_factory=dict)


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


class _Reader:
    """Drives the push parser from the body stream, one body chunk at a time."""

    def __init__(
        self, body: AsyncIterable[bytes], boundary: bytes, file_field: str, max_field_bytes: int
    ) -> None:
        self.body = aiter(body)
        self.file_field = file_field
        self.max_field_bytes = max_field_bytes
        # Bytes of the body read, and of the file among them: the rest is bounded, so a form
        # cannot be endless around a small file (an epilogue, thousands of repeated fields).
        self.body_bytes = 0
        self.file_bytes = 0
        self.text_parts = 0
        self.fields: dict[str, str] = {}
        self.file_data: deque[bytes] = deque()
        self.file_seen = False
        self.file_done = False
        self.ended = False
        self.filename: str | None = None
        self.content_type: str | None = None
        self._in_file = False
        self._headers: dict[str, bytes] = {}
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._name: str | None = None
        self._text = bytearray()
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
        )

    # Parser callbacks (synchronous, called from parser.write).
    def _on_part_begin(self) -> None:
        self._headers = {}
        self._name = None
        self._text = bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_field = bytearray()
        self._header_value = bytearray()

    def _on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get("content-disposition"))
        if disposition.lower() != b"form-data" or b"name" not in params:
            raise MultipartError("a form part has no Content-Disposition name")
        self._name = _decode(params[b"name"])
        if self._name == self.file_field and not self.file_seen:
            self.file_seen = self._in_file = True
            filename = params.get(b"filename")
            self.filename = _decode(filename) if filename else None
            content_type = self._headers.get("content-type")
            self.content_type = content_type.decode("latin-1") if content_type else None
        else:
            self.text_parts += 1
            if self.text_parts > MAX_FIELDS:
                raise MultipartError("too many form fields", field=self._name)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.file_data.append(bytes(data[start:end]))
            self.file_bytes += end - start
            return
        self._text += data[start:end]
        if len(self._text) > self.max_field_bytes:
            raise MultipartError(
                f"form field {self._name!r} is too large (or a second file was sent)",
                field=self._name or "file",
            )

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.file_done = True
        elif self._name is not None:
            self.fields[self._name] = _decode(bytes(self._text))

    async def pump(self) -> bool:
        """Feed one body chunk to the parser; False once the body is over."""
        if self.ended:
            return False
        try:
            chunk = await anext(self.body)
        except StopAsyncIteration:
            self.ended = True
            self.parser.finalize()
            return False
        try:
            self.parser.write(chunk)
        except FormParserError as exc:
            raise MultipartError(f"malformed multipart body: {exc}") from exc
        self.body_bytes += len(chunk)
        if self.body_bytes - self.file_bytes > MAX_FORM_BYTES:
            raise MultipartError(
                f"the form has more than {MAX_FORM_BYTES // 1024} KB besides the file"
            )
        return True

    async def file_chunks(self) -> AsyncIterator[bytes]:
        while True:
            while self.file_data:
                yield self.file_data.popleft()
            if self.file_done:
                break
            if not await self.pump() and not self.file_data and not self.file_done:
                raise MultipartError("the request ended before the file was complete")
        # Read the rest of the form (small fields only: anything big is refused above).
        while await self.pump():
            pass


async def open_multipart_file(
    body: AsyncIterable[bytes],
    content_type_header: str | None,
    *,
    file_field: str = "file",
    max_field_bytes: int = MAX_FIELD_BYTES,
) -> MultipartUpload:
    """Parse ``body`` up to the start of the ``file_field`` part and return it as a stream.

    Raises :class:`MultipartError` (400, field ``file``) when the request is not
    ``multipart/form-data`` with a boundary, has no such part, is malformed or ends early.
    """
    kind, params = parse_options_header(content_type_header)
    if kind.lower() != b"multipart/form-data":
        raise MultipartError("the upload must be sent as multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary:
        raise MultipartError("the multipart Content-Type has no boundary")
    reader = _Reader(body, boundary, file_field, max_field_bytes)
    while not reader.file_seen:
        if not await reader.pump():
            raise MultipartError(f"the form has no {file_field!r} file", field=file_field)
    return MultipartUpload(
        filename=reader.filename,
        content_type=reader.content_type,
        chunks=reader.file_chunks(),
        fields=reader.fields,
    )
