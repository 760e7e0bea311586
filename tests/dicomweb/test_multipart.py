"""multipart/related reading and writing, media types, and the JSON model."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from tests.dicomweb.conftest import split_multipart

from fetlock.dicomweb.json_model import (
    BULK_DATA_THRESHOLD,
    AttributeNameError,
    attribute,
    dataset_to_json,
    parse_attribute,
)
from fetlock.dicomweb.multipart import (
    MultipartError,
    OutgoingPart,
    parse_accept,
    parse_media_type,
    spool_parts,
    stream_multipart,
)

# A payload with CRLFs and near-boundaries (never the delimiter itself).
TRICKY = b"\r\n--frontie\r\nnot a boundary\r\n--front"


async def chunked(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def spool(body: bytes, directory: Path, size: int, max_bytes: int = 10**7):  # type: ignore[no-untyped-def]
    return asyncio.run(
        spool_parts(chunked(body, size), "frontier", directory, max_bytes=max_bytes)
    )


def written(*payloads: bytes) -> bytes:
    parts = [OutgoingPart("application/dicom", [p[:5], p[5:]]) for p in payloads]
    return b"".join(stream_multipart(parts, "frontier"))


class TestSpooling:
    @pytest.mark.parametrize("chunk_size", [1, 7, 65536])
    def test_parts_survive_any_chunking(self, tmp_path: Path, chunk_size: int) -> None:
        big = bytes(range(256)) * 400
        parts = spool(written(TRICKY, big), tmp_path, chunk_size)

        assert [p.path.read_bytes() for p in parts] == [TRICKY, big]
        assert [p.size for p in parts] == [len(TRICKY), len(big)]
        assert parts[0].content_type is not None
        assert parts[0].content_type.type == "application/dicom"

    def test_truncated_body(self, tmp_path: Path) -> None:
        with pytest.raises(MultipartError, match="closing boundary '--frontier--'"):
            spool(written(TRICKY)[:-12], tmp_path, 100)

    def test_garbage_body(self, tmp_path: Path) -> None:
        with pytest.raises(MultipartError, match="not valid multipart/related"):
            spool(b"hello there, no boundary here", tmp_path, 100)

    def test_size_limit(self, tmp_path: Path) -> None:
        with pytest.raises(MultipartError, match="limit of 100 bytes"):
            spool(written(b"x" * 500), tmp_path, 64, max_bytes=100)

    def test_written_body_splits_independently(self) -> None:
        body = written(TRICKY, b"second")
        parts = split_multipart('multipart/related; boundary="frontier"', body)
        assert [payload for _, payload in parts] == [TRICKY, b"second"]


class TestMediaTypes:
    def test_quoted_and_unquoted_parameters(self) -> None:
        quoted = parse_media_type(
            'multipart/related; type="application/dicom"; boundary="a;b"'
        )
        bare = parse_media_type("Multipart/Related;TYPE=application/dicom;boundary=x")

        assert quoted.type == bare.type == "multipart/related"
        assert quoted.params == {"type": "application/dicom", "boundary": "a;b"}
        assert bare.params["type"] == "application/dicom"

    def test_accept_is_ordered_by_quality(self) -> None:
        ranges = parse_accept(
            'image/png;q=0.5, multipart/related; type="image/jp2", image/gif;q=0'
        )
        assert [r.type for r in ranges] == ["multipart/related", "image/png"]
        assert ranges[0].params == {"type": "image/jp2"}

    def test_missing_accept_is_anything(self) -> None:
        assert [r.type for r in parse_accept(None)] == ["*/*"]


class TestJsonModel:
    def test_attribute_names(self) -> None:
        assert parse_attribute("PatientID") == 0x00100020
        assert parse_attribute("0020000d") == 0x0020000D
        with pytest.raises(AttributeNameError, match="'Hoof' is not a DICOM attribute"):
            parse_attribute("Hoof")

    def test_value_representations(self) -> None:
        assert attribute(0x00100010, "Smith^Dobbin") == {
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Smith^Dobbin"}]}
        }
        assert attribute(0x00201208, "5") == {"00201208": {"vr": "IS", "Value": [5]}}
        assert attribute(0x00080020, None) == {"00080020": {"vr": "DA"}}

    def test_dataset_bulk_data_and_character_set(self) -> None:
        path = get_testdata_file("OBXXXX1A.dcm")
        assert path is not None
        ds = dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 100"

        out = dataset_to_json(ds, bulk_data_uri=lambda tag: f"bulk/{tag:08X}")

        assert out["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulk/7FE00010"}
        assert out["00080005"]["Value"] == ["ISO_IR 192"]
        assert "InlineBinary" in out["00281201"]  # 512 bytes: inline
        assert list(out) == sorted(out)

    def test_palette_tables_inline_any_size(self) -> None:
        # A real ultrasound image with segmented 16-bit palette tables of
        # 87,818 bytes each, far over the bulk data threshold.
        path = get_testdata_file("gdcm-US-ALOKA-16.dcm")
        assert path is not None
        ds = dcmread(path)
        ds.ICCProfile = bytes(range(256)) * 8  # another binary value, 2 KiB

        out = dataset_to_json(ds, bulk_data_uri=lambda tag: f"bulk/{tag:08X}")

        for tag, keyword in (
            ("00281221", "SegmentedRedPaletteColorLookupTableData"),
            ("00281222", "SegmentedGreenPaletteColorLookupTableData"),
            ("00281223", "SegmentedBluePaletteColorLookupTableData"),
        ):
            value = ds[keyword].value
            assert len(value) > BULK_DATA_THRESHOLD
            assert "BulkDataURI" not in out[tag]
            assert base64.b64decode(out[tag]["InlineBinary"]) == value
        assert out["00282000"] == {"vr": "OB", "BulkDataURI": "bulk/00282000"}
