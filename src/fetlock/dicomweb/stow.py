"""STOW-RS: store each part of a request and report per instance (PS3.18 10.5).

Each spooled part goes through ``imaging.ingest.store_instance``, the same
path as C-STORE, in its own transaction, so one bad part never undoes the
others. The response is the Store Instances Response Module (PS3.18
10.5.3): (0008,1199) Referenced SOP Sequence for what was stored, with a
RetrieveURL each, and (0008,1198) Failed SOP Sequence with a Failure Reason
for what was not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import select

from fetlock.audit import service as audit
from fetlock.db.session import Database
from fetlock.dicomweb.json_model import JsonDataset, attribute, merge
from fetlock.dicomweb.multipart import SpooledPart
from fetlock.imaging.ingest import StoreResult, store_instance
from fetlock.imaging.study_models import Instance, Series, Study
from fetlock.storage import BlobStore

logger = logging.getLogger(__name__)

RetrieveURL = 0x00081190
FailedSOPSequence = 0x00081198
ReferencedSOPSequence = 0x00081199
ReferencedSOPClassUID = 0x00081150
ReferencedSOPInstanceUID = 0x00081155
FailureReason = 0x00081197

# Failure Reason values: the Storage statuses of PS3.4 Annex B.2.3 and the
# general processing failure of PS3.7 C.4. Ingest's own reasons come with
# their status (``RejectReason.dimse_status``).
PROCESSING_FAILURE = 0x0110
CANNOT_UNDERSTAND = 0xC000
DATA_SET_DOES_NOT_MATCH = 0xA900
OUT_OF_RESOURCES = 0xA700


DICOM_MEDIA_TYPE = "application/dicom"


@dataclass
class PartOutcome:
    """One part's result, whether or not it reached ingest."""

    part: int
    ok: bool
    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None = None
    retrieve_url: str | None = None
    failure_reason: int | None = None
    message: str | None = None


@dataclass
class StowResponse:
    """The HTTP status, the DICOM JSON body and Warning messages."""

    status_code: int
    body: JsonDataset
    warnings: list[str] = field(default_factory=list)
    outcomes: list[PartOutcome] = field(default_factory=list)


def store_parts(
    database: Database,
    parts: Sequence[SpooledPart],
    *,
    blobs: BlobStore,
    actor: audit.Actor,
    base_url: str,
    study_uid: str | None = None,
) -> StowResponse:
    """Store every part and build the Store Instances Response.

    `study_uid` is the Study Instance UID from the request path; a part of
    another study is not stored (Failure Reason A900). Status: 200 when
    every instance was stored, 202 when some failed, 409 when none was
    stored (PS3.18 10.5.3.2).
    """
    outcomes = [
        _store_one(database, part, blobs, actor, base_url, study_uid) for part in parts
    ]
    stored = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]

    body = merge(
        _study_retrieve_url(outcomes, base_url, study_uid),
        attribute(ReferencedSOPSequence, [_referenced_item(o) for o in stored], "SQ")
        if stored
        else {},
        attribute(FailedSOPSequence, [_failed_item(o) for o in failed], "SQ")
        if failed
        else {},
    )
    if failed and stored:
        status_code = 202
    elif failed:
        status_code = 409
    else:
        status_code = 200
    warnings = [f"part {o.part}: {o.message}" for o in failed if o.message]
    _audit(database, actor, outcomes, study_uid)
    return StowResponse(status_code, body, warnings, outcomes)


def _store_one(
    database: Database,
    part: SpooledPart,
    blobs: BlobStore,
    actor: audit.Actor,
    base_url: str,
    study_uid: str | None,
) -> PartOutcome:
    label = f"part {part.index + 1}"
    uids = _peek_uids(part.path)
    media = part.content_type
    if media is not None and media.type != DICOM_MEDIA_TYPE:
        return _failure(
            part,
            CANNOT_UNDERSTAND,
            f"Content-Type {media.type!r} is not {DICOM_MEDIA_TYPE}; send each "
            "instance as a PS3.10 file in an application/dicom part",
            uids,
        )
    if study_uid is not None and uids["study_instance_uid"] not in (None, study_uid):
        return _failure(
            part,
            DATA_SET_DOES_NOT_MATCH,
            f"(0020,000D) Study Instance UID {uids['study_instance_uid']} differs "
            f"from the study {study_uid} in the request path; post it to "
            "/dicomweb/studies instead",
            uids,
        )
    try:
        result = store_instance(
            database, part.path, blobs=blobs, actor=actor, consume=True, name=label
        )
    except Exception:
        logger.exception(
            "STOW-RS %s (SOP Instance %s) failed in ingest",
            label,
            uids["sop_instance_uid"],
        )
        return _failure(
            part,
            PROCESSING_FAILURE,
            "storing failed on the server; the error is logged, send again",
            uids,
        )
    return _outcome(database, part, result, base_url, uids)


