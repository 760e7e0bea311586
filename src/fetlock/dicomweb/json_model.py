"""The DICOM JSON Model (PS3.18 Annex F) for QIDO-RS, WADO-RS and STOW-RS.

Attributes are keyed by their eight-digit upper-case hex tag; each value is
``{"vr": ..., "Value": [...]}`` with Person Names as ``{"Alphabetic": ...}``
objects. Large binary values are replaced by a ``BulkDataURI``, except the
palette colour lookup tables (see INLINE_TAGS).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

JsonDataset = dict[str, dict[str, Any]]

UTF8_CHARACTER_SET = "ISO_IR 192"
"""JSON text is Unicode, so every JSON dataset declares UTF-8 in (0008,0005)."""

BULK_DATA_THRESHOLD = 1024
"""Top-level binary values longer than this many bytes become a BulkDataURI."""

INLINE_TAGS = frozenset(
    {
        # (0028,1201-1204) Red, Green, Blue, Alpha Palette Color Lookup Table Data
        0x00281201,
        0x00281202,
        0x00281203,
        0x00281204,
        # (0028,1221-1224) Segmented Red, Green, Blue, Alpha Palette Color
        # Lookup Table Data
        0x00281221,
        0x00281222,
        0x00281223,
        0x00281224,
    }
)
"""Binary values kept inline whatever their size: the palette colour tables.

No frame of a PALETTE COLOR image can be drawn without them, so a viewer
needs them with the metadata. Fetlock's viewer passes them from there to
Cornerstone's WADO-RS loader, which does not follow a BulkDataURI for them
(as of @cornerstonejs/dicom-image-loader 4.22). A viewer that did would need
another request per instance before the first frame, and another stored
response to open the study offline. A plain table is 128 KiB at most
(65,536 entries of 16 bits).
"""

_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


class AttributeNameError(ValueError):
    """A query or include field names no DICOM attribute."""


def tag_key(tag: int) -> str:
    """Return the JSON key of `tag`, e.g. ``0x00100020`` -> ``"00100020"``."""
    return f"{tag:08X}"


def describe(tag: int) -> str:
    """Return "(gggg,eeee) Keyword" for messages."""
    keyword = keyword_for_tag(tag)
    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return f"{text} {keyword}" if keyword else text


def parse_attribute(name: str) -> int:
    """Return the tag named by a keyword (``PatientID``) or hex (``00100020``).

    Raises
    ------
    AttributeNameError
        `name` is neither a dictionary keyword nor eight hex digits. Nested
        paths (``a.b``) are not supported.
    """
    text = name.strip()
    if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
        return int(text, 16)
    tag = tag_for_keyword(text)
    if tag is None:
        raise AttributeNameError(
            f"{name!r} is not a DICOM attribute; use a keyword such as "
            "'PatientID' or eight hex digits such as '00100020'"
        )
    return int(tag)


def vr_of(tag: int) -> str:
    """Return the dictionary VR of `tag` (``UN`` if the tag is unknown)."""
    try:
        vr = str(dictionary_VR(Tag(tag)))
    except KeyError:
        return "UN"
    # Ambiguous VRs such as "US or SS" resolve to the first choice.
    return vr.split(" ")[0]


def attribute(tag: int, value: object = None, vr: str | None = None) -> JsonDataset:
    """Return a one-attribute JSON dataset; None or ``""`` gives no Value."""
    vr = vr or vr_of(tag)
    entry: dict[str, Any] = {"vr": vr}
    values: list[Any]
    if value is None or value == "" or value == []:
        return {tag_key(tag): entry}
    values = list(value) if isinstance(value, list | tuple) else [value]
    if vr == "PN":
        values = [{"Alphabetic": str(v)} for v in values]
    elif vr in ("IS", "SL", "SS", "UL", "US", "SV", "UV"):
        values = [int(v) for v in values]
    elif vr in ("DS", "FL", "FD"):
        values = [float(v) for v in values]
    elif vr != "SQ":
        values = [str(v) for v in values]
    entry["Value"] = values
    return {tag_key(tag): entry}


def merge(*parts: JsonDataset) -> JsonDataset:
    """Return one JSON dataset from several, keys in ascending tag order."""
    merged: JsonDataset = {}
    for part in parts:
        merged.update(part)
    return dict(sorted(merged.items()))


def dataset_to_json(
    ds: Dataset,
    *,
    bulk_data_uri: Callable[[int], str] | None = None,
    threshold: int = BULK_DATA_THRESHOLD,
) -> JsonDataset:
    """Return `ds` in the DICOM JSON Model, with bulk data as URIs.

    Top-level binary values longer than `threshold` and the pixel data
    elements are given as ``BulkDataURI`` from `bulk_data_uri(tag)`; when
    `bulk_data_uri` is None they are left out. The palette colour tables
    (INLINE_TAGS) stay inline whatever their size. Nested binary values are
    kept inline: they are small in practice (ICC profiles, LUTs), and a URI
    for a nested value would need a path syntax the routes do not offer.
    (0008,0005) Specific Character Set is given as UTF-8, because JSON
    strings are Unicode whatever the file used.
    """
    out: JsonDataset = {}
    for element in ds:
        tag = int(element.tag)
        if element.tag.group == 0x0002 or tag == 0x00080005:
            continue
        if element.VR in _BINARY_VRS and (
            tag in _PIXEL_TAGS
            or (tag not in INLINE_TAGS and _value_length(element) > threshold)
        ):
            if bulk_data_uri is not None:
                out[tag_key(tag)] = {
                    "vr": element.VR,
                    "BulkDataURI": bulk_data_uri(tag),
                }
            continue
        out[tag_key(tag)] = _element_to_json(element)
    out.update(attribute(0x00080005, UTF8_CHARACTER_SET, "CS"))
    return dict(sorted(out.items()))


def _value_length(element: DataElement) -> int:
    value = element.value
    if isinstance(value, bytes | bytearray):
        return len(value)
    return 0


def _element_to_json(element: DataElement) -> dict[str, Any]:
    # Inline everything below the top level (see dataset_to_json).
    return element.to_json_dict(
        bulk_data_element_handler=None, bulk_data_threshold=2**62
    )


def encode(datasets: Iterable[JsonDataset] | JsonDataset) -> bytes:
    """Serialise a JSON dataset or a list of them as compact UTF-8 JSON."""
    payload = datasets if isinstance(datasets, dict) else list(datasets)
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )
