"""Reading a received DICOM file's structure without decoding its values.

Ingest needs three facts that pydicom does not give directly. It needs the
offset where the data set starts (after the File Meta Information), and
whether the file is complete: pydicom reads a truncated file without complaint
and drops what is missing. It also needs the encoding of a bare data set that
arrived without File Meta. This
module walks the encoded elements (PS3.5 7.1, 7.5, A.4) and checks that every
declared length fits in the file, without loading any value.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
)
# Bytes read at a time while walking element headers.
WINDOW_SIZE = 64 * 1024
# Maximum length of a value ``scan`` returns; every indexed attribute is far
# shorter.
MAX_COLLECTED_LENGTH = 4096
# Deepest sequence nesting accepted before the file is called malformed.
MAX_DEPTH = 32
_CHUNK = 1 << 20


class MalformedFile(ValueError):
    """The bytes are not a complete, well-formed DICOM file or data set."""


@dataclass(frozen=True)
class Layout:
    """Offsets and identity of a file's parts; ``dataset_offset`` is 0 for a
    bare data set."""

    has_meta: bool
    dataset_offset: int
    transfer_syntax_uid: UID | None
    size: int
    media_storage_sop_class_uid: str | None = None
    media_storage_sop_instance_uid: str | None = None


def read_layout(fp: BinaryIO, size: int) -> Layout:
    """Find the File Meta Information and the start of the data set.

    The stream is left at an unspecified position.
    """
    fp.seek(0)
    head = fp.read(PREAMBLE_LENGTH + len(MAGIC))
    if len(head) < PREAMBLE_LENGTH + len(MAGIC) or head[PREAMBLE_LENGTH:] != MAGIC:
        return Layout(
            has_meta=False, dataset_offset=0, transfer_syntax_uid=None, size=size
        )

    # File Meta Information: explicit VR little endian, group 0002 (PS3.10 7.1).
    values: dict[int, str] = {}
    position = PREAMBLE_LENGTH + len(MAGIC)
    while True:
        header = fp.read(8)
        if len(header) < 8:
            break
        group, element = struct.unpack("<HH", header[:4])
        if group != 0x0002:
            break
        vr = header[4:6]
        if vr in LONG_VRS:
            extra = fp.read(4)
            if len(extra) < 4:
                raise MalformedFile(f"File Meta Information ends at byte {position}")
            length = struct.unpack("<L", extra)[0]
            value_offset = position + 12
        else:
            length = struct.unpack("<H", header[6:8])[0]
            value_offset = position + 8
        if length == UNDEFINED_LENGTH or value_offset + length > size:
            raise MalformedFile(
                f"File Meta element (0002,{element:04X}) at byte {position} "
                f"declares {length} bytes, past the end of the file ({size} bytes)"
            )
        value = fp.read(length)
        if element in (0x0002, 0x0003, 0x0010):
            values[element] = value.rstrip(b"\x00 ").decode("ascii", "replace")
        position = value_offset + length
    if not values.get(0x0010):
        raise MalformedFile(
            "File Meta Information has no (0002,0010) Transfer Syntax UID"
        )
    return Layout(
        has_meta=True,
        dataset_offset=position,
        transfer_syntax_uid=UID(values[0x0010]),
        size=size,
        media_storage_sop_class_uid=values.get(0x0002),
        media_storage_sop_instance_uid=values.get(0x0003),
    )


def check_complete(fp: BinaryIO, layout: Layout, transfer_syntax: UID) -> None:
    """Raise MalformedFile unless every element of the data set is whole."""
    scan(fp, layout, transfer_syntax, frozenset())


def scan(
    fp: BinaryIO, layout: Layout, transfer_syntax: UID, wanted: frozenset[int]
) -> dict[int, RawDataElement | None] | None:
    """Check the data set is whole and return its top-level ``wanted`` elements.

    Each wanted element is returned undecoded, as pydicom's reader would hold
    it, so a ``Dataset`` built from them decodes values (character sets
    included) exactly as ``dcmread`` does. A wanted sequence, or a value
    longer than ``MAX_COLLECTED_LENGTH``, maps to None: the caller reads the
    file with pydicom instead. A deflated data set is checked but not
    scanned (None), since its elements exist only after inflating.
    """
    fp.seek(layout.dataset_offset)
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        _check_deflated(fp)
        return None
    implicit = transfer_syntax == ImplicitVRLittleEndian
    little = transfer_syntax != ExplicitVRBigEndian
    walker = _Walker(fp, layout.size, implicit=implicit, little=little, wanted=wanted)
    walker.elements(layout.dataset_offset, layout.size, depth=0)
    return walker.collected


def _check_deflated(fp: BinaryIO) -> None:
    # PS3.5 A.5: the data set is one raw deflate stream, which must end.
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        while chunk := fp.read(_CHUNK):
            inflater.decompress(chunk, _CHUNK)
            while inflater.unconsumed_tail:
                inflater.decompress(inflater.unconsumed_tail, _CHUNK)
            if inflater.eof:
                return
    except zlib.error as exc:
        raise MalformedFile(f"the deflated data set is corrupt: {exc}") from exc
    if not inflater.eof:
        raise MalformedFile("the deflated data set is truncated")


class _Walker:
    """Walks elements and items by their declared lengths, values unread."""

    def __init__(
        self,
        fp: BinaryIO,
        size: int,
        *,
        implicit: bool,
        little: bool,
        wanted: frozenset[int] = frozenset(),
    ):
        self.fp = fp
        self.size = size
        self.implicit = implicit
        self.little = little
        self.endian = "<" if little else ">"
        self.tag_format = struct.Struct(self.endian + "HH")
        self.short_format = struct.Struct(self.endian + "H")
        self.long_format = struct.Struct(self.endian + "L")
        self.wanted = wanted
        self.collected: dict[int, RawDataElement | None] = {}
        # A window of the file, so that each element header is not a read.
        self.window = b""
        self.window_start = 0

    def _bytes(self, position: int, length: int) -> bytes:
        """``length`` bytes at ``position`` (fewer at the end of the file)."""
        offset = position - self.window_start
        if offset < 0 or offset + length > len(self.window):
            self.fp.seek(position)
            self.window = self.fp.read(max(length, WINDOW_SIZE))
            self.window_start = position
            offset = 0
        return self.window[offset : offset + length]

    def _collect(self, tag: int, length: int, vr: bytes | None, value_at: int) -> None:
        if vr == b"SQ" or length == UNDEFINED_LENGTH or length > MAX_COLLECTED_LENGTH:
            self.collected[tag] = None
            return
        value = self._bytes(value_at, length)
        if len(value) < length:
            return  # the completeness check reports the truncation
        self.collected[tag] = RawDataElement(
            BaseTag(tag),
            vr.decode("ascii") if vr else None,
            length,
            value,
            value_at,
            self.implicit,
            self.little,
        )

    def _tag_and_length(self, position: int) -> tuple[int, int, bytes | None, int]:
        """Return tag, length, VR and the offset of the value."""
        header = self._bytes(position, 12)
        if len(header) < 8:
            raise MalformedFile(
                f"the data set is truncated: an element header at byte {position} "
                f"is cut off by the end of the file ({self.size} bytes)"
            )
        group, element = self.tag_format.unpack_from(header)
        tag = (group << 16) | element
        if group == 0xFFFE or self.implicit:
            return tag, self.long_format.unpack_from(header, 4)[0], None, position + 8
        vr = header[4:6]
        if vr in LONG_VRS or not vr.isalpha():
            if len(header) < 12:
                raise MalformedFile(
                    f"the data set is truncated at byte {position + 8}, inside the "
                    f"header of element {_tag(tag)}"
                )
            return tag, self.long_format.unpack_from(header, 8)[0], vr, position + 12
        return tag, self.short_format.unpack_from(header, 6)[0], vr, position + 8

    def elements(self, position: int, end: int, depth: int) -> int:
        """Walk elements from ``position`` up to ``end`` or an item delimiter.

        Returns the position after the last element (after the delimiter).
        The header of an element whose bytes are already in the window is
        decoded inline: this loop runs for every element of every object.
        """
        if depth > MAX_DEPTH:
            raise MalformedFile(f"sequences nest deeper than {MAX_DEPTH} levels")
        unpack_tag = self.tag_format.unpack_from
        unpack_long = self.long_format.unpack_from
        unpack_short = self.short_format.unpack_from
        implicit = self.implicit
        wanted = self.wanted if depth == 0 else frozenset()
        size = self.size
        while position < end:
            offset = position - self.window_start
            window = self.window
            if 0 <= offset and offset + 12 <= len(window):
                group, element = unpack_tag(window, offset)
                tag = (group << 16) | element
                if group == 0xFFFE or implicit:
                    length, vr, value_at = (
                        unpack_long(window, offset + 4)[0],
                        None,
                        position + 8,
                    )
                else:
                    vr = window[offset + 4 : offset + 6]
                    if vr in LONG_VRS or not vr.isalpha():
                        length, value_at = (
                            unpack_long(window, offset + 8)[0],
                            position + 12,
                        )
                    else:
                        length, value_at = (
                            unpack_short(window, offset + 6)[0],
                            position + 8,
                        )
            else:
                tag, length, vr, value_at = self._tag_and_length(position)
            if tag == ITEM_DELIMITER:
                return value_at
            if tag in wanted:
                self._collect(tag, length, vr, value_at)
            if length == UNDEFINED_LENGTH:
                position = self.items(value_at, tag, depth + 1)
                continue
            position = value_at + length
            if position > size:
                raise MalformedFile(
                    f"the data set is truncated: element {_tag(tag)} at byte "
                    f"{value_at} declares {length} bytes but the file ends at byte "
                    f"{size}"
                )
        if position > end:
            raise MalformedFile(
                f"an element overruns its enclosing item, which ends at byte {end}"
            )
        return position

    def items(self, position: int, parent: int, depth: int) -> int:
        """Walk the items of an undefined-length value up to its delimiter."""
        while True:
            tag, length, _vr, value_at = self._tag_and_length(position)
            if tag == SEQUENCE_DELIMITER:
                return value_at
            if tag != ITEM:
                raise MalformedFile(
                    f"element {_tag(parent)} has undefined length but contains "
                    f"{_tag(tag)} at byte {position} where an item was expected"
                )
            if length == UNDEFINED_LENGTH:
                position = self.elements(value_at, self.size, depth)
                continue
            position = value_at + length
            if position > self.size:
                raise MalformedFile(
                    f"the data set is truncated: an item of {_tag(parent)} at byte "
                    f"{value_at} declares {length} bytes but the file ends at byte "
                    f"{self.size}"
                )


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
