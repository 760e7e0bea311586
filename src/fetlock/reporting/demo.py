"""Demo reports: signed reports with coded findings, and studies awaiting one.

Runs after the practice and imaging demos. For each entry an order is placed,
a small synthetic study is stored through ingest (so it is linked by its
Accession Number exactly as a modality's would be) and, for most, a report is
signed by the demo radiologist. Three horses (Storm, Duke, Marcel) have
navicular findings and they are the only ones whose reports mention the
navicular bone, so a findings search for "navicular changes" returns exactly
them. Hector and Rio have studies waiting in the reading queue.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from typing import NamedTuple

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    UltrasoundImageStorage,
    generate_uid,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.auth.models import User
from fetlock.config import Settings
from fetlock.db.base import utcnow
from fetlock.imaging import service as imaging
from fetlock.imaging.ingest import store_instance
from fetlock.imaging.models import (
    ImagingOrder,
    OrderStatus,
    ScheduledProcedureStepStatus,
)
from fetlock.imaging.schemas import OrderCreate
from fetlock.practice.models import Horse
from fetlock.reporting import service
from fetlock.reporting.schemas import FindingIn, KeyImageIn, ReportContentIn
from fetlock.storage import get_blob_store

logger = logging.getLogger(__name__)

IMAGE_SIZE = 256


class DemoReport(NamedTuple):
    horse: str
    procedure: str
    limb: str | None
    vet: str
    days_ago: int
    priority: str
    history: str
    views: tuple[str, ...]
    findings: tuple[FindingIn, ...]
    impression: str
    recommendations: str = ""
    sign: bool = True


def _f(
    limb: str,
    structure: str,
    finding: str,
    grade: int | None = None,
    detail: str = "",
    location: str | None = None,
) -> FindingIn:
    return FindingIn(
        limb=limb,
        structure=structure,
        finding=finding,
        grade=grade,
        detail=detail,
        location=location,
    )


DEMO_REPORTS = (
    DemoReport(
        "Storm", "RAD-NAV", "LF", "vet", 9, "ROUTINE",
        "Bilateral forelimb lameness, LF worse; improves with palmar digital blocks.",
        ("LF LM", "LF DPr-PaDiO", "LF skyline"),
        (
            _f("LF", "navicular_bone", "synovial_invaginations", 2,
               "Five enlarged, variably shaped invaginations along the distal border."),
            _f("RF", "navicular_bone", "sclerosis", 2,
               "Increased medullary opacity with poor corticomedullary demarcation."),
        ),
        "Bilateral navicular changes, moderate in the LF and mild in the RF, "
        "consistent with the clinical localisation.",
        "Consider MRI of both front feet; remedial farriery to shorten the toe.",
    ),
    DemoReport(
        "Duke", "RAD-NAV", "RF", "vet2", 6, "HIGH",
        "Acute RF lameness after hunting; sole pressure negative.",
        ("RF LM", "RF DPr-PaDiO", "RF skyline"),
        (
            _f("RF", "navicular_bone", "flexor_cortex_erosion", 3,
               "Focal lucency in the sagittal ridge of the flexor cortex on the "
               "skyline view."),
            _f("RF", "dip_joint", "joint_effusion", 1),
        ),
        "Moderate navicular changes in the RF with flexor cortex erosion; the deep "
        "digital flexor tendon may be involved.",
        "MRI of the RF foot to assess the deep digital flexor tendon.",
    ),
    DemoReport(
        "Marcel", "RAD-NAV", "LF", "vet3", 4, "ROUTINE",
        "Pre-purchase radiographs, no lameness.",
        ("LF LM", "LF DPr-PaDiO", "LF skyline"),
        (
            _f("LF", "navicular_bone", "degenerative_change", 1,
               "Mild remodelling of the proximal border."),
        ),
        "Mild navicular changes in the LF, commonly seen in sound horses of this "
        "age; of limited clinical significance on their own.",
    ),
    DemoReport(
        "Archie", "RAD-FET", "RF", "vet", 8, "ROUTINE",
        "Effusion of the RF fetlock, stiff on the circle.",
        ("RF LM", "RF flexed LM", "RF DP"),
        (
            _f("RF", "fetlock_joint", "osteoarthritis", 2,
               "Periarticular osteophytes on the dorsoproximal margin of the "
               "proximal phalanx."),
            _f("RF", "proximal_sesamoid_bones", "enthesophyte", 1),
        ),
        "Moderate osteoarthritis of the RF fetlock joint.",
        "Intra-articular medication and controlled exercise.",
    ),
    DemoReport(
        "Odin", "RAD-HOCK", "LH", "vet2", 5, "ROUTINE",
        "Poor hindlimb impulsion, positive LH flexion test.",
        ("LH LM", "LH DPl", "LH D45L-PlMO"),
        (
            _f("LH", "distal_intertarsal_joint", "osteoarthritis", 3,
               "Narrowed joint space with subchondral lysis."),
            _f("LH", "tarsometatarsal_joint", "osteophyte", 2),
        ),
        "Distal tarsal osteoarthritis (bone spavin) in the LH.",
        "Medicate the distal tarsal joints; review in six weeks.",
    ),
    DemoReport(
        "Willow", "US-TEN", "LF", "vet", 3, "HIGH",
        "Heat and swelling over the palmar metacarpus after a competition.",
        ("LF 1A", "LF 2A", "LF 2B", "LF 3A"),
        (
            _f("LF", "sdft", "core_lesion", 3,
               "Hypoechoic core occupying about 25 % of the cross-sectional area.",
               "2B"),
            _f("LF", "sdft", "fibre_disruption", 2, "", "3A"),
        ),
        "Acute core lesion of the LF superficial digital flexor tendon, zones 2B "
        "to 3A.",
        "Box rest with controlled walking; rescan in eight weeks.",
    ),
    DemoReport(
        "Tango", "RAD-STIFLE", "RH", "vet3", 2, "ROUTINE",
        "Young polo pony with RH femoropatellar effusion.",
        ("RH LM", "RH CdCr", "RH Cd60L-CrMO"),
        (
            _f("RH", "lateral_trochlear_ridge", "osteochondrosis", 2,
               "Flattening and a fragment at the mid lateral trochlear ridge."),
        ),
        "Osteochondrosis of the RH lateral trochlear ridge of the femur.",
        "Surgical referral for arthroscopic debridement.",
    ),
    DemoReport(
        "Hector", "RAD-NAV", "LF", "vet", 1, "HIGH",
        "Shire with acute LF lameness, suspected foot abscess.",
        ("LF LM", "LF DPr-PaDiO"),
        (),
        "",
        sign=False,
    ),
    DemoReport(
        "Rio", "RAD-FET", "LF", "vet2", 0, "ROUTINE",
        "Polo pony, LF fetlock swelling after a match.",
        ("LF LM", "LF DP"),
        (),
        "",
        sign=False,
    ),
)  # fmt: skip


def synthetic_radiograph(seed: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """A 12-bit picture with a bone-like shaft and a joint, for demo studies."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    tilt = rng.uniform(-0.08, 0.08)
    centre = 0.5 + tilt * (y - 0.5)
    shaft = np.exp(-(((x - centre) / 0.12) ** 2) * 2.0)
    cortex = np.exp(-(((np.abs(x - centre) - 0.1) / 0.025) ** 2))
    joint = np.exp(-(((y - rng.uniform(0.35, 0.65)) / 0.015) ** 2)) * shaft
    soft = np.exp(-(((x - centre) / 0.35) ** 2))
    image = 600 * soft + 1400 * shaft + 1200 * cortex - 900 * joint
    image += rng.normal(0, 40, image.shape)
    return np.clip(image + 200, 0, 4095).astype(np.uint16)


