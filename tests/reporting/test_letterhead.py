"""The practice letterhead on report PDFs, from the practice settings."""

from __future__ import annotations

import dataclasses
import io
import re
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


def test_long_address_keeps_every_part_and_the_contact(tmp_path: Path) -> None:
    address = (
        "Unit 1, Home Farm, Mill Lane, Little Snoring, Fakenham, Norfolk, NR21 0AB"
    )
    settings = Settings(
        data_dir=tmp_path,
        practice_address=address,
        practice_phone="01328 000000",
        practice_email="desk@example.org",
    )

    letterhead = practice_letterhead(settings)
    text = _text(render_report_pdf(_document(settings)))

    assert len(letterhead.address_lines) + 1 <= LETTERHEAD_LINES_MAX
    for part in address.split(", "):
        assert part in text
    assert "01328 000000" in text
    assert "desk@example.org" in text


def test_very_long_letterhead_is_cut_not_fatal(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        practice_name="Ballyhale Equine Referral Hospital " * 80,
        practice_address=", ".join(f"Line {n}" for n in range(1, 101)),
    )

    text = _text(render_report_pdf(_document(settings)))

    assert "Ballyhale Equine Referral Hospital" in text
    assert "Line 1" in text
    assert "No abnormality detected." in text


def test_blank_settings_fall_back_to_the_default_name(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, practice_name="   ", practice_phone=" ", practice_email=""
    )

    letterhead = practice_letterhead(settings)

    assert letterhead.name == "Fetlock Equine Practice"
    assert letterhead.contact == ""


def test_wrapped_text_is_not_justified(tmp_path: Path) -> None:
    # A long word pushed to the next line leaves a short first line, which
    # justification would stretch with wide gaps between its words.
    document = dataclasses.replace(
        _document(Settings(data_dir=tmp_path)),
        impression=(
            "Moderate remodelling of the distal border of the navicular bone "
            "with enlarged synovial invaginations and "
            "osteochondrosisdissecansofthelateraltrochlearridge noted."
        ),
    )
    page = PdfReader(io.BytesIO(render_report_pdf(document))).pages[0]
    content = page.get_contents()
    assert content is not None
    stream = content.get_data().decode("latin-1")

    # fpdf2 writes a justified line as a TJ array with spacing between words.
    assert re.search(r"\)\s*-?\d+(\.\d+)?\s*\(", stream) is None
    assert "osteochondrosisdissecans" in _text(render_report_pdf(document))
