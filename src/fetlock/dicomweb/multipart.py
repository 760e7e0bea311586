"""``multipart/related`` (RFC 2387) bodies for DICOMweb, read and written.

Reading (STOW-RS): the request body is fed chunk by chunk to
python-multipart's streaming parser and each part goes straight to its own
temporary file, so a 2 GB upload never sits in memory. Writing (WADO-RS):
parts are generated lazily from iterators of bytes, so a study is streamed
from the blob store as it is sent.

Media-type headers are parsed here too, because DICOMweb puts its meaning in
parameters (``type``, ``transfer-syntax``) that clients quote or not.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState

logger = logging.getLogger(__name__)

CRLF = b"\r\n"


class MultipartError(ValueError):
    """A request body that is not valid ``multipart/related``."""


@dataclass(frozen=True)
class MediaType:
    """One media type with its parameters (names lower-cased)."""

    type: str
    params: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0

    @property
    def main(self) -> str:
        return self.type.split("/")[0]


def _split_unquoted(text: str, separator: str) -> list[str]:
    """Split `text` on `separator` where it is outside double quotes."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return pieces


def parse_media_type(text: str) -> MediaType:
    """Parse ``type/subtype; name=value; name="quoted value"``."""
    pieces = _split_unquoted(text, ";")
    media = pieces[0].strip().lower()
    params: dict[str, str] = {}
    quality = 1.0
    for piece in pieces[1:]:
        name, sep, value = piece.partition("=")
        if not sep:
            continue
        name = name.strip().lower()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
            continue
        params[name] = value
    return MediaType(media, params, quality)


def parse_accept(header: str | None) -> list[MediaType]:
    """Return the media ranges of an Accept header, best first.

    A missing or empty header is ``*/*``. Ranges with ``q=0`` are dropped.
    """
    if not header or not header.strip():
        return [MediaType("*/*")]
    pieces = [p.strip() for p in _split_unquoted(header, ",") if p.strip()]
    ranges = [parse_media_type(piece) for piece in pieces]
    ranges = [r for r in ranges if r.quality > 0]
    # Stable sort keeps the client's order among equal qualities.
    return sorted(ranges, key=lambda r: -r.quality)


# -- reading ----------------------------------------------------------------


@dataclass
class SpooledPart:
    """One body part, its bytes in a temporary file."""

    index: int
    headers: dict[str, str]
    path: Path
    size: int = 0

    @property
    def content_type(self) -> MediaType | None:
        value = self.headers.get("content-type")
        return parse_media_type(value) if value else None


class _Spooler:
    """Callbacks for MultipartParser that write each part to a file."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.parts: list[SpooledPart] = []
        self.total = 0
        self._file: IO[bytes] | None = None
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[str, str] = {}

    def on_part_begin(self) -> None:
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def on_headers_finished(self) -> None:
        index = len(self.parts)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in on_part_end)
            dir=self.directory, prefix=f"part{index:05d}-", suffix=".dcm", delete=False
        )
        self._file = handle
        self.parts.append(SpooledPart(index, self._headers, Path(handle.name)))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is None:
            return
        length = end - start
        self.total += length
        if self.total > self.max_bytes:
            raise MultipartError(
                f"request body exceeds the limit of {self.max_bytes} bytes; send "
                "fewer instances per request or raise FETLOCK_DICOMWEB_MAX_UPLOAD_BYTES"
            )
        self._file.write(data[start:end])
        self.parts[-1].size += length

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def spool_parts(
    chunks: AsyncIterator[bytes],
    boundary: str,
    directory: Path,
    *,
    max_bytes: int,
) -> list[SpooledPart]:
    """Read a ``multipart/related`` body into one temporary file per part.

    Raises
    ------
    MultipartError
        The body is malformed, ends before its closing boundary, or is longer
        than `max_bytes`. Files already written stay in `directory`, which the
        caller removes.
    """
    spooler = _Spooler(directory, max_bytes)
    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": spooler.on_part_begin,
            "on_part_data": spooler.on_part_data,
            "on_part_end": spooler.on_part_end,
            "on_header_field": spooler.on_header_field,
            "on_header_value": spooler.on_header_value,
            "on_header_end": spooler.on_header_end,
            "on_headers_finished": spooler.on_headers_finished,
        },
    )
    try:
        async for chunk in chunks:
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise MultipartError(
            f"request body is not valid multipart/related with boundary "
            f"{boundary!r}: {exc}"
        ) from exc
    finally:
        spooler.close()
    if parser.state != MultipartState.END:
        raise MultipartError(
            "request body ended before the closing boundary "
            f"'--{boundary}--'; send the complete multipart body"
        )
    return spooler.parts


# -- writing ----------------------------------------------------------------


def new_boundary() -> str:
    return f"fetlock-{secrets.token_hex(16)}"


@dataclass
class OutgoingPart:
    """A response part: its headers and a lazy source of its bytes."""

    content_type: str
    body: Iterable[bytes]
    location: str | None = None
    content_length: int | None = None


def stream_multipart(parts: Iterable[OutgoingPart], boundary: str) -> Iterator[bytes]:
    """Yield a ``multipart/related`` body part by part (RFC 2046 5.1.1)."""
    opening = b"--" + boundary.encode("ascii")
    for part in parts:
        head = [opening, b"Content-Type: " + part.content_type.encode("ascii")]
        if part.content_length is not None:
            head.append(b"Content-Length: %d" % part.content_length)
        if part.location:
            head.append(b"Content-Location: " + part.location.encode("ascii"))
        yield CRLF.join(head) + CRLF + CRLF
        yield from part.body
        yield CRLF
    yield opening + b"--" + CRLF


def related_content_type(part_type: str, boundary: str, **params: str) -> str:
    """Return ``multipart/related; type="..."; boundary=...`` for a response."""
    extra = "".join(f'; {name}="{value}"' for name, value in params.items())
    return f'multipart/related; type="{part_type}"{extra}; boundary={boundary}'
