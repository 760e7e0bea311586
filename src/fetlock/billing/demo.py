"""Demo billing: the fee schedule, and invoices in each state.

Runs after the other domains' demo data. Storm, the syndicate horse (50/30/20),
must show charges from imaging orders and three draft invoices on its chart.
When no demo order has charged Storm, a fetlock series is ordered for Storm's
current admission through the imaging service. A few other horses' drafts
are issued, and some of those paid, so the chart and client invoice pages
show every state. Two radiographs taken at a yard with no order are stored
through ingest; they wait in the reconciliation queue and on the
missed-charge report until staff attach them to Monty and charge them.
"""

from __future__ import annotations

import io
import logging

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.auth.models import User
from fetlock.billing import charges as charging
from fetlock.billing import fees
from fetlock.billing import invoices as invoicing
from fetlock.billing.models import InvoiceStatus
from fetlock.config import Settings
from fetlock.practice.models import Horse

logger = logging.getLogger(__name__)

SYNDICATE_HORSE = "Storm"
# Horses whose drafts the demo issues, and whether it also records payment.
INVOICE_STATES = (
    ("Duke", InvoiceStatus.PAID),
    ("Archie", InvoiceStatus.PAID),
    ("Marcel", InvoiceStatus.ISSUED),
    ("Odin", InvoiceStatus.ISSUED),
)

# The series ordered for Storm when no other demo order charged it; one view
# beyond the standard set shows a per-view line.
STORM_PROCEDURE = "RAD-FET"
STORM_LIMB = "LF"
STORM_EXTRA_VIEW = "LF-D65Pr-PaDiO"
# NOTE: used only when the imaging demo has configured no DX modality, which
# the imaging service needs to place an order.
FALLBACK_STATION = ("DEMODR", "DX", "Demo portable DR plate")


def seed_billing(
    db_session: Session, settings: Settings, users: dict[str, User]
) -> None:
    """Seed the fee schedule and bring the demo's invoices into their states."""
    fees.ensure_fee_schedule(db_session)
    reception = users.get("reception")
    actor = (
        Actor(name=reception.username, user_id=reception.id)
        if reception
        else Actor(name="demo")
    )
    storm = db_session.execute(
        select(Horse).where(Horse.barn_name == SYNDICATE_HORSE)
    ).scalar_one_or_none()
    if storm is not None and not charging.list_charges(db_session, horse_id=storm.id):
        _order_for(db_session, settings, users, storm)
    _advance_invoices(db_session, actor)
    _unscheduled_study(db_session, settings)


def _order_for(
    db_session: Session, settings: Settings, users: dict[str, User], horse: Horse
) -> None:
    from fetlock.imaging import service as imaging
    from fetlock.imaging.schemas import OrderCreate, StationIn

    vet = users.get("vet")
    actor = Actor(name=vet.username, user_id=vet.id) if vet else Actor(name="demo")
    imaging.ensure_catalog(db_session)
    procedure = imaging.get_procedure_by_code(db_session, STORM_PROCEDURE)
    if not any(
        s.modality == procedure.modality
        for s in imaging.list_stations(db_session, include_inactive=False)
    ):
        ae_title, modality, description = FALLBACK_STATION
        imaging.save_station(
            db_session,
            actor,
            StationIn(
                ae_title=ae_title,
                host="127.0.0.1",
                port=11113,
                modality=modality,
                description=description,
            ),
        )
    views = [
        f"{STORM_LIMB}-{view.projection}"
        for view in procedure.views
        if view.default_selected
    ]
    imaging.create_order(
        db_session,
        actor,
        settings,
        horse.id,
        OrderCreate(
            procedure_code=STORM_PROCEDURE,
            limb=STORM_LIMB,
            views=[*views, STORM_EXTRA_VIEW],
            clinical_history="Syndicate pre-training check, left fore fetlock.",
        ),
        default_clinician_id=vet.id if vet else None,
    )
    logger.info("demo imaging order placed for %s", horse.barn_name)


def _advance_invoices(db_session: Session, actor: Actor) -> None:
    for barn_name, state in INVOICE_STATES:
        horse = db_session.execute(
            select(Horse).where(Horse.barn_name == barn_name)
        ).scalar_one_or_none()
        if horse is None:
            logger.warning("demo invoices of %s skipped: no such horse", barn_name)
            continue
        drafts = invoicing.list_invoices(
            db_session, horse_id=horse.id, status=InvoiceStatus.DRAFT.value
        )
        for invoice in drafts:
            invoicing.issue_invoice(db_session, actor, invoice)
            if state == InvoiceStatus.PAID:
                invoicing.pay_invoice(db_session, actor, invoice, reference="demo BACS")


# The horse in the yard radiographs that arrive with no order, and their views.
UNSCHEDULED_HORSE = "Monty"
UNSCHEDULED_VIEWS = ("LF LM", "LF DPa")


def _unscheduled_study(db_session: Session, settings: Settings) -> None:
    from fetlock.imaging.ingest import store_instance
    from fetlock.imaging.study_models import Study
    from fetlock.storage.local import get_blob_store

    horse = db_session.execute(
        select(Horse).where(Horse.barn_name == UNSCHEDULED_HORSE)
    ).scalar_one_or_none()
    if horse is None:
        logger.warning("demo unscheduled study skipped: no %s", UNSCHEDULED_HORSE)
        return
    study_uid = generate_uid(prefix=settings.uid_root)
    series_uid = generate_uid(prefix=settings.uid_root)
    sender = Actor(name="dicom:YARDDR", source_ae_title="YARDDR")
    study_id = None
    for number, label in enumerate(UNSCHEDULED_VIEWS, start=1):
        data = _yard_image(horse, study_uid, series_uid, number, label)
        result = store_instance(
            db_session,
            io.BytesIO(data),
            blobs=get_blob_store(settings),
            actor=sender,
            name=f"demo unscheduled {label}",
        )
        study_id = result.study_id
    if study_id is None or db_session.get(Study, study_id) is None:
        logger.warning("demo unscheduled study was not stored")


def _yard_image(
    horse: Horse, study_uid: str, series_uid: str, number: int, label: str
) -> bytes:
    """Build a small DX image with no (0008,0050) Accession Number."""
    from fetlock.reporting.demo import synthetic_radiograph

    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.AccessionNumber = ""
    ds.PatientID = horse.patient_id
    ds.PatientName = f"Yard^{horse.barn_name}"
    ds.StudyDescription = "Yard radiographs, no order"
    ds.Modality = "DX"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.AcquisitionDeviceProcessingDescription = label
    pixels = synthetic_radiograph(9000 + number)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
