"""WADO-RS retrieval from the blob store (PS3.18 10.4).

Instances are sent exactly as stored, because their bytes never change.
The one exception is a client that names Explicit VR Little Endian when the
stored syntax differs: then the instance is decompressed for that response
only. Frames
are cut out of the stored pixel data: the stored compressed bytes when the
client accepts the compressed media type (or ``transfer-syntax=*``), else
decoded to native little-endian values.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels import get_encoder, pack_bits
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.dicomweb.json_model import (
    JsonDataset,
    attribute,
    dataset_to_json,
    merge,
    tag_key,
)
from fetlock.dicomweb.multipart import MediaType
from fetlock.imaging.rendering import (
    PixelDataLocation,
    RenderError,
    decode_frame,
    locate_pixel_data,
)
from fetlock.imaging.study_models import Instance, Series, Study
from fetlock.storage import BlobStore
from fetlock.web.errors import DomainError, NotFound

logger = logging.getLogger(__name__)

AvailableTransferSyntaxUID = 0x00083002

# PS3.18 8.7.3: the single-frame media type of each
# compressed transfer syntax.
FRAME_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
# Earlier names that clients still send for the same media types.
_MEDIA_TYPE_ALIASES = {
    "image/x-jls": "image/jls",
    "image/x-dicom-rle": "image/dicom-rle",
}
_NATIVE_SYNTAXES = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})

# Native frames are re-encoded to JPEG-LS lossless for a client that asks for
# it (PS3.18 8.7.3.5: multipart/related; type="image/jls"): a radiograph
# travels in about 40 % of its size, decoded exactly by the browser viewer.
JPEGLSLossless = "1.2.840.10008.1.2.4.80"
_JPEG_LS_PHOTOMETRIC = frozenset({"MONOCHROME1", "MONOCHROME2", "RGB"})


class NotAcceptable(DomainError):
    """No representation the client accepts can be produced (HTTP 406)."""

    status_code = 406


@dataclass(frozen=True)
class Located:
    """An indexed instance with its series and study."""

    instance: Instance
    series: Series
    study: Study


def find_instances(
    db_session: Session,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[Located]:
    """Return the instances under a study, series or single instance.

    Raises
    ------
    NotFound
        Naming the first UID that matches nothing.
    """
    statement = (
        select(Instance, Series, Study)
        .join(Series, Series.id == Instance.series_id)
        .join(Study, Study.id == Instance.study_id)
        .where(Study.study_instance_uid == study_uid)
        .order_by(Series.series_number.is_(None), Series.series_number, Series.id)
        .order_by(
            Instance.instance_number.is_(None), Instance.instance_number, Instance.id
        )
    )
    if series_uid is not None:
        statement = statement.where(Series.series_instance_uid == series_uid)
    if sop_uid is not None:
        statement = statement.where(Instance.sop_instance_uid == sop_uid)
    rows = [Located(*row) for row in db_session.execute(statement)]
    if rows:
        return rows

    # Say which UID is unknown.
    study = db_session.execute(
        select(Study.id).where(Study.study_instance_uid == study_uid)
    ).scalar_one_or_none()
    if study is None:
        raise NotFound(
            f"no study with (0020,000D) Study Instance UID {study_uid}",
            field="StudyInstanceUID",
            value=study_uid,
        )
    if series_uid is not None and sop_uid is None:
        raise NotFound(
            f"study {study_uid} has no series with (0020,000E) Series Instance "
            f"UID {series_uid}",
            field="SeriesInstanceUID",
            value=series_uid,
        )
    raise NotFound(
        f"no instance with (0008,0018) SOP Instance UID {sop_uid} in series "
        f"{series_uid} of study {study_uid}",
        field="SOPInstanceUID",
        value=sop_uid,
    )


# -- negotiation ------------------------------------------------------------


@dataclass(frozen=True)
class InstanceChoice:
    """How to send instances: as stored, or decompressed to Explicit VR LE."""

    transcode: bool


def choose_instance_representation(
    accept: Sequence[MediaType], stored_syntaxes: set[str]
) -> InstanceChoice:
    """Pick the representation for instance retrieval (PS3.18 8.7.3.5).

    Raises
    ------
    NotAcceptable
        The client accepts neither the stored syntax nor Explicit VR Little
        Endian.
    """
    for media in accept:
        part_type = media.params.get("type", "application/dicom").lower()
        if media.type in ("*/*", "multipart/*"):
            return InstanceChoice(transcode=False)
        if media.type not in ("multipart/related", "application/dicom"):
            continue
        if media.type == "multipart/related" and part_type not in (
            "application/dicom",
            "*/*",
        ):
            continue
        syntax = media.params.get("transfer-syntax", "*")
        if syntax == "*" or stored_syntaxes <= {syntax}:
            return InstanceChoice(transcode=False)
        if syntax == ExplicitVRLittleEndian:
            return InstanceChoice(transcode=True)
    raise NotAcceptable(
        "none of the accepted media types can be returned; accept "
        "'multipart/related; type=\"application/dicom\"; transfer-syntax=*' "
        f"(stored as {', '.join(sorted(stored_syntaxes))}) or "
        f"transfer-syntax={ExplicitVRLittleEndian}",
        field="Accept",
        value=", ".join(m.type for m in accept),
    )


@dataclass(frozen=True)
class FrameChoice:
    """How to send frames: the stored bytes with a media type, or decoded.

    ``transcode`` names the transfer syntax native frames are losslessly
    re-encoded to for this response only; the stored file is not touched.
    """

    stored: bool
    media_type: str
    transcode: str | None = None

    def part_syntax(self, stored_syntax: str) -> str:
        """Transfer syntax of the parts sent."""
        if self.transcode:
            return self.transcode
        return stored_syntax if self.stored else ExplicitVRLittleEndian


def _pixel_header_for_jpeg_ls(
    blobs: BlobStore, blob_key: str
) -> tuple[Dataset, PixelDataLocation | None] | None:
    """Read the header and Pixel Data location; None if JPEG-LS is impossible."""
    if not get_encoder(JPEGLSLossless).is_available:
        return None
    with _open_local(blobs, blob_key) as f:
        try:
            return locate_pixel_data(f)
        except RenderError:
            return None


def can_transcode_to_jpeg_ls(
    blobs: BlobStore, blob_key: str, stored_syntax: str
) -> bool:
    """True if the stored frames are native and JPEG-LS can hold them losslessly."""
    if stored_syntax not in _NATIVE_SYNTAXES:
        return False
    found = _pixel_header_for_jpeg_ls(blobs, blob_key)
    if found is None:
        return False
    header, location = found
    bits = int(header.get("BitsAllocated") or 0)
    stored_bits = int(header.get("BitsStored") or bits)
    return (
        location is not None
        and not location.is_encapsulated
        and bits in (8, 16)
        and 2 <= stored_bits <= 16
        and str(header.get("PhotometricInterpretation", "")) in _JPEG_LS_PHOTOMETRIC
        and int(header.get("PlanarConfiguration") or 0) == 0
    )


# Lossless compressed forms whose grey frames the viewer gets faster as a
# kept JPEG-LS copy: in headless Chromium, OpenJPEG compiled to WebAssembly
# took about 0.7 s for a 1870 x 1870 frame that CharLS decoded in 0.17 s.
_COPIED_LOSSLESS_SYNTAXES = frozenset({JPEG2000Lossless, HTJ2KLossless})
_GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})


def can_keep_jpeg_ls_copy(blobs: BlobStore, blob_key: str, stored_syntax: str) -> bool:
    """True if a JPEG-LS copy of the instance's frames can be made and kept.

    Native frames qualify as for ``can_transcode_to_jpeg_ls``. Grey frames
    stored as lossless JPEG 2000 qualify too: their copy is made in the
    background (``viewer_frames`` job), because decoding them on the server
    takes too long for a request.
    """
    if stored_syntax in _NATIVE_SYNTAXES:
        return can_transcode_to_jpeg_ls(blobs, blob_key, stored_syntax)
    if stored_syntax not in _COPIED_LOSSLESS_SYNTAXES:
        return False
    found = _pixel_header_for_jpeg_ls(blobs, blob_key)
    if found is None:
        return False
    header, location = found
    return (
        location is not None
        and int(header.get("SamplesPerPixel") or 1) == 1
        and str(header.get("PhotometricInterpretation", "")) in _GREY
        and int(header.get("BitsAllocated") or 0) in (8, 16)
    )


def has_jpeg_ls_copies(blobs: BlobStore, blob_key: str, numbers: Sequence[int]) -> bool:
    """True if every frame in ``numbers`` has a kept JPEG-LS copy."""
    return all(blobs.exists(jpeg_ls_frame_key(blob_key, n)) for n in numbers)


def jpeg_ls_frame_key(blob_key: str, number: int) -> str:
    """Blob key of the JPEG-LS copy of a frame (one-based ``number``) of an instance."""
    return f"derived/jpeg-ls/{blob_key.removesuffix('.dcm')}/{number}.jls"


def jpeg_ls_frame(blobs: BlobStore, blob_key: str, number: int) -> bytes:
    """Return frame ``number`` (one-based) encoded as JPEG-LS lossless.

    The encoded frame is kept in the blob store, since every viewer of the
    image requests the same bytes and encoding costs CPU time (CharLS took
    about 85 ms for a 1870 x 1870 12-bit radiograph on one core here).
    Instances never change, so a kept copy never goes stale. A copy that
    cannot be read or is damaged is encoded again and replaced, and one that
    cannot be kept (a full disk) is logged; the frame is returned either way.
    """
    key = jpeg_ls_frame_key(blob_key, number)
    copy = _read_copy(blobs, key)
    if copy is not None:
        return copy
    encoded, _written = _encode_and_keep(blobs, blob_key, number, key)
    return encoded


def keep_jpeg_ls_frame(blobs: BlobStore, blob_key: str, number: int) -> bool:
    """Encode and keep a frame's JPEG-LS copy; True if the copy was written.

    Raises what the decoder or encoder raises for pixel data that does not
    match its header.
    """
    key = jpeg_ls_frame_key(blob_key, number)
    return _encode_and_keep(blobs, blob_key, number, key)[1]


# A complete JPEG-LS codestream starts with SOI and ends with EOI (ITU-T T.87).
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


def _read_copy(blobs: BlobStore, key: str) -> bytes | None:
    try:
        with blobs.open(key) as stream:
            data = stream.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning(
            "could not read the JPEG-LS copy %s (%s); encoding the frame again",
            key,
            exc,
        )
        return None
    if not (data.startswith(_JPEG_SOI) and data.endswith(_JPEG_EOI)):
        logger.warning(
            "the JPEG-LS copy %s is damaged (%d bytes, not a complete codestream); "
            "encoding the frame again",
            key,
            len(data),
        )
        return None
    return data


def _encode_and_keep(
    blobs: BlobStore, blob_key: str, number: int, key: str
) -> tuple[bytes, bool]:
    with _open_local(blobs, blob_key) as f:
        header, _ = locate_pixel_data(f)
    (data,) = iter_frames(blobs, blob_key, [number], stored=False)
    encoded = _encode_jpeg_ls(data, header)
    try:
        blobs.put_bytes(key, encoded)
    except OSError as exc:
        logger.warning("could not keep the JPEG-LS copy %s: %s", key, exc)
        return encoded, False
    return encoded, True


def _encode_jpeg_ls(data: bytes, header: Dataset) -> bytes:
    encoded = get_encoder(JPEGLSLossless).encode(
        data,
        rows=int(header.Rows),
        columns=int(header.Columns),
        samples_per_pixel=int(header.get("SamplesPerPixel") or 1),
        bits_allocated=int(header.BitsAllocated),
        bits_stored=int(header.get("BitsStored") or header.BitsAllocated),
        pixel_representation=int(header.get("PixelRepresentation") or 0),
        photometric_interpretation=str(header.PhotometricInterpretation),
        number_of_frames=1,
        planar_configuration=0,
    )
    return bytes(encoded)


def choose_frame_representation(
    accept: Sequence[MediaType], stored_syntax: str, *, transcodable: bool = False
) -> FrameChoice:
    """Pick the frame representation (PS3.18 8.7.3.3 and 8.7.4).

    ``transcodable`` says the native frames can be re-encoded to JPEG-LS
    lossless (``can_transcode_to_jpeg_ls``) for a client that asks for it.

    Raises
    ------
    NotAcceptable
        The client accepts neither the stored compressed type nor
        uncompressed ``application/octet-stream``.
    """
    compressed_type = FRAME_MEDIA_TYPES.get(stored_syntax)
    for media in accept:
        if media.type in ("*/*", "multipart/*"):
            return FrameChoice(stored=False, media_type="application/octet-stream")
        if media.type != "multipart/related":
            continue
        part_type = media.params.get("type", "application/octet-stream").lower()
        part_type = _MEDIA_TYPE_ALIASES.get(part_type, part_type)
        syntax = media.params.get("transfer-syntax")
        if part_type in ("*/*", "application/*"):
            # PS3.18 8.7.3: uncompressed octet-stream is the default for frames.
            return FrameChoice(stored=False, media_type="application/octet-stream")
        if part_type == "application/octet-stream":
            if syntax == "*" or (syntax == stored_syntax and compressed_type is None):
                return FrameChoice(stored=True, media_type="application/octet-stream")
            if syntax in (None, ExplicitVRLittleEndian):
                return FrameChoice(stored=False, media_type="application/octet-stream")
            continue
        if compressed_type is not None and part_type == compressed_type:
            if syntax in (None, "*", stored_syntax):
                return FrameChoice(stored=True, media_type=compressed_type)
        if (
            transcodable
            and part_type == "image/jls"
            and syntax in (None, "*", JPEGLSLossless)
        ):
            return FrameChoice(
                stored=False, media_type="image/jls", transcode=JPEGLSLossless
            )
    offered = (
        f"'multipart/related; type=\"{compressed_type}\"' or "
        if compressed_type
        else ""
    )
    raise NotAcceptable(
        "none of the accepted media types can be returned for these frames; "
        f"accept {offered}'multipart/related; type=\"application/octet-stream\"' "
        f"(the pixel data is stored as {stored_syntax})",
        field="Accept",
        value=", ".join(m.type for m in accept),
    )


def part_content_type(media_type: str, transfer_syntax: str) -> str:
    return f"{media_type}; transfer-syntax={transfer_syntax}"


# -- instances --------------------------------------------------------------


def transcode_to_explicit_little_endian(blobs: BlobStore, blob_key: str) -> bytes:
    """Return the instance decompressed to Explicit VR Little Endian.

    Used only when a client names that syntax; the stored file is unchanged.
    """
    with blobs.open(blob_key) as stream:
        ds = dcmread(stream)
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    try:
        if syntax.is_compressed:
            ds.decompress()
    except Exception as exc:
        raise NotAcceptable(
            f"the instance stored as {syntax.name} cannot be decompressed for "
            f"transfer-syntax={ExplicitVRLittleEndian} ({exc}); accept "
            "transfer-syntax=* to get it as stored",
            field="Accept",
            value=str(ExplicitVRLittleEndian),
        ) from exc
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return out.getvalue()


# -- frames -----------------------------------------------------------------


def parse_frame_list(text: str, number_of_frames: int | None) -> list[int]:
    """Return one-based frame numbers from ``1,3,5`` (PS3.18 8.3.1.2.4)."""
    frames: list[int] = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece.isdigit() or int(piece) < 1:
            raise DomainError(
                f"frame list {text!r} is invalid: {piece!r} is not a frame number; "
                "use one-based numbers separated by commas, e.g. 1,2,3",
                field="frames",
                value=text,
            )
        frames.append(int(piece))
    total = number_of_frames or 1
    beyond = [n for n in frames if n > total]
    if beyond:
        raise NotFound(
            f"frame {beyond[0]} does not exist; the instance has {total} frame(s), "
            f"numbered 1 to {total}",
            field="frames",
            value=text,
        )
    return frames


def _open_local(blobs: BlobStore, blob_key: str) -> BinaryIO:
    path = blobs.local_path(blob_key)
    return open(path, "rb") if path is not None else blobs.open(blob_key)  # noqa: SIM115


def iter_frames(
    blobs: BlobStore,
    blob_key: str,
    numbers: Sequence[int],
    *,
    stored: bool,
    transcode: str | None = None,
) -> Iterator[bytes]:
    """Yield each requested frame's bytes (one-based numbers), lazily.

    ``stored`` yields the frame as kept in the file (compressed bytes for
    encapsulated syntaxes); otherwise native little-endian values, or with
    ``transcode`` (JPEG-LS lossless only) those values re-encoded.
    """
    if transcode is not None:
        if transcode != JPEGLSLossless:
            raise ValueError(f"transcoding to {transcode} is not supported")
        for number in numbers:
            yield jpeg_ls_frame(blobs, blob_key, number)
        return
    with _open_local(blobs, blob_key) as f:
        try:
            header, location = locate_pixel_data(f)
        except RenderError:
            header, location = Dataset(), None
        if location is None:
            # Deflated or no pixel data: decode from the whole dataset.
            yield from _decoded_frames(blobs, blob_key, numbers)
            return
        frames = int(header.get("NumberOfFrames") or 1)
        for number in numbers:
            yield _one_frame(
                f, header, location, number - 1, frames, stored, blobs, blob_key
            )


def _one_frame(
    f: BinaryIO,
    header: Dataset,
    location: PixelDataLocation,
    index: int,
    frames: int,
    stored: bool,
    blobs: BlobStore,
    blob_key: str,
) -> bytes:
    if location.is_encapsulated:
        if stored:
            f.seek(location.offset)
            return get_frame(f, index, number_of_frames=frames)
        return _decode_one(blobs, blob_key, index, header)

    syntax = location.transfer_syntax
    bits = int(header.get("BitsAllocated") or 8)
    if syntax in _NATIVE_SYNTAXES and bits % 8 == 0:
        rows = int(header.get("Rows") or 0)
        columns = int(header.get("Columns") or 0)
        samples = int(header.get("SamplesPerPixel") or 1)
        length = rows * columns * samples * bits // 8
        f.seek(location.offset + index * length)
        return f.read(length)
    return _decode_one(blobs, blob_key, index, header)


def _decode_one(blobs: BlobStore, blob_key: str, index: int, header: Dataset) -> bytes:
    with _open_local(blobs, blob_key) as f:
        array = decode_frame(f, index)
    if int(header.get("BitsAllocated") or 8) == 1:
        return pack_bits(array)
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _decoded_frames(
    blobs: BlobStore, blob_key: str, numbers: Sequence[int]
) -> Iterator[bytes]:
    for number in numbers:
        with _open_local(blobs, blob_key) as f:
            array: np.ndarray = decode_frame(f, number - 1)
        yield array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


# -- metadata ---------------------------------------------------------------


def instance_metadata(
    blobs: BlobStore, located: Located, instance_url: str
) -> JsonDataset:
    """Return the instance's attributes as DICOM JSON, bulk data as URIs.

    Pixel data gets a BulkDataURI naming the frames resource (every frame),
    other large binary values one naming the bulkdata resource.
    """
    with _open_local(blobs, located.instance.blob_key) as f:
        try:
            header, location = locate_pixel_data(f)
        except RenderError:
            f.seek(0)
            header = dcmread(f, stop_before_pixels=True, force=True)
            location = None

    def bulk_uri(tag: int) -> str:
        return f"{instance_url}/bulkdata/{tag_key(tag)}"

    values = dataset_to_json(header, bulk_data_uri=bulk_uri)
    extra: list[JsonDataset] = [
        attribute(
            AvailableTransferSyntaxUID, located.instance.transfer_syntax_uid, "UI"
        )
    ]
    if location is not None:
        frames = int(header.get("NumberOfFrames") or 1)
        frame_list = ",".join(str(n) for n in range(1, frames + 1))
        extra.append(
            {
                tag_key(location.tag): {
                    "vr": location.VR,
                    "BulkDataURI": f"{instance_url}/frames/{frame_list}",
                }
            }
        )
    return merge(values, *extra)


def bulk_value(blobs: BlobStore, blob_key: str, tag: int) -> bytes | None:
    """Return the value of a top-level element, or None if absent."""
    with _open_local(blobs, blob_key) as f:
        ds = dcmread(f, force=True)
    element = ds.get(tag)
    if element is None or element.value is None:
        return None
    value = element.value
    return bytes(value) if isinstance(value, bytes | bytearray) else None
