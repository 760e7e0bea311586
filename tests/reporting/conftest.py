"""Reporting test data: a horse with an order, and its study stored by ingest.

Images are real DICOM objects written by pydicom and stored through
``fetlock.imaging.ingest.store_instance``, so they sit in the blob store and
are linked to the order by (0008,0050) Accession Number exactly as a
modality's would be.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.auth.models import Role, User
from fetlock.auth.service import hash_password
from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.imaging.ingest import store_instance
from fetlock.imaging.models import ImagingOrder, Procedure
from fetlock.imaging.study_models import Instance, Study
from fetlock.practice import service as practice
from fetlock.practice.models import ClientKind, Horse, VisitKind
from fetlock.storage import get_blob_store

PASSWORD = "correct-horse-battery"
DIGITAL_XRAY_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"
GSPS_STORAGE = "1.2.840.10008.5.1.4.1.1.11.1"

_numbers = itertools.count(1)


@dataclass
class ReadingCase:
    """A horse, its order, and the study received for it."""

    horse: Horse
    order: ImagingOrder
    study: Study
    instances: list[Instance]
    vet: User
    radiologist: User
    actor: Actor
    extra: dict[str, object] = field(default_factory=dict)


def dicom_image(
    study_uid: str,
    accession: str,
    *,
    series_uid: str,
    number: int,
    patient_id: str = "",
    label: str = "LF-LM",
) -> bytes:
    """A small 16-bit greyscale DX image as a PS3.10 file."""
    ds = _base(study_uid, accession, series_uid, DIGITAL_XRAY_STORAGE, number)
    ds.PatientID = patient_id
    ds.Modality = "DX"
    ds.SeriesDescription = "Foot"
    ds.AcquisitionDeviceProcessingDescription = label
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ramp = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint16) * (number * 50)
    ds.PixelData = ramp.tobytes()
    return _encode(ds)


def dicom_pdf_report(
    study_uid: str, accession: str, pdf: bytes, *, title: str = "Outside report"
) -> bytes:
    """An Encapsulated PDF instance (PS3.3 A.45) carrying ``pdf``."""
    ds = _base(study_uid, accession, generate_uid(), ENCAPSULATED_PDF_STORAGE, 1)
    ds.Modality = "DOC"
    ds.DocumentTitle = title
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.BurnedInAnnotation = "YES"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    return _encode(ds)


def dicom_presentation_state(study_uid: str, accession: str, patient_id: str) -> bytes:
    """A Grayscale Softcopy Presentation State (PS3.3 A.33.1): no pixels."""
    ds = _base(study_uid, accession, generate_uid(), GSPS_STORAGE, 1)
    ds.Modality = "PR"
    ds.PatientID = patient_id
    return _encode(ds)


def dicom_text_sr(study_uid: str, accession: str, texts: dict[str, str]) -> bytes:
    """A Basic Text SR (PS3.3 A.35.1) whose content items are ``texts``."""
    ds = _base(study_uid, accession, generate_uid(), BASIC_TEXT_SR_STORAGE, 1)
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ConceptNameCodeSequence = [_code("18748-4", "LN", "Diagnostic imaging report")]
    items = []
    for concept, text in texts.items():
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "TEXT"
        item.ConceptNameCodeSequence = [_code(concept[:16], "99FETLOCK", concept)]
        item.TextValue = text
        items.append(item)
    ds.ContentSequence = items
    return _encode(ds)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue = value
    code.CodingSchemeDesignator = scheme
    code.CodeMeaning = meaning
    return code


def _base(
    study_uid: str, accession: str, series_uid: str, sop_class: str, number: int
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    sop_uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.AccessionNumber = accession
    ds.PatientName = "Ashworth^Nutmeg"
    ds.StudyDate = "20261120"
    ds.StudyTime = "103000"
    ds.StudyDescription = "Foot radiographs"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    return ds


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@functools.cache
def _password_hash() -> str:
    # Argon2 is slow on purpose; hash the test password once per run.
    return hash_password(PASSWORD)


def add_user(db_session: Session, username: str, full_name: str, role: Role) -> User:
    """A staff account with the test password, without re-hashing it."""
    user = User(
        username=username,
        full_name=full_name,
        role=role.value,
        password_hash=_password_hash(),
        active=True,
    )
    db_session.add(user)
    db_session.flush()
    return user


def make_users(db_session: Session) -> tuple[User, User]:
    n = next(_numbers)
    vet = add_user(db_session, f"clinician{n}", "Dr Sarah Whitfield", Role.VETERINARIAN)
    radiologist = add_user(db_session, f"reader{n}", "Dr Jürgen Falk", Role.RADIOLOGIST)
    return vet, radiologist


def make_case(
    db_session: Session,
    settings: Settings,
    vet: User,
    radiologist: User,
    *,
    barn_name: str = "Nutmeg",
    images: int = 2,
    priority: str = "ROUTINE",
    body_region: str = "foot",
    modality: str = "DX",
) -> ReadingCase:
    """A horse with an order whose study arrived through ingest."""
    n = next(_numbers)
    actor = Actor(name=vet.username, user_id=vet.id)
    client = practice.create_client(
        db_session,
        actor,
        kind=ClientKind.PERSON,
        given_name="Pat",
        family_name="Ashworth",
    )
    horse = practice.create_horse(db_session, actor, barn_name=barn_name)
    practice.set_owners_from(
        db_session, actor, horse, dt.date(2020, 1, 1),
        [practice.ShareInput(client.id, 10_000)],
    )  # fmt: skip
    visit = practice.create_visit(
        db_session,
        actor,
        horse,
        kind=VisitKind.OUTPATIENT,
        started_at=dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC),
    )
    procedure = Procedure(
        code=f"P{n}",
        name=f"{body_region.title()} radiographs",
        modality=modality,
        body_region=body_region,
        fee_code="RAD",
        limb_choice="LF RF",
    )
    db_session.add(procedure)
    db_session.flush()
    order = ImagingOrder(
        horse_id=horse.id,
        visit_id=visit.id,
        procedure_id=procedure.id,
        procedure=procedure,
        modality=modality,
        status="completed",
        accession_number=f"REP{n:06d}",
        requested_procedure_id=f"RPR{n:06d}",
        study_instance_uid=generate_uid(),
        limb="LF",
        requesting_clinician_id=vet.id,
        scheduled_start=dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC),
        priority=priority,
        clinical_history="Left fore lameness, blocks to palmar digital nerve block.",
    )
    db_session.add(order)
    db_session.flush()

    blobs = get_blob_store(settings)
    series_uid = generate_uid()
    for number in range(1, images + 1):
        result = store_instance(
            db_session,
            io.BytesIO(
                dicom_image(
                    order.study_instance_uid,
                    order.accession_number,
                    series_uid=series_uid,
                    number=number,
                    patient_id=horse.patient_id,
                    label=f"LF view {number}",
                )
            ),
            blobs=blobs,
            actor=Actor(name="modality", source_ae_title="DR_STALL1"),
        )
        assert result.status == "stored", result.reason
    study = (
        db_session.query(Study)
        .filter_by(study_instance_uid=order.study_instance_uid)
        .one()
    )
    assert study.horse_id == horse.id, study.unmatched_reason
    instances = (
        db_session.query(Instance)
        .filter_by(study_id=study.id)
        .order_by(Instance.instance_number)
        .all()
    )
    return ReadingCase(horse, order, study, instances, vet, radiologist, actor)


@pytest.fixture
def users(db_session: Session) -> tuple[User, User]:
    return make_users(db_session)


@pytest.fixture
def case(
    db_session: Session, settings: Settings, users: tuple[User, User]
) -> ReadingCase:
    vet, radiologist = users
    result = make_case(db_session, settings, vet, radiologist)
    db_session.commit()
    return result


@pytest.fixture
def run_jobs(database: Database, settings: Settings) -> Iterator[Callable[[], int]]:
    """Run every due durable job in this thread; return how many ran."""
    from fetlock.jobs.worker import Worker

    worker = Worker(database, settings)

    def _run() -> int:
        return worker.run_pending()

    yield _run


def reader_actor(user: User) -> Actor:
    return Actor(name=user.username, user_id=user.id)
