"""Read the title and text of a report received as a DICOM object.

Structured Reports (PS3.3 C.17.3) give their text content items; an
Encapsulated PDF (PS3.3 C.24.2) gives the text pypdf can extract, or only its
title when the PDF holds no extractable text (a scanned page).
"""

from __future__ import annotations

import io
import logging
from typing import Any

from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
# Deepest SR content tree walked; PS3.3 sets no limit, real reports stay shallow.
MAX_SR_DEPTH = 20


def describe(ds: Dataset, sop_class_uid: str) -> tuple[str, str]:
    """Return ``(title, text)`` of a received report dataset."""
    title = _title(ds)
    if sop_class_uid == ENCAPSULATED_PDF_STORAGE:
        return title or "Outside report (PDF)", pdf_text(encapsulated_pdf(ds))
    lines: list[str] = []
    _walk_sr(ds, lines, depth=0)
    return title or "Outside structured report", "\n".join(lines)


def _title(ds: Dataset) -> str:
    # (0042,0010) Document Title, then (0040,A043) Concept Name Code Sequence.
    title = str(ds.get("DocumentTitle", "") or "").strip()
    if title:
        return title
    concept = ds.get("ConceptNameCodeSequence")
    if concept:
        return str(concept[0].get("CodeMeaning", "")).strip()
    return ""


def encapsulated_pdf(ds: Dataset) -> bytes:
    """The PDF bytes of (0042,0011) Encapsulated Document, without the pad byte."""
    data = bytes(ds.get("EncapsulatedDocument", b"") or b"")
    length = ds.get("EncapsulatedDocumentLength")
    if length is not None and 0 < int(length) <= len(data):
        return data[: int(length)]
    # Without (0042,0015) the value may carry one NUL of padding to even length.
    end = data.rfind(b"%%EOF")
    return data[: end + 5] if end >= 0 else data


def pdf_text(data: bytes) -> str:
    """Extract a PDF's text; empty when it has none or cannot be parsed."""
    if not data:
        return ""
    try:
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(data))
        return "\n".join((page.extract_text() or "") for page in reader.pages).strip()
    except Exception:
        # A damaged or encrypted PDF still attaches, with its title only.
        logger.warning("cannot extract text from an encapsulated PDF", exc_info=True)
        return ""


def _concept(item: Dataset) -> str:
    concept = item.get("ConceptNameCodeSequence")
    if concept:
        return str(concept[0].get("CodeMeaning", "")).strip()
    return ""


def _value(item: Any) -> str:
    value_type = item.get("ValueType", "")
    if value_type == "TEXT":
        return str(item.get("TextValue", "")).strip()
    if value_type == "CODE" and item.get("ConceptCodeSequence"):
        return str(item.ConceptCodeSequence[0].get("CodeMeaning", "")).strip()
    if value_type == "NUM" and item.get("MeasuredValueSequence"):
        measured = item.MeasuredValueSequence[0]
        unit = ""
        if measured.get("MeasurementUnitsCodeSequence"):
            unit = str(measured.MeasurementUnitsCodeSequence[0].get("CodeValue", ""))
        return f"{measured.get('NumericValue', '')} {unit}".strip()
    if value_type in ("DATE", "TIME", "DATETIME", "UIDREF", "PNAME"):
        keyword = {
            "DATE": "Date",
            "TIME": "Time",
            "DATETIME": "DateTime",
            "UIDREF": "UID",
            "PNAME": "PersonName",
        }[value_type]
        return str(item.get(keyword, "")).strip()
    return ""


def _walk_sr(node: Dataset, lines: list[str], depth: int) -> None:
    # PS3.3 C.17.3: content items nest through (0040,A730) Content Sequence.
    if depth > MAX_SR_DEPTH:
        return
    for item in node.get("ContentSequence", []):
        concept = _concept(item)
        value = _value(item)
        if item.get("ValueType") == "CONTAINER":
            if concept:
                lines.append(concept)
        elif value:
            lines.append(f"{concept}: {value}" if concept else value)
        _walk_sr(item, lines, depth + 1)
