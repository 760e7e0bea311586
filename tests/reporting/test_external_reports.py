"""Reports that arrive as DICOM objects: Encapsulated PDF and Basic Text SR."""

from __future__ import annotations

import io
from collections.abc import Callable

from fpdf import FPDF
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.reporting.conftest import ReadingCase, dicom_pdf_report, dicom_text_sr

from fetlock.audit.service import Actor
from fetlock.config import Settings
from fetlock.imaging.ingest import store_instance
from fetlock.imaging.models import ImagingOrder, OrderStatus
from fetlock.reporting import search, service
from fetlock.reporting.models import DocumentStatus, Report, ReportKind
from fetlock.storage import get_blob_store

SENDER = Actor(name="teleradiology", source_ae_title="TELERAD")


def _pdf_with_text(text: str) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def _store(db_session: Session, settings: Settings, data: bytes) -> Report:
    result = store_instance(
        db_session, io.BytesIO(data), blobs=get_blob_store(settings), actor=SENDER
    )
    assert result.status == "stored", result.reason
    report = db_session.execute(
        select(Report).where(Report.external_instance_id == result.instance_id)
    ).scalar_one()
    return report


def test_encapsulated_pdf_becomes_the_study_report(
    db_session: Session,
    settings: Settings,
    case: ReadingCase,
    run_jobs: Callable[[], int],
) -> None:
    original = _pdf_with_text(
        "Second opinion: remodelling of the navicular bone flexor cortex."
    )
    report = _store(
        db_session,
        settings,
        dicom_pdf_report(
            case.order.study_instance_uid,
            case.order.accession_number,
            original,
            title="Teleradiology opinion",
        ),
    )
    assert (report.kind, report.status) == (ReportKind.EXTERNAL, "final")
    assert report.study_id == case.study.id
    assert db_session.get(ImagingOrder, case.order.id).status == (  # type: ignore[union-attr]
        OrderStatus.REPORTED
    )
    db_session.commit()

    assert run_jobs() >= 1
    db_session.refresh(report)
    assert report.document_status == DocumentStatus.READY
    assert report.title == "Teleradiology opinion"
    stored = b"".join(get_blob_store(settings).iter_chunks(report.pdf_blob_key or ""))
    assert stored == original
    assert "flexor cortex" in report.external_text
    hits = search.search(
        db_session, search.SearchQuery(text="flexor cortex remodelling"), settings.zone
    ).hits
    assert [h.report.id for h in hits] == [report.id]
    chart = service.reports_for_horse(db_session, case.horse.id)
    assert [c.report.id for c in chart] == [report.id]


def test_text_sr_is_attached_and_indexed(
    db_session: Session,
    settings: Settings,
    case: ReadingCase,
    run_jobs: Callable[[], int],
) -> None:
    report = _store(
        db_session,
        settings,
        dicom_text_sr(
            case.order.study_instance_uid,
            case.order.accession_number,
            {
                "Findings": "Core lesion in the superficial digital flexor tendon.",
                "Impression": "SDFT tendinopathy, zone 2B.",
            },
        ),
    )
    db_session.commit()
    assert run_jobs() >= 1
    db_session.refresh(report)
    assert report.title == "Diagnostic imaging report"
    assert "Impression: SDFT tendinopathy, zone 2B." in report.external_text
    assert report.document_status == DocumentStatus.READY
    hits = search.search(
        db_session, search.SearchQuery(text="superficial tendinopathy"), settings.zone
    ).hits
    assert [h.report.id for h in hits] == [report.id]


def test_report_object_for_unknown_study_is_held_without_a_horse(
    db_session: Session, settings: Settings, case: ReadingCase
) -> None:
    from pydicom.uid import generate_uid

    report = _store(
        db_session,
        settings,
        dicom_text_sr(generate_uid(), "NOSUCHACC", {"Impression": "Normal study."}),
    )
    assert report.horse_id is None
    assert service.reports_for_horse(db_session, case.horse.id) == []