def _failure(
    part: SpooledPart, reason: int, message: str, uids: dict[str, str | None]
) -> PartOutcome:
    return PartOutcome(
        part=part.index + 1,
        ok=False,
        sop_class_uid=uids["sop_class_uid"],
        sop_instance_uid=uids["sop_instance_uid"],
        study_instance_uid=uids["study_instance_uid"],
        failure_reason=reason,
        message=message,
    )


def _peek_uids(path: Path) -> dict[str, str | None]:
    """Read the UIDs a failure item needs, tolerating any garbage."""
    found: dict[str, str | None] = {
        "sop_class_uid": None,
        "sop_instance_uid": None,
        "study_instance_uid": None,
    }
    try:
        ds = dcmread(
            path,
            stop_before_pixels=True,
            force=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"],
        )
        for key, keyword in (
            ("sop_class_uid", "SOPClassUID"),
            ("sop_instance_uid", "SOPInstanceUID"),
            ("study_instance_uid", "StudyInstanceUID"),
        ):
            value = ds.get(keyword)
            found[key] = str(value).strip() if value else None
    except Exception:  # noqa: BLE001 (any unreadable part is reported, not raised)
        logger.debug("cannot read UIDs from %s", path)
    return found


def _outcome(
    database: Database,
    part: SpooledPart,
    result: StoreResult,
    base_url: str,
    uids: dict[str, str | None],
) -> PartOutcome:
    number = part.index + 1
    if not result.ok:
        reason = result.reject.dimse_status if result.reject else PROCESSING_FAILURE
        return PartOutcome(
            part=number,
            ok=False,
            sop_class_uid=result.sop_class_uid or uids["sop_class_uid"],
            sop_instance_uid=result.sop_instance_uid or uids["sop_instance_uid"],
            study_instance_uid=result.study_instance_uid,
            failure_reason=reason,
            message=result.reason,
        )
    url = None
    if result.instance_id is not None:
        with database.session() as db_session:
            row = db_session.execute(
                select(Study.study_instance_uid, Series.series_instance_uid)
                .join(Series, Series.study_id == Study.id)
                .join(Instance, Instance.series_id == Series.id)
                .where(Instance.id == result.instance_id)
            ).one_or_none()
        if row is not None:
            url = (
                f"{base_url}/studies/{row[0]}/series/{row[1]}/instances/"
                f"{result.sop_instance_uid}"
            )
    return PartOutcome(
        part=number,
        ok=True,
        sop_class_uid=result.sop_class_uid,
        sop_instance_uid=result.sop_instance_uid,
        study_instance_uid=result.study_instance_uid,
        retrieve_url=url,
    )


def _referenced_item(outcome: PartOutcome) -> JsonDataset:
    return merge(
        attribute(ReferencedSOPClassUID, outcome.sop_class_uid, "UI"),
        attribute(ReferencedSOPInstanceUID, outcome.sop_instance_uid, "UI"),
        attribute(RetrieveURL, outcome.retrieve_url, "UR"),
    )


def _failed_item(outcome: PartOutcome) -> JsonDataset:
    return merge(
        attribute(ReferencedSOPClassUID, outcome.sop_class_uid, "UI"),
        attribute(ReferencedSOPInstanceUID, outcome.sop_instance_uid, "UI"),
        attribute(FailureReason, outcome.failure_reason, "US"),
    )


def _study_retrieve_url(
    outcomes: Sequence[PartOutcome], base_url: str, study_uid: str | None
) -> JsonDataset:
    studies = {o.study_instance_uid for o in outcomes if o.ok and o.study_instance_uid}
    if study_uid is not None:
        studies = {study_uid}
    if len(studies) != 1:
        return {}
    return attribute(RetrieveURL, f"{base_url}/studies/{next(iter(studies))}", "UR")


def _audit(
    database: Database,
    actor: audit.Actor,
    outcomes: Sequence[PartOutcome],
    study_uid: str | None,
) -> None:
    with database.session() as db_session:
        audit.record(
            db_session,
            actor,
            "dicomweb.stow",
            "imaging_study",
            study_uid or "",
            detail={
                "stored": [o.sop_instance_uid for o in outcomes if o.ok],
                "failed": [
                    {"part": o.part, "sop_instance_uid": o.sop_instance_uid}
                    for o in outcomes
                    if not o.ok
                ],
            },
        )
