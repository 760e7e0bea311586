"""Store, index and link one received DICOM object.

Every way in (C-STORE, STOW-RS, ``fetlock import``) calls ``store_instance``.
It keeps the object's bytes exactly as received and indexes it, in this order:

1. Stage: copy the bytes into the blob store's staging area (fsynced) and hash
   them. A C-STORE temporary file on the same filesystem is adopted, not
   copied.
2. Check: the file must be complete and carry the four UIDs that key it.
3. Publish: link the staged file under ``dicom/<study>/<series>/<sop>.dcm``,
   never replacing a blob already there.
4. Index and link: one transaction adds the study (linked to its order by
   (0008,0050) Accession Number, then (0020,000D) Study Instance UID, or put
   in the reconciliation queue), the series, the instance and the jobs that
   follow (thumbnail, order check).

A crash before step 4 commits leaves at most an unindexed blob; the sender's
retry finds it identical and indexes it. The same object sent twice is stored
once and both sends succeed. A different object with a SOP Instance UID that
is already stored is refused and its bytes kept in quarantine.
"""

from __future__ import annotations

import datetime as dt
import enum
import errno
import io
import logging
import os
import re
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filewriter import write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.db.base import utcnow
from fetlock.db.session import Database
from fetlock.imaging.dicomfile import (
    MAGIC,
    PREAMBLE_LENGTH,
    Layout,
    MalformedFile,
    read_layout,
    scan,
)
from fetlock.imaging.study_models import (
    Instance as InstanceRow,
)
from fetlock.imaging.study_models import (
    QuarantinedObject,
    Series,
    Study,
)
from fetlock.jobs import enqueue
from fetlock.jobs.foreground import note_foreground_work
from fetlock.storage import BlobStore, StagedBlob

logger = logging.getLogger(__name__)

# A UID: dot-separated digit groups, at most 64 characters (PS3.5 9.1). Leading
# zeros are tolerated on receipt; anything else could not be a key segment.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
UID_MAX = 64

# Seconds without a new image before a study counts as settled and the order
# check runs (views received against views ordered, billing).
SETTLE_DELAY_S = 3.0

# Media Storage Directory Storage: a DICOMDIR, never stored as an instance.
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

# Attributes read from each object for the index (and nothing else).
INDEX_KEYWORDS = (
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientID",
    "PatientName",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "StudyID",
    "InstitutionName",
    "Modality",
    "BodyPartExamined",
    "Laterality",
    "SeriesNumber",
    "SeriesDescription",
    "ProtocolName",
    "StationName",
    "Manufacturer",
    "InstanceNumber",
    "ViewPosition",
    "ImageLaterality",
    "ViewCodeSequence",
    "AcquisitionDeviceProcessingDescription",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "PhotometricInterpretation",
)


INDEX_TAG_OF = {k: BaseTag(tag_for_keyword(k) or 0) for k in INDEX_KEYWORDS}
INDEX_TAGS = frozenset(int(tag) for tag in INDEX_TAG_OF.values())


