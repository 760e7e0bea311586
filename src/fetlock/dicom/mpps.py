"""Modality Performed Procedure Step SOP Class SCP (PS3.4 Annex F.7).

N-CREATE starts a step: it is accepted only with (0040,0252) Performed
Procedure Step Status IN PROGRESS, and when the modality sends no Affected SOP
Instance UID, Fetlock assigns one and returns it. N-SET changes a step that is
still IN PROGRESS, typically to COMPLETED or DISCONTINUED; once final, a step
cannot change (0110 Processing Failure). The order is found through the
Scheduled Step Attribute Sequence and follows the step's status. The rules live
in ``fetlock.imaging.service``; this module maps them to DIMSE statuses.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import cast

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.dimse_primitives import N_CREATE, N_SET
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
)

from fetlock.audit.service import Actor
from fetlock.config import Settings
from fetlock.dicom.server import Handler, ScpContext, calling_ae_title
from fetlock.dicom.transfer import ACCEPTED_TRANSFER_SYNTAXES
from fetlock.imaging import service
from fetlock.imaging.service import MppsRejected, MppsReport

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_SOP_INSTANCE = 0x0112

# DIMSE status for each rule the imaging service enforces.
STATUS_FOR_REASON = {
    "duplicate": DUPLICATE_SOP_INSTANCE,
    "invalid_status": INVALID_ATTRIBUTE_VALUE,
    "not_in_progress": PROCESSING_FAILURE,
    "no_such_instance": NO_SUCH_SOP_INSTANCE,
}


def supported_contexts(settings: Settings) -> list[PresentationContext]:
    return [build_context(ModalityPerformedProcedureStep, ACCEPTED_TRANSFER_SYNTAXES)]


def event_handlers(context: ScpContext) -> list[tuple[evt.EventType, Handler]]:
    def on_n_create(event: evt.Event) -> tuple[int | Dataset, Dataset | None]:
        return handle_create(context, event)

    def on_n_set(event: evt.Event) -> tuple[int | Dataset, Dataset | None]:
        return handle_set(context, event)

    return [(evt.EVT_N_CREATE, on_n_create), (evt.EVT_N_SET, on_n_set)]


def _actor(event: evt.Event) -> Actor:
    ae_title = calling_ae_title(event.assoc)
    return Actor(
        name=f"dicom:{ae_title}",
        source_address=str(event.assoc.requestor.address),
        source_ae_title=ae_title,
    )


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def _local_datetime(
    ds: Dataset, date_keyword: str, time_keyword: str, zone: dt.tzinfo
) -> dt.datetime | None:
    """Combine a DA and TM pair (practice time zone) into an aware UTC datetime."""
    date_text = _text(ds, date_keyword)
    if not date_text:
        return None
    time_text = (_text(ds, time_keyword) or "000000").split(".")[0].ljust(6, "0")
    try:
        local = dt.datetime.strptime(date_text + time_text[:6], "%Y%m%d%H%M%S")
    except ValueError:
        logger.warning(
            "ignoring malformed %s/%s %r %r",
            date_keyword,
            time_keyword,
            date_text,
            time_text,
        )
        return None
    return local.replace(tzinfo=zone).astimezone(dt.UTC)


def _dataset_json(ds: Dataset) -> str:
    try:
        return json.dumps(ds.to_json_dict(), sort_keys=True)
    except Exception:  # a malformed value must not lose the MPPS itself
        logger.warning("MPPS dataset could not be stored as DICOM JSON", exc_info=True)
        return "{}"


def report_from_dataset(
    sop_instance_uid: str, ds: Dataset, zone: dt.tzinfo
) -> MppsReport:
    """Extract what Fetlock acts on from a whole MPPS dataset."""
    scheduled = ds.get("ScheduledStepAttributesSequence") or []
    first = scheduled[0] if scheduled else Dataset()
    return MppsReport(
        sop_instance_uid=sop_instance_uid,
        status=(_text(ds, "PerformedProcedureStepStatus") or "").upper(),
        accession_number=_text(first, "AccessionNumber"),
        study_instance_uid=_text(first, "StudyInstanceUID"),
        scheduled_procedure_step_id=_text(first, "ScheduledProcedureStepID"),
        performed_procedure_step_id=_text(ds, "PerformedProcedureStepID"),
        performed_station_ae_title=_text(ds, "PerformedStationAETitle"),
        modality=_text(ds, "Modality"),
        patient_id=_text(ds, "PatientID"),
        started_at=_local_datetime(
            ds,
            "PerformedProcedureStepStartDate",
            "PerformedProcedureStepStartTime",
            zone,
        ),
        ended_at=_local_datetime(
            ds, "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", zone
        ),
        attributes_json=_dataset_json(ds),
    )


def handle_create(
    context: ScpContext, event: evt.Event
) -> tuple[int | Dataset, Dataset | None]:
    """Answer an MPPS N-CREATE (PS3.4 F.7.2.1)."""
    ae_title = calling_ae_title(event.assoc)
    request = cast(N_CREATE, event.request)
    sop_instance_uid = request.AffectedSOPInstanceUID
    assigned = sop_instance_uid is None
    if assigned:
        sop_instance_uid = generate_uid(prefix=context.settings.uid_root)
    ds = event.attribute_list
    report = report_from_dataset(str(sop_instance_uid), ds, context.settings.zone)
    try:
        with context.database.session() as db_session:
            instance = service.mpps_create(db_session, _actor(event), report)
            unmatched = instance.unmatched
    except MppsRejected as exc:
        logger.warning(
            "MPPS N-CREATE %s from %s rejected: %s", sop_instance_uid, ae_title, exc
        )
        return _failure(STATUS_FOR_REASON[exc.reason], exc.message), None

    logger.info(
        "MPPS N-CREATE %s from %s: %s, accession %s%s",
        sop_instance_uid,
        ae_title,
        report.status,
        report.accession_number,
        " (no matching order; kept for reconciliation)" if unmatched else "",
    )
    reply = Dataset()
    if assigned:
        reply.AffectedSOPInstanceUID = sop_instance_uid
    return SUCCESS, reply


def handle_set(
    context: ScpContext, event: evt.Event
) -> tuple[int | Dataset, Dataset | None]:
    """Answer an MPPS N-SET (PS3.4 F.7.2.2)."""
    ae_title = calling_ae_title(event.assoc)
    request = cast(N_SET, event.request)
    sop_instance_uid = str(request.RequestedSOPInstanceUID)
    modifications = event.modification_list
    try:
        with context.database.session() as db_session:
            instance = service.get_mpps(db_session, sop_instance_uid)
            if instance is None:
                raise MppsRejected(
                    f"MPPS {sop_instance_uid} does not exist; send N-CREATE first",
                    reason="no_such_instance",
                    value=sop_instance_uid,
                )
            merged = Dataset.from_json(instance.attributes_json)
            for elem in modifications:
                merged[elem.tag] = elem
            if "PerformedProcedureStepStatus" not in merged:
                merged.PerformedProcedureStepStatus = instance.status
            report = report_from_dataset(
                sop_instance_uid, merged, context.settings.zone
            )
            service.mpps_set(db_session, _actor(event), report)
    except MppsRejected as exc:
        logger.warning(
            "MPPS N-SET %s from %s rejected: %s", sop_instance_uid, ae_title, exc
        )
        return _failure(STATUS_FOR_REASON[exc.reason], exc.message), None

    logger.info("MPPS N-SET %s from %s: %s", sop_instance_uid, ae_title, report.status)
    return SUCCESS, None


def _failure(status: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return ds