def _dicom(
    order: ImagingOrder,
    horse: Horse,
    series_uid: str,
    number: int,
    label: str,
    study_date: dt.date,
) -> bytes:
    ds = Dataset()
    ultrasound = order.modality == "US"
    sop_class = (
        UltrasoundImageStorage if ultrasound else DigitalXRayImageStorageForPresentation
    )
    sop_uid = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = order.study_instance_uid
    ds.SeriesInstanceUID = series_uid
    ds.AccessionNumber = order.accession_number
    ds.PatientID = horse.patient_id
    ds.PatientName = f"Demo^{horse.barn_name}"
    ds.StudyDate = ds.SeriesDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = "100000"
    ds.StudyDescription = order.procedure.name[:64]
    ds.Modality = order.modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.AcquisitionDeviceProcessingDescription = label
    pixels = synthetic_radiograph(order.id * 100 + number)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if not ultrasound:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImagerPixelSpacing = [0.15, 0.15]
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _place_order(
    db_session: Session,
    settings: Settings,
    horse: Horse,
    vet: User,
    entry: DemoReport,
) -> ImagingOrder:
    actor = Actor(name=vet.username, user_id=vet.id)
    order = imaging.create_order(
        db_session,
        actor,
        settings,
        horse.id,
        OrderCreate.model_validate(
            {
                "procedure_code": entry.procedure,
                "limb": entry.limb,
                "requesting_clinician_id": vet.id,
                "clinical_history": entry.history,
                "priority": entry.priority,
            }
        ),
    )
    # The demo studies were acquired on earlier days: date the order back and
    # close its worklist step, as the modality's MPPS would have.
    when = utcnow() - dt.timedelta(days=entry.days_ago, hours=2)
    order.scheduled_start = when
    order.started_at = when
    order.ended_at = when + dt.timedelta(minutes=20)
    order.status = OrderStatus.COMPLETED
    for step in order.steps:
        step.scheduled_start = when
        step.status = ScheduledProcedureStepStatus.COMPLETED
    db_session.flush()
    return order