class StoreStatus(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class RejectReason(enum.Enum):
    """Reasons for rejecting an object, valued by the DIMSE status reported.

    Statuses are those of the Storage Service Class (PS3.4 B.2.3): A7xx
    refused (out of resources), A9xx data set does not match SOP Class,
    Cxxx cannot understand.
    """

    MALFORMED = 0xC001
    MISSING_ATTRIBUTE = 0xC002
    INVALID_UID = 0xC003
    UID_CONFLICT = 0xC004
    NOT_AN_INSTANCE = 0xC005
    OUT_OF_RESOURCES = 0xA700

    @property
    def dimse_status(self) -> int:
        return self.value

    @property
    def comment(self) -> str:
        """A short phrase for protocol fields such as (0000,0902) Error Comment."""
        return _REJECT_COMMENTS[self]


_REJECT_COMMENTS = {
    RejectReason.MALFORMED: "malformed or truncated data set",
    RejectReason.MISSING_ATTRIBUTE: "a required UID is missing",
    RejectReason.INVALID_UID: "a UID is not valid",
    RejectReason.UID_CONFLICT: "SOP Instance UID taken by other data",
    RejectReason.NOT_AN_INSTANCE: "a DICOMDIR is not an instance",
    RejectReason.OUT_OF_RESOURCES: "storage full; retry later",
}


@dataclass(frozen=True)
class StoreResult:
    """Outcome of one ``store_instance`` call.

    ``reason`` explains a rejection (naming the object, the attribute or the
    conflict, and what to do). ``reject`` classifies it for protocol replies,
    and ``comment`` puts it in at most 64 characters, for the DIMSE Error
    Comment.
    """

    status: StoreStatus
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None
    sop_class_uid: str | None = None
    reason: str | None = None
    reject: RejectReason | None = None
    instance_id: int | None = None
    study_id: int | None = None
    size_bytes: int = 0
    comment: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not StoreStatus.REJECTED


class Rejected(Exception):
    def __init__(
        self,
        reject: RejectReason,
        reason: str,
        *,
        comment: str | None = None,
        **uids: str | None,
    ):
        super().__init__(reason)
        self.reject = reject
        self.reason = reason
        self.comment = comment or reject.comment
        self.uids = uids


@dataclass
class _Parsed:
    """The checked header of a staged object."""

    layout: Layout
    transfer_syntax_uid: str
    ds: Dataset | _RawAttributes
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str

    @property
    def blob_key(self) -> str:
        return instance_blob_key(
            self.study_instance_uid, self.series_instance_uid, self.sop_instance_uid
        )


def instance_blob_key(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """Blob key of an instance: one folder per study and series."""
    return f"dicom/{study_uid}/{series_uid}/{sop_uid}.dcm"


def store_instance(
    database_or_session: Database | Session,
    source: BinaryIO | str | os.PathLike[str],
    *,
    blobs: BlobStore,
    actor: audit.Actor,
    transfer_syntax: str | None = None,
    consume: bool = False,
    name: str | None = None,
) -> StoreResult:
    """Store one DICOM object exactly as received, index it and link it.

    Parameters
    ----------
    database_or_session:
        A ``Database`` (the object is indexed in its own transaction, retried
        once if a concurrent store of the same study races it) or a
        ``Session`` (indexed in the caller's transaction, which the caller
        commits; the blob is already durable when this returns).
    source:
        A DICOM file (path or binary stream) in the PS3.10 format, or a bare
        data set when ``transfer_syntax`` names its encoding.
    blobs:
        The blob store, ``fetlock.storage.get_blob_store(settings)``.
    actor:
        Who sent it; ``actor.source_ae_title`` is recorded as the source AE.
    transfer_syntax:
        Transfer Syntax UID of a bare data set without File Meta Information.
        Ignored for PS3.10 files, whose meta says it.
    consume:
        ``source`` is a temporary file the caller will not touch again (the
        C-STORE SCP's); the store may take it over instead of copying.
    name:
        How to name the object in messages (a file name); defaults to the path.

    Returns
    -------
    StoreResult
        ``stored``, ``duplicate`` (identical object already stored: success)
        or ``rejected`` with a reason. Never raises for bad input; raises only
        for database or disk failures other than a full disk.
    """
    label = name or (str(source) if isinstance(source, str | os.PathLike) else "object")
    source_arg: BinaryIO | Path = (
        Path(source) if isinstance(source, str | os.PathLike) else source
    )
    try:
        staged = blobs.stage(source_arg, consume=consume)
    except OSError as exc:
        if _out_of_space(exc):
            return _rejected(
                RejectReason.OUT_OF_RESOURCES,
                f"{label}: cannot store, the blob store is full ({exc}); free disk "
                "space and send again",
            )
        raise
    try:
        return _store_staged(
            database_or_session, staged, blobs, actor, transfer_syntax, label
        )
    except Rejected as exc:
        logger.warning("rejected %s from %s: %s", label, _sender(actor), exc.reason)
        return _rejected(exc.reject, exc.reason, comment=exc.comment, **exc.uids)
    finally:
        blobs.discard(staged)
        note_foreground_work()


def _rejected(
    reject: RejectReason, reason: str, *, comment: str | None = None, **uids: str | None
) -> StoreResult:
    return StoreResult(
        status=StoreStatus.REJECTED,
        reason=reason,
        reject=reject,
        comment=comment or reject.comment,
        sop_instance_uid=uids.get("sop_instance_uid"),
        study_instance_uid=uids.get("study_instance_uid"),
        sop_class_uid=uids.get("sop_class_uid"),
    )


def _out_of_space(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _sender(actor: audit.Actor) -> str:
    return actor.source_ae_title or actor.name


def _store_staged(
    database_or_session: Database | Session,
    staged: StagedBlob,
    blobs: BlobStore,
    actor: audit.Actor,
    transfer_syntax: str | None,
    label: str,
) -> StoreResult:
    parsed = _parse(staged, label, transfer_syntax)
    if not parsed.layout.has_meta:
        wrapped = _wrap_bare_dataset(blobs, staged, parsed)
        parsed.layout = _layout_of(wrapped.path)
        try:
            return _publish_and_index(
                database_or_session, parsed, wrapped, blobs, actor, label
            )
        finally:
            blobs.discard(wrapped)
    return _publish_and_index(database_or_session, parsed, staged, blobs, actor, label)


def _publish_and_index(
    database_or_session: Database | Session,
    parsed: _Parsed,
    staged: StagedBlob,
    blobs: BlobStore,
    actor: audit.Actor,
    label: str,
) -> StoreResult:
    try:
        created = blobs.publish(staged, parsed.blob_key)
    except OSError as exc:
        if _out_of_space(exc):
            raise Rejected(
                RejectReason.OUT_OF_RESOURCES,
                f"{label}: cannot store, the blob store is full ({exc}); free disk "
                "space and send again",
                **_uids(parsed),
            ) from exc
        raise
    # The first attempt inserts a newly published object without looking for
    # an indexed one first: the unique SOP Instance UID refuses a duplicate.
    # That, a concurrent store of the same study or series, or a cached id
    # naming a row that is gone all raise IntegrityError, and the next attempt
    # reads afresh.
    for attempt in (1, 2, 3):
        optimistic = created and attempt == 1
        try:
            if isinstance(database_or_session, Session):
                # A savepoint, so that a refusal leaves the caller's
                # transaction clean.
                with database_or_session.begin_nested():
                    return _index_or_compare(
                        database_or_session,
                        parsed,
                        staged,
                        blobs,
                        actor,
                        label,
                        created,
                    )
            with database_or_session.session() as db_session:
                return _index_or_compare(
                    db_session,
                    parsed,
                    staged,
                    blobs,
                    actor,
                    label,
                    created,
                    optimistic=optimistic,
                )
        except IntegrityError:
            _known.forget(parsed.study_instance_uid, parsed.series_instance_uid)
            if attempt == 3:
                raise
            logger.debug(
                "indexing SOP Instance %s again after a conflict (attempt %d)",
                parsed.sop_instance_uid,
                attempt,
            )
    raise AssertionError("unreachable")


def _uids(parsed: _Parsed) -> dict[str, str | None]:
    return {
        "sop_instance_uid": parsed.sop_instance_uid,
        "study_instance_uid": parsed.study_instance_uid,
        "sop_class_uid": parsed.sop_class_uid,
    }


# -- checking -----------------------------------------------------------------


def _layout_of(path: Path) -> Layout:
    with open(path, "rb") as fp:
        return read_layout(fp, os.fstat(fp.fileno()).st_size)


def _parse(staged: StagedBlob, label: str, transfer_syntax: str | None) -> _Parsed:
    """Check the staged object and read the attributes the index needs."""
    with open(staged.path, "rb") as fp:
        try:
            layout = read_layout(fp, staged.size)
        except MalformedFile as exc:
            raise Rejected(
                RejectReason.MALFORMED,
                f"{label} is not a readable DICOM file: {exc}",
            ) from exc
        syntax = layout.transfer_syntax_uid or _bare_syntax(fp, transfer_syntax)
        if not syntax.is_transfer_syntax:
            raise Rejected(
                RejectReason.MALFORMED,
                f"{label}: (0002,0010) Transfer Syntax UID {str(syntax)!r} is not a "
                "transfer syntax this server knows; send it in a standard one",
            )
        try:
            raw = scan(fp, layout, syntax, INDEX_TAGS)
        except MalformedFile as exc:
            raise Rejected(
                RejectReason.MALFORMED,
                f"{label} is not a complete DICOM object: {exc}; send the "
                "original again",
            ) from exc
        try:
            elements: dict[BaseTag, DataElement | RawDataElement] = {
                BaseTag(tag): element
                for tag, element in (raw or {}).items()
                if element is not None
            }
            ds: Dataset | _RawAttributes
            if raw is not None and len(elements) == len(raw):
                # The common case: the scan found every indexed attribute.
                ds = _RawAttributes(elements, syntax)
            else:
                # Deflated, or a sequence such as View Code Sequence: pydicom.
                fp.seek(0)
                ds = dcmread(
                    fp,
                    force=not layout.has_meta,
                    stop_before_pixels=True,
                    specific_tags=list(INDEX_KEYWORDS),
                )
                if not layout.has_meta:
                    ds.set_original_encoding(
                        syntax.is_implicit_VR, syntax.is_little_endian, None
                    )
            uids = {
                keyword: _clean_uid(ds.get(keyword))
                for keyword in (
                    "SOPClassUID",
                    "SOPInstanceUID",
                    "StudyInstanceUID",
                    "SeriesInstanceUID",
                )
            }
        except (InvalidDicomError, ValueError, TypeError, struct.error) as exc:
            raise Rejected(
                RejectReason.MALFORMED,
                f"{label} is not a readable DICOM data set: {exc}",
            ) from exc

    if not uids["SOPClassUID"]:
        uids["SOPClassUID"] = _clean_uid(layout.media_storage_sop_class_uid)

    partial = {
        "sop_instance_uid": uids["SOPInstanceUID"] or None,
        "study_instance_uid": uids["StudyInstanceUID"] or None,
        "sop_class_uid": uids["SOPClassUID"] or None,
    }
    if uids["SOPClassUID"] == MEDIA_STORAGE_DIRECTORY:
        raise Rejected(
            RejectReason.NOT_AN_INSTANCE,
            f"{label} is a DICOMDIR (a media directory), not an image; import the "
            "folder that holds it instead",
            **partial,
        )
    for keyword, tag in (
        ("SOPClassUID", "(0008,0016) SOP Class UID"),
        ("SOPInstanceUID", "(0008,0018) SOP Instance UID"),
        ("StudyInstanceUID", "(0020,000D) Study Instance UID"),
        ("SeriesInstanceUID", "(0020,000E) Series Instance UID"),
    ):
        value = uids[keyword]
        if not value:
            raise Rejected(
                RejectReason.MISSING_ATTRIBUTE,
                f"{label} has no {tag}; the object cannot be filed without it. "
                "Check the sending device's export settings",
                comment=f"missing {tag}",
                **partial,
            )
        if len(value) > UID_MAX or not _UID.match(value):
            raise Rejected(
                RejectReason.INVALID_UID,
                f"{label}: {tag} {value!r} is not a valid UID (digits and dots, at "
                f"most {UID_MAX} characters); correct the sending device",
                comment=f"invalid {tag}",
                **partial,
            )

    meta_sop = _clean_uid(layout.media_storage_sop_instance_uid)
    if meta_sop and meta_sop != uids["SOPInstanceUID"]:
        # Tolerated: the data set's UID is the object's identity and keys it.
        logger.warning(
            "%s: (0002,0003) Media Storage SOP Instance UID %s differs from "
            "(0008,0018) SOP Instance UID %s; filed under the latter",
            label,
            meta_sop,
            uids["SOPInstanceUID"],
        )

    return _Parsed(
        layout=layout,
        transfer_syntax_uid=str(syntax),
        ds=ds,
        sop_class_uid=uids["SOPClassUID"],
        sop_instance_uid=uids["SOPInstanceUID"],
        study_instance_uid=uids["StudyInstanceUID"],
        series_instance_uid=uids["SeriesInstanceUID"],
    )


def _bare_syntax(fp: BinaryIO, declared: str | None) -> UID:
    """Transfer syntax of a data set without File Meta: declared, else sniffed."""
    if declared:
        return UID(declared)
    # PS3.5 7.1: an explicit VR data set has two letters after the first tag.
    fp.seek(0)
    head = fp.read(6)
    if len(head) == 6 and head[4:6].isalpha() and head[4:6].isupper():
        return ExplicitVRLittleEndian
    return ImplicitVRLittleEndian


def _clean_uid(value: Any) -> str:
    if value is None:
        return ""
    return str(value).strip().rstrip("\x00").strip()


def _wrap_bare_dataset(
    blobs: BlobStore, staged: StagedBlob, parsed: _Parsed
) -> StagedBlob:
    """Stage a PS3.10 file: preamble, File Meta, then the data set unchanged."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(parsed.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(parsed.sop_instance_uid)
    meta.TransferSyntaxUID = UID(parsed.transfer_syntax_uid)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    header = io.BytesIO()
    header.write(b"\x00" * PREAMBLE_LENGTH + MAGIC)
    write_file_meta_info(header, meta, enforce_standard=True)  # type: ignore[arg-type]
    with open(staged.path, "rb") as body:
        return blobs.stage(cast(BinaryIO, _Concatenated(header.getvalue(), body)))


class _Concatenated:
    """A read-only stream of some bytes followed by a file."""

    def __init__(self, head: bytes, tail: BinaryIO) -> None:
        self._head = head
        self._tail = tail

    def read(self, size: int = -1) -> bytes:
        if self._head:
            chunk = self._head if size < 0 else self._head[:size]
            self._head = self._head[len(chunk) :]
            return chunk
        return self._tail.read(size)


# -- indexing -----------------------------------------------------------------


def _index_or_compare(
    db_session: Session,
    parsed: _Parsed,
    staged: StagedBlob,
    blobs: BlobStore,
    actor: audit.Actor,
    label: str,
    created: bool,
    *,
    optimistic: bool = False,
) -> StoreResult:
    existing_id = (
        None
        if optimistic
        else db_session.connection()
        .execute(_FIND_INSTANCE, {"uid": parsed.sop_instance_uid})
        .scalar_one_or_none()
    )
    existing = db_session.get(InstanceRow, existing_id) if existing_id else None
    if existing is not None:
        if created and existing.blob_key != parsed.blob_key:
            # The UID is indexed under another study or series: the blob just
            # published under this object's own key is not needed.
            blobs.delete(parsed.blob_key)
        return _compare_with_stored(
            db_session, parsed, staged, blobs, actor, label, existing
        )
    if not created and not _same_as_blob(blobs, parsed.blob_key, staged):
        # A blob under this key that nothing indexes is a leftover of an
        # interrupted store; one with other content is another object.
        return _quarantine(
            db_session,
            parsed,
            staged,
            blobs,
            actor,
            label,
            f"a different object with this SOP Instance UID is already in the blob "
            f"store at {parsed.blob_key}",
        )
    instance_id, study_id = _index(db_session, parsed, staged, actor)
    return StoreResult(
        status=StoreStatus.STORED,
        sop_instance_uid=parsed.sop_instance_uid,
        study_instance_uid=parsed.study_instance_uid,
        sop_class_uid=parsed.sop_class_uid,
        instance_id=instance_id,
        study_id=study_id,
        size_bytes=staged.size,
    )


def _compare_with_stored(
    db_session: Session,
    parsed: _Parsed,
    staged: StagedBlob,
    blobs: BlobStore,
    actor: audit.Actor,
    label: str,
    existing: InstanceRow,
) -> StoreResult:
    same = existing.sha256 == staged.sha256 or _same_as_blob(
        blobs, existing.blob_key, staged
    )
    if same:
        logger.info(
            "duplicate of SOP Instance %s from %s; already stored",
            parsed.sop_instance_uid,
            _sender(actor),
        )
        return StoreResult(
            status=StoreStatus.DUPLICATE,
            sop_instance_uid=parsed.sop_instance_uid,
            study_instance_uid=parsed.study_instance_uid,
            sop_class_uid=parsed.sop_class_uid,
            instance_id=existing.id,
            study_id=existing.study_id,
            size_bytes=staged.size,
        )
    return _quarantine(
        db_session,
        parsed,
        staged,
        blobs,
        actor,
        label,
        "a different object with this SOP Instance UID was stored on "
        f"{existing.received_at:%Y-%m-%d %H:%M} UTC",
    )


def _quarantine(
    db_session: Session,
    parsed: _Parsed,
    staged: StagedBlob,
    blobs: BlobStore,
    actor: audit.Actor,
    label: str,
    conflict: str,
) -> StoreResult:
    key = f"quarantine/{parsed.sop_instance_uid}/{staged.sha256}.dcm"
    blobs.publish(staged, key)
    reason = (
        f"{label}: (0008,0018) SOP Instance UID {parsed.sop_instance_uid} is "
        f"taken: {conflict}. The stored object is kept unchanged and this one is "
        f"quarantined as {key}; the sending device must give each new object its "
        "own UID"
    )
    row = QuarantinedObject(
        sop_instance_uid=parsed.sop_instance_uid,
        study_instance_uid=parsed.study_instance_uid,
        reason=reason,
        blob_key=key,
        size_bytes=staged.size,
        sha256=staged.sha256,
        source_ae_title=actor.source_ae_title,
        received_at=utcnow(),
    )
    db_session.add(row)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "imaging.instance.quarantined",
        "imaging_quarantine",
        row.id,
        detail={"sop_instance_uid": parsed.sop_instance_uid, "blob_key": key},
    )
    logger.error("quarantined object from %s: %s", _sender(actor), reason)
    return StoreResult(
        status=StoreStatus.REJECTED,
        sop_instance_uid=parsed.sop_instance_uid,
        study_instance_uid=parsed.study_instance_uid,
        sop_class_uid=parsed.sop_class_uid,
        reason=reason,
        reject=RejectReason.UID_CONFLICT,
        comment=RejectReason.UID_CONFLICT.comment,
        size_bytes=staged.size,
    )


def _same_as_blob(blobs: BlobStore, key: str, staged: StagedBlob) -> bool:
    """True if the stored blob's data set equals the staged one, byte for byte.

    Only the data set counts: File Meta written by different senders (or by
    the C-STORE SCP and by an export) differs for the same object.
    """
    if not blobs.exists(key):
        return False
    with blobs.open(key) as stored, open(staged.path, "rb") as new:
        stored_layout = read_layout(stored, blobs.size(key))
        new_layout = read_layout(new, staged.size)
        if (
            stored_layout.transfer_syntax_uid != new_layout.transfer_syntax_uid
            or stored_layout.size - stored_layout.dataset_offset
            != new_layout.size - new_layout.dataset_offset
        ):
            return False
        stored.seek(stored_layout.dataset_offset)
        new.seek(new_layout.dataset_offset)
        return all(a == b for a, b in zip(_chunks(stored), _chunks(new), strict=True))


def _chunks(stream: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


class _RawAttributes:
    """The indexed attributes of one object, decoded on demand.

    Plain ASCII values (UIDs, code strings, numbers, and names or texts with
    no accented letters) are decoded here directly. Anything else goes to
    pydicom, which applies (0008,0005) Specific Character Set. pydicom's
    element conversion was the largest single cost of indexing an instance.
    """

    _ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
    _TEXT_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UT"})

    def __init__(
        self, elements: dict[BaseTag, DataElement | RawDataElement], syntax: UID
    ) -> None:
        self._elements = elements
        self._syntax = syntax
        self._unsigned_short = "<H" if syntax.is_little_endian else ">H"
        self._dataset: Dataset | None = None

    def get(self, keyword: str, default: Any = None) -> Any:
        tag = INDEX_TAG_OF[keyword]
        element = self._elements.get(tag)
        if element is None:
            return default
        if isinstance(element, RawDataElement) and isinstance(element.value, bytes):
            vr = element.VR or dictionary_VR(tag)
            raw = element.value
            if vr in self._ASCII_VRS or (vr in self._TEXT_VRS and raw.isascii()):
                values = [v.strip(" \x00") for v in raw.decode("ascii").split("\\")]
                if vr in ("IS", "US"):
                    return int(values[0]) if values[0] else None
                return values[0] if len(values) == 1 else values
            if vr == "US" and len(raw) >= 2:
                return struct.unpack(self._unsigned_short, raw[:2])[0]
        return self._pydicom().get(keyword, default)

    def _pydicom(self) -> Dataset:
        if self._dataset is None:
            self._dataset = Dataset(dict(self._elements))
            self._dataset.set_original_encoding(
                self._syntax.is_implicit_VR, self._syntax.is_little_endian, None
            )
        return self._dataset


def _get(ds: Dataset | _RawAttributes, keyword: str) -> Any:
    """Return an attribute's value, or None when it is missing or invalid.

    A malformed optional attribute leaves a gap in the index, and the object
    is still stored, with its bytes as they came.
    """
    try:
        return ds.get(keyword)
    except Exception as exc:  # pydicom raises several kinds for bad values
        logger.warning("cannot read %s: %s; indexed without it", keyword, exc)
        return None


def _text(
    ds: Dataset | _RawAttributes, keyword: str, max_length: int = 64
) -> str | None:
    value = _get(ds, keyword)
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip()
    return text[:max_length] or None


def _int(ds: Dataset | _RawAttributes, keyword: str) -> int | None:
    value = _get(ds, keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _view_label(ds: Dataset | _RawAttributes) -> str | None:
    sequence = _get(ds, "ViewCodeSequence")
    if sequence:
        meaning = sequence[0].get("CodeMeaning")
        if meaning:
            return str(meaning).strip()[:64] or None
    return _text(ds, "AcquisitionDeviceProcessingDescription")


def _index(
    db_session: Session,
    parsed: _Parsed,
    staged: StagedBlob,
    actor: audit.Actor,
) -> tuple[int, int]:
    """Add the instance (and its study and series when new); return their ids.

    The path every instance takes is a handful of plain statements rather
    than ORM objects: on a busy association the ORM's bookkeeping cost more
    than the database.
    """
    ds = parsed.ds
    now = utcnow()
    connection = db_session.connection()

    # Study: created by its first instance, linked there and then. Known
    # studies and series come from this process's cache of committed ids.
    study = _known.study(parsed.study_instance_uid)
    if study is None:
        row = connection.execute(
            _FIND_STUDY, {"uid": parsed.study_instance_uid}
        ).one_or_none()
        if row is not None:
            study = _KnownStudy(
                row.id, row.horse_id is not None, row.dicom_accession_number
            )
    if study is None:
        study_id, study_created = _create_study(db_session, parsed, actor, now), True
    else:
        study_id, study_created = study.id, False
        if _known.touch_due(parsed.study_instance_uid):
            connection.execute(_TOUCH_STUDY, {"b_id": study_id, "b_now": now})
        accession = _text(ds, "AccessionNumber")
        if not study.linked and accession and accession != study.accession_number:
            _relink(db_session, study_id, accession, actor)
    _known.remember_study(
        db_session,
        parsed.study_instance_uid,
        _KnownStudy(
            study_id, study is not None and study.linked, _text(ds, "AccessionNumber")
        ),
    )

    # Series.
    series = _known.series(parsed.series_instance_uid)
    if series is None:
        found = connection.execute(
            _FIND_SERIES, {"uid": parsed.series_instance_uid}
        ).one_or_none()
        series = (found.id, found.study_id) if found is not None else None
    if series is None:
        series_id = connection.execute(
            _INSERT_SERIES,
            dict(
                study_id=study_id,
                series_instance_uid=parsed.series_instance_uid,
                modality=_text(ds, "Modality", 16),
                body_part_examined=_text(ds, "BodyPartExamined", 16),
                laterality=_text(ds, "Laterality", 16),
                series_number=_int(ds, "SeriesNumber"),
                series_description=_text(ds, "SeriesDescription"),
                protocol_name=_text(ds, "ProtocolName"),
                station_name=_text(ds, "StationName", 16),
                manufacturer=_text(ds, "Manufacturer"),
                received_at=now,
            ),
        ).scalar_one()
    elif series[1] != study_id:
        raise Rejected(
            RejectReason.UID_CONFLICT,
            f"(0020,000E) Series Instance UID {parsed.series_instance_uid} already "
            "belongs to another study; the sending device reuses series UIDs",
            **_uids(parsed),
        )
    else:
        series_id = series[0]
    _known.remember_series(
        db_session, parsed.series_instance_uid, (series_id, study_id)
    )

    # Instance.
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    instance_id = connection.execute(
        _INSERT_INSTANCE,
        dict(
            study_id=study_id,
            series_id=series_id,
            sop_instance_uid=parsed.sop_instance_uid,
            sop_class_uid=parsed.sop_class_uid,
            transfer_syntax_uid=parsed.transfer_syntax_uid,
            instance_number=_int(ds, "InstanceNumber"),
            view_position=_text(ds, "ViewPosition", 16),
            image_laterality=_text(ds, "ImageLaterality", 16),
            view_label=_view_label(ds),
            number_of_frames=_int(ds, "NumberOfFrames"),
            rows=rows,
            columns=columns,
            pixel_spacing=_text(ds, "PixelSpacing"),
            imager_pixel_spacing=_text(ds, "ImagerPixelSpacing"),
            photometric_interpretation=_text(ds, "PhotometricInterpretation", 16),
            size_bytes=staged.size,
            sha256=staged.sha256,
            blob_key=parsed.blob_key,
            source_ae_title=actor.source_ae_title,
            received_at=now,
        ),
    ).scalar_one()

    # A report sent from outside (Encapsulated PDF, Structured Report) is
    # attached to its study as the study's report.
    from fetlock.reporting.service import (
        attach_external_report,
        is_report_sop_class,
    )

    if is_report_sop_class(parsed.sop_class_uid):
        instance = db_session.get(InstanceRow, instance_id)
        assert instance is not None
        attach_external_report(db_session, instance, actor=actor)

    # Work that follows: the study's thumbnail from its first image, and the
    # order check once the images stop arriving.
    study_key = parsed.study_instance_uid
    if rows and columns and _follow_up.thumbnail_due(study_key, created=study_created):
        enqueue(db_session, "thumbnail", study_id=study_id)
    if _follow_up.settle_due(study_key):
        enqueue(db_session, "study_settled", delay_s=SETTLE_DELAY_S, study_id=study_id)
    return instance_id, study_id


def _relink(
    db_session: Session, study_id: int, accession: str, actor: audit.Actor
) -> None:
    from fetlock.imaging import linking

    row = db_session.get(Study, study_id)
    if row is not None and row.horse_id is None:
        linking.relink_on_accession(db_session, row, accession, actor)


@dataclass(frozen=True)
class _KnownStudy:
    id: int
    linked: bool
    accession_number: str | None


class _KnownIds:
    """Ids of studies and series this process has seen committed, by UID.

    An instance's study and series are almost always ones its association
    sent a moment ago; looking them up here saves two statements per
    instance. Entries are added only when the transaction that read or wrote
    them commits, and a UID's row never changes id, so an entry is never
    wrong. ``linked`` may be out of date (staff may have linked the study
    since); ``_relink`` reads the row before acting on it. The time each
    study's ``last_received_at`` was last written is kept too, so that a
    burst of images writes it about once a second rather than per image.
    """

    TOUCH_INTERVAL_S = 1.0
    _PENDING = "fetlock.ingest.known"

    def __init__(self, size: int = 4096) -> None:
        self._lock = threading.Lock()
        self._studies: OrderedDict[str, _KnownStudy] = OrderedDict()
        self._series: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._touched: OrderedDict[str, float] = OrderedDict()
        self._size = size
        event.listen(Session, "after_commit", self._commit)
        event.listen(Session, "after_rollback", self._rollback)

    def study(self, uid: str) -> _KnownStudy | None:
        with self._lock:
            return self._studies.get(uid)

    def series(self, uid: str) -> tuple[int, int] | None:
        with self._lock:
            return self._series.get(uid)

    def touch_due(self, study_uid: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(study_uid)
            if last is not None and now - last < self.TOUCH_INTERVAL_S:
                return False
            _remember(self._touched, study_uid, now, self._size)
            return True

    def remember_study(self, db_session: Session, uid: str, study: _KnownStudy) -> None:
        db_session.info.setdefault(self._PENDING, []).append(("study", uid, study))

    def remember_series(
        self, db_session: Session, uid: str, series: tuple[int, int]
    ) -> None:
        db_session.info.setdefault(self._PENDING, []).append(("series", uid, series))

    def mark(self, db_session: Session) -> int:
        return len(db_session.info.get(self._PENDING, ()))

    def reset(self, db_session: Session, mark: int) -> None:
        """Drop ids noted since ``mark`` (their savepoint was rolled back)."""
        del db_session.info.get(self._PENDING, [])[mark:]

    def forget(self, study_uid: str, series_uid: str) -> None:
        with self._lock:
            self._studies.pop(study_uid, None)
            self._series.pop(series_uid, None)

    def _commit(self, db_session: Session) -> None:
        pending = db_session.info.pop(self._PENDING, None)
        if not pending:
            return
        with self._lock:
            for kind, uid, value in pending:
                table = self._studies if kind == "study" else self._series
                _remember(table, uid, value, self._size)

    def _rollback(self, db_session: Session) -> None:
        db_session.info.pop(self._PENDING, None)


def _remember(table: OrderedDict[str, Any], key: str, value: Any, size: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > size:
        table.popitem(last=False)


_known = _KnownIds()


# Statements of the per-instance path, built once.
_FIND_INSTANCE = select(InstanceRow.id).where(
    InstanceRow.sop_instance_uid == bindparam("uid")
)
_FIND_STUDY = select(Study.id, Study.horse_id, Study.dicom_accession_number).where(
    Study.study_instance_uid == bindparam("uid")
)
_TOUCH_STUDY = (
    update(Study)
    .where(Study.id == bindparam("b_id"))
    .values(last_received_at=bindparam("b_now"))
)
_FIND_SERIES = select(Series.id, Series.study_id).where(
    Series.series_instance_uid == bindparam("uid")
)
_INSERT_SERIES = insert(Series).returning(Series.id)
_INSERT_INSTANCE = insert(InstanceRow).returning(InstanceRow.id)


def _create_study(
    db_session: Session, parsed: _Parsed, actor: audit.Actor, now: dt.datetime
) -> int:
    from fetlock.imaging import linking

    ds = parsed.ds
    study = Study(
        study_instance_uid=parsed.study_instance_uid,
        dicom_patient_id=_text(ds, "PatientID"),
        dicom_patient_name=_text(ds, "PatientName", 200),
        dicom_accession_number=_text(ds, "AccessionNumber"),
        study_date=_text(ds, "StudyDate", 8),
        study_time=_text(ds, "StudyTime", 16),
        study_description=_text(ds, "StudyDescription"),
        study_id=_text(ds, "StudyID", 16),
        institution_name=_text(ds, "InstitutionName"),
        source_ae_title=actor.source_ae_title,
        received_at=now,
        last_received_at=now,
    )
    db_session.add(study)
    db_session.flush()
    linking.link_new_study(db_session, study, actor)
    return study.id


class _FollowUp:
    """Which follow-up jobs this process has recently enqueued, per study UID.

    Enqueueing queries the job table, and a study's images arrive in bursts,
    so the ingest path checks here first. This is a hint that saves statements, not
    shared state: another node without the hint enqueues once more, and the
    job table absorbs the duplicate. The settled check runs ``SETTLE_DELAY_S``
    after it is enqueued and re-schedules itself while images keep arriving
    (``Study.last_received_at``), so one enqueue per half delay is enough.
    """

    def __init__(self, size: int = 4096) -> None:
        self._lock = threading.Lock()
        self._thumbnail: OrderedDict[str, None] = OrderedDict()
        self._settle: OrderedDict[str, float] = OrderedDict()
        self._size = size

    def thumbnail_due(self, study_uid: str, *, created: bool) -> bool:
        with self._lock:
            if study_uid in self._thumbnail and not created:
                return False
            _remember(self._thumbnail, study_uid, None, self._size)
            return True

    def settle_due(self, study_uid: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._settle.get(study_uid)
            if last is not None and now - last < SETTLE_DELAY_S / 2:
                return False
            _remember(self._settle, study_uid, now, self._size)
            return True


_follow_up = _FollowUp()
