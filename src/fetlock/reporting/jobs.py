"""The job that follows sign-off: the signed PDF and the representative thumbnail.

``reporting.documents`` is enqueued in the signing transaction. It reads the
signed report in a short session, renders the key images and the PDF outside
any transaction, writes both files to the blob store under keys derived from
the report id (so a rerun after a crash overwrites the same keys), and marks
the report's documents ready in the job's own transaction. A failure leaves
the report ``pending`` and the job retries with backoff; a job that keeps
failing is parked, still shown as pending on the chart.

For a report received as an Encapsulated PDF the stored PDF is the one that
arrived; for a received Structured Report the PDF is rendered from its text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import pydicom
from sqlalchemy.orm import Session

from fetlock.auth.models import User
from fetlock.config import Settings
from fetlock.db.base import utcnow
from fetlock.documents.report_pdf import (
    PdfFinding,
    PdfKeyImage,
    ReportDocument,
    practice_letterhead,
    render_report_pdf,
)
from fetlock.imaging.models import ImagingOrder
from fetlock.imaging.study_models import Instance, Study
from fetlock.jobs import codec_process
from fetlock.jobs.registry import JobContext, job
from fetlock.practice.models import Horse
from fetlock.reporting import external, search, vocabulary
from fetlock.reporting.models import DocumentStatus, Report, ReportKind
from fetlock.reporting.service import (
    DOCUMENTS_JOB,
    ENCAPSULATED_PDF_STORAGE,
    placeholder_title,
)
from fetlock.storage import BlobStore

logger = logging.getLogger(__name__)

# Longer side, in pixels, of a key image in the PDF and of the chart thumbnail.
PDF_IMAGE_SIZE = 900
THUMBNAIL_SIZE = 256


def pdf_key(report_id: int) -> str:
    return f"reports/{report_id}/report.pdf"


def thumbnail_key(report_id: int) -> str:
    return f"reports/{report_id}/thumbnail.jpg"


@dataclass
class _Snapshot:
    """What the job read from the database, detached from any session."""

    report_id: int
    kind: str
    document: ReportDocument | None
    key_images: list[tuple[str, str]]
    representative_blob: str | None
    external_blob: str | None
    external_sop_class: str | None
    needs_text: bool


def _local(value: dt.datetime | None, settings: Settings) -> str:
    if value is None:
        return ""
    return value.astimezone(settings.zone).strftime("%d %b %Y %H:%M %Z")


def _study_date(study: Study) -> str:
    raw = study.study_date or ""
    if len(raw) == 8 and raw.isdigit():
        return f"{raw[6:8]}/{raw[4:6]}/{raw[0:4]}"
    return raw


def _owner_lines(db_session: Session, horse: Horse | None) -> list[tuple[str, str]]:
    if horse is None:
        return []
    from fetlock.practice.service import owners_on

    owners = owners_on(db_session, horse, dt.date.today())
    if not owners:
        return [("Owner", "not recorded")]
    rows = []
    for client, share in owners:
        label = "Owner" if len(owners) == 1 else f"Owner ({share / 100:g}%)"
        place = ", ".join(p for p in (client.town, client.postcode) if p)
        rows.append((label, client.display_name + (f", {place}" if place else "")))
    return rows


def _horse_lines(horse: Horse | None, study: Study) -> list[tuple[str, str]]:
    if horse is None:
        return [
            ("Patient", study.dicom_patient_name or ""),
            ("Patient ID", study.dicom_patient_id or ""),
        ]
    rows = [("Horse", horse.barn_name), ("Patient ID", horse.patient_id)]
    if horse.registered_name:
        rows.append(("Registered", horse.registered_name))
    described = (
        " ".join(p for p in (horse.colour, horse.breed, horse.sex) if p)
        or horse.species
    )
    rows.append(("Description", described))
    if horse.microchip:
        rows.append(("Microchip", horse.microchip))
    return rows


def _status_line(report: Report, previous: Report | None) -> str:
    kinds = {
        ReportKind.REPORT: "Final report",
        ReportKind.ADDENDUM: "Addendum",
        ReportKind.AMENDMENT: "Amended report",
        ReportKind.EXTERNAL: "Report received from outside",
    }
    line = (
        f"{kinds.get(ReportKind(report.kind), report.kind)} · version {report.version}"
    )
    if previous is not None:
        line += f" · follows version {previous.version}"
    return line


def _snapshot(
    db_session: Session, settings: Settings, report_id: int
) -> _Snapshot | None:
    report = db_session.get(Report, report_id)
    if report is None:
        logger.warning("documents job: report %s no longer exists", report_id)
        return None
    study = db_session.get(Study, report.study_id)
    assert study is not None
    horse = db_session.get(Horse, report.horse_id) if report.horse_id else None
    order = db_session.get(ImagingOrder, report.order_id) if report.order_id else None
    signer = db_session.get(User, report.signed_by_id) if report.signed_by_id else None
    clinician = (
        db_session.get(User, report.requesting_clinician_id)
        if report.requesting_clinician_id
        else None
    )
    previous = (
        db_session.get(Report, report.supersedes_id) if report.supersedes_id else None
    )
    representative = (
        db_session.get(Instance, report.representative_instance_id)
        if report.representative_instance_id
        else None
    )
    external_instance = (
        db_session.get(Instance, report.external_instance_id)
        if report.external_instance_id
        else None
    )

    key_images = []
    for key_image in report.key_images:
        instance = db_session.get(Instance, key_image.instance_id)
        if instance is not None:
            caption = key_image.caption or instance.view_label or ""
            key_images.append((instance.blob_key, caption))

    study_lines = [
        ("Study date", _study_date(study)),
        (
            "Accession",
            order.accession_number if order else study.dicom_accession_number or "",
        ),
        ("Modality", report.modality or ""),
        ("Study", study.study_description or (order.procedure.name if order else "")),
        ("Requested by", clinician.full_name if clinician else ""),
        ("Study UID", study.study_instance_uid),
    ]
    notes = []
    if previous is not None and report.kind == ReportKind.AMENDMENT:
        notes.append(
            f"This amended report replaces version {previous.version}, signed "
            f"{_local(previous.signed_at, settings)} (SHA-256 "
            f"{previous.content_sha256}), which remains on record."
        )
    if previous is not None and report.kind == ReportKind.ADDENDUM:
        notes.append(
            f"This addendum adds to version {previous.version}, signed "
            f"{_local(previous.signed_at, settings)} (SHA-256 "
            f"{previous.content_sha256}), which remains valid."
        )
    title = report.title or "Diagnostic imaging report"
    if horse is not None:
        title = f"{title}: {horse.barn_name}"
    document = ReportDocument(
        letterhead=practice_letterhead(settings),
        title=title,
        status_line=_status_line(report, previous),
        horse_lines=_horse_lines(horse, study),
        owner_lines=_owner_lines(db_session, horse),
        study_lines=study_lines,
        clinical_history=report.clinical_history,
        technique=report.technique,
        findings=[
            PdfFinding(
                limb=f.limb,
                structure=f.structure_display,
                finding=f.finding_display,
                grade=vocabulary.grade_display(f.grade),
                location=f.location or "",
                detail=f.detail,
                codes="; ".join(
                    f"{scheme} {code}"
                    for scheme, code in (
                        (f.structure_scheme, f.structure_code),
                        (f.finding_scheme, f.finding_code),
                    )
                    if code
                ),
            )
            for f in report.findings
        ],
        impression=report.impression,
        recommendations=report.recommendations,
        signer=signer.full_name if signer else "received from the sending system",
        signed_at=_local(report.signed_at, settings),
        content_sha256=report.content_sha256 or "",
        notes=notes,
        body_text=report.external_text,
    )
    return _Snapshot(
        report_id=report.id,
        kind=report.kind,
        document=document,
        key_images=key_images,
        representative_blob=representative.blob_key if representative else None,
        external_blob=external_instance.blob_key if external_instance else None,
        external_sop_class=(
            external_instance.sop_class_uid if external_instance else None
        ),
        needs_text=(
            report.kind == ReportKind.EXTERNAL
            and not report.external_text
            and external_instance is not None
        ),
    )


def _read_dataset(blobs: BlobStore, key: str) -> Any:
    path = blobs.local_path(key)
    if path is not None:
        return pydicom.dcmread(path)
    with blobs.open(key) as handle:
        return pydicom.dcmread(handle)


def _thumbnail(blobs: BlobStore, key: str, size: int) -> bytes:
    from fetlock.imaging.rendering import render_thumbnail

    path = blobs.local_path(key)
    if path is not None:
        return codec_process.run(render_thumbnail, path, size)
    with blobs.open(key) as handle:
        return render_thumbnail(handle, size)


@job(DOCUMENTS_JOB)
def make_documents(ctx: JobContext, *, report_id: int) -> None:
    """Write the signed PDF and representative thumbnail of ``report_id``."""
    # Read in a short session: on SQLite the job's own session holds the
    # write lock from its first statement.
    with ctx.database.session() as read_session:
        snapshot = _snapshot(read_session, ctx.settings, report_id)
    if snapshot is None or snapshot.document is None:
        return

    # Render outside any transaction.
    text = title = None
    dataset = None
    if snapshot.external_blob is not None:
        dataset = _read_dataset(ctx.blobs, snapshot.external_blob)
        if snapshot.needs_text:
            title, text = external.describe(dataset, snapshot.external_sop_class or "")
    if snapshot.external_sop_class == ENCAPSULATED_PDF_STORAGE and dataset is not None:
        pdf = external.encapsulated_pdf(dataset)
    else:
        document = snapshot.document
        if text:
            document = _with_body(document, text)
        images = [
            PdfKeyImage(_thumbnail(ctx.blobs, key, PDF_IMAGE_SIZE), caption)
            for key, caption in snapshot.key_images
        ]
        pdf = render_report_pdf(_with_images(document, images))
    ctx.blobs.put_bytes(pdf_key(report_id), pdf)
    thumbnail_written = None
    if snapshot.representative_blob is not None:
        ctx.blobs.put_bytes(
            thumbnail_key(report_id),
            _thumbnail(ctx.blobs, snapshot.representative_blob, THUMBNAIL_SIZE),
        )
        thumbnail_written = thumbnail_key(report_id)

    # Record the result in the job's transaction.
    report = ctx.db_session.get(Report, report_id)
    if report is None:
        return
    report.pdf_blob_key = pdf_key(report_id)
    report.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
    report.thumbnail_blob_key = thumbnail_written
    report.document_status = DocumentStatus.READY
    report.documents_at = utcnow()
    if text is not None:
        report.external_text = text[:100_000]
        if title and report.title == placeholder_title(
            snapshot.external_sop_class or ""
        ):
            report.title = title[:200]
        search.index_report(ctx.db_session, report)
    ctx.db_session.flush()
    logger.info(
        "report %s documents written (PDF %d bytes, thumbnail %s)",
        report_id,
        len(pdf),
        "yes" if thumbnail_written else "no",
    )


def _with_body(document: ReportDocument, text: str) -> ReportDocument:
    from dataclasses import replace

    return replace(document, body_text=text)


def _with_images(document: ReportDocument, images: list[PdfKeyImage]) -> ReportDocument:
    from dataclasses import replace

    return replace(document, key_images=images)


# Reports indexed again per transaction by the reindex job.
REINDEX_BATCH = 500


@job(vocabulary.REINDEX_JOB)
def reindex_term(ctx: JobContext, *, term_id: int) -> None:
    """Index again the signed reports that use vocabulary term ``term_id``.

    Runs after an admin changed the term's synonyms. Each report's words are
    rebuilt from its own findings, so running it twice changes nothing.
    """
    from fetlock.reporting.models import ReportTerm

    term = ctx.db_session.get(ReportTerm, term_id)
    if term is None:
        return
    report_ids = search.reports_using_term(ctx.db_session, term.kind, term.key)
    for start in range(0, len(report_ids), REINDEX_BATCH):
        for report_id in report_ids[start : start + REINDEX_BATCH]:
            report = ctx.db_session.get(Report, report_id)
            if report is not None:
                search.index_report(ctx.db_session, report)
        ctx.db_session.flush()
    logger.info(
        "indexed %d reports again after term %s (%s) changed",
        len(report_ids),
        term.key,
        term.kind,
    )