def seed_reporting(
    db_session: Session, settings: Settings, users: dict[str, User]
) -> None:
    """Store the demo studies and sign their reports."""
    radiologist = users.get("radiologist")
    if radiologist is None:
        logger.warning("demo reports skipped: no demo radiologist")
        return
    reader = Actor(name=radiologist.username, user_id=radiologist.id)
    blobs = get_blob_store(settings)
    modality_actor = Actor(name="demo modality", source_ae_title="DR_STALL1")

    for entry in DEMO_REPORTS:
        horse = db_session.execute(
            select(Horse).where(Horse.barn_name == entry.horse)
        ).scalar_one_or_none()
        vet = users.get(entry.vet)
        if horse is None or vet is None:
            logger.warning(
                "demo report for %s skipped: horse or vet missing", entry.horse
            )
            continue
        order = _place_order(db_session, settings, horse, vet, entry)

        # The study, stored through ingest like a modality's.
        study_date = (utcnow() - dt.timedelta(days=entry.days_ago)).date()
        series_uid = generate_uid(prefix=settings.uid_root)
        study_id = 0
        for number, label in enumerate(entry.views, start=1):
            result = store_instance(
                db_session,
                io.BytesIO(_dicom(order, horse, series_uid, number, label, study_date)),
                blobs=blobs,
                actor=modality_actor,
                name=f"demo {entry.horse} {label}",
            )
            if result.study_id is None:
                raise RuntimeError(
                    f"demo image for {entry.horse} was refused: {result}"
                )
            study_id = result.study_id
        if not entry.sign:
            continue

        # The report, signed by the demo radiologist.
        report = service.create_report(db_session, reader, radiologist, study_id)
        key_image = service.study_images(db_session, study_id)[-1][0]
        service.update_report(
            db_session,
            reader,
            radiologist,
            report.id,
            ReportContentIn(
                template=report.template_key,
                clinical_history=report.clinical_history,
                technique=report.technique,
                findings=list(entry.findings),
                impression=entry.impression,
                recommendations=entry.recommendations,
                key_images=[
                    KeyImageIn(instance_id=key_image.id, caption=entry.views[-1])
                ],
            ),
        )
        service.sign_report(db_session, reader, radiologist, report.id)
    logger.info("demo reports seeded")
