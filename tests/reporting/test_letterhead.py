"""The practice letterhead on report PDFs, from the practice settings."""

from __future__ import annotations

import io
from pathlib import Path

from pypdf import PdfReader

from fetlock.config import Settings
from fetlock.documents.report_pdf import (
    LETTERHEAD_LINES_MAX,
    ReportDocument,
    practice_letterhead,
    render_report_pdf,
)


def _document(settings: Settings) -> ReportDocument:
    return ReportDocument(
        letterhead=practice_letterhead(settings),
        title="Radiology report",
        status_line="Final",
        horse_lines=[("Horse", "Hazel")],
        owner_lines=[("Owner", "J. Smith")],
        study_lines=[("Accession", "FA00000001")],
        clinical_history="",
        technique="",
        findings=[],
        impression="No abnormality detected.",
        recommendations="",
        signer="Dr Example",
        signed_at="04 Dec 2026 10:00 GMT",
        content_sha256="0" * 64,
    )


def _text(pdf: bytes) -> str:
    return " ".join(
        " ".join((page.extract_text() or "").split())
        for page in PdfReader(io.BytesIO(pdf)).pages
    )


def test_long_practice_name_wraps_on_the_page(tmp_path: Path) -> None:
    name = "Newmarket Equine Hospital and Rossdales Veterinary Surgeons Ltd"
    settings = Settings(data_dir=tmp_path, practice_name=name)

    text = _text(render_report_pdf(_document(settings)))

    assert "Rossdales Veterinary Surgeons Ltd" in text
    assert "Newmarket Equine Hospital" in text


def test_very_long_address_is_cut_not_fatal(tmp_path: Path) -> None:
    address = ", ".join(f"Line {n}" for n in range(1, 101))
    settings = Settings(data_dir=tmp_path, practice_address=address)

    text = _text(render_report_pdf(_document(settings)))

    assert f"Line {LETTERHEAD_LINES_MAX - 1}" in text
    assert f"Line {LETTERHEAD_LINES_MAX + 1} " not in text
    assert "No abnormality detected." in text


def test_blank_settings_fall_back_to_the_default_name(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, practice_name="   ", practice_phone=" ", practice_email=""
    )

    letterhead = practice_letterhead(settings)

    assert letterhead.name == "Fetlock Equine Practice"
    assert letterhead.contact == ""
