"""An owner's invoice or credit note as an A4 PDF.

:func:`render_invoice_pdf` lays out an :class:`InvoiceDocument` (plain values,
no database): who issues it, whom it bills, the horse and visit, one row per
line with the whole charge beside the owner's share of it, and the totals.
Text is set in DejaVu Sans when Debian's ``fonts-dejavu-core`` is installed,
so every name prints as written. Without it the PDF core font Helvetica is
used, and characters outside Latin-1 are reduced to their base letter or
``?``.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos

DEJAVU_PATHS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
)
CORE_FONT = "Helvetica"

# Column widths in millimetres; they fill the 180 mm between the margins.
COLUMNS = (
    ("Service", 58.0, "LEFT"),
    ("Qty", 10.0, "RIGHT"),
    ("Unit", 19.0, "RIGHT"),
    ("Charge", 20.0, "RIGHT"),
    ("Share", 14.0, "RIGHT"),
    ("Net", 20.0, "RIGHT"),
    ("Tax", 17.0, "RIGHT"),
    ("Total", 22.0, "RIGHT"),
)


def format_money(minor_units: int, currency: str) -> str:
    """``-1234`` in GBP is ``-GBP 12.34``; thousands are comma-separated."""
    sign = "-" if minor_units < 0 else ""
    whole, cents = divmod(abs(minor_units), 100)
    return f"{sign}{currency} {whole:,}.{cents:02d}"


def format_share(share: int) -> str:
    """Format a share in hundredths of a percent: ``3333`` is ``33.33 %``."""
    whole, frac = divmod(share, 100)
    return f"{whole} %" if frac == 0 else f"{whole}.{frac:02d} %"


@dataclass(frozen=True)
class InvoiceRow:
    """One line: the whole charge, and the owner's part of it."""

    service_date: dt.date
    fee_code: str
    description: str
    quantity: int
    unit_price: int
    charge_amount: int
    share: int
    amount: int
    tax_rate: int
    tax_amount: int


@dataclass(frozen=True)
class InvoiceDocument:
    """Everything printed on one invoice, already looked up."""

    issuer: str
    title: str
    number: str | None
    status: str
    currency: str
    client_name: str
    client_address: Sequence[str]
    horse_name: str
    patient_id: str
    visit_date: dt.date
    issued_on: dt.date | None
    rows: Sequence[InvoiceRow]
    subtotal: int
    tax_total: int
    total: int
    remarks: Sequence[str] = field(default_factory=tuple)
    # The practice's address and contact lines under ``issuer``.
    issuer_lines: Sequence[str] = field(default_factory=tuple)


class _Pdf(FPDF):
    def __init__(self) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.family = CORE_FONT
        for directory in DEJAVU_PATHS:
            regular = directory / "DejaVuSans.ttf"
            bold = directory / "DejaVuSans-Bold.ttf"
            if regular.exists() and bold.exists():
                self.add_font("DejaVu", "", str(regular))
                self.add_font("DejaVu", "B", str(bold))
                self.family = "DejaVu"
                break
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(True, margin=18)

    def text_for_font(self, text: str) -> str:
        """Text the chosen font can print."""
        if self.family != CORE_FONT:
            return text
        folded = unicodedata.normalize("NFKD", text)
        kept = "".join(c for c in folded if not unicodedata.combining(c))
        return kept.encode("latin-1", "replace").decode("latin-1")

    def line_of(self, text: str, *, size: float = 10, bold: bool = False) -> None:
        self.set_font(self.family, "B" if bold else "", size)
        self.multi_cell(
            0,
            size * 0.5,
            self.text_for_font(text),
            align=Align.L,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.family, "", 8)
        self.cell(0, 5, f"Page {self.page_no()}/{{nb}}", align="R")


def render_invoice_pdf(document: InvoiceDocument) -> bytes:
    """Return the PDF bytes of ``document``."""
    pdf = _Pdf()
    pdf.set_title(
        pdf.text_for_font(f"{document.title} {document.number or ''}".strip())
    )
    pdf.set_author(pdf.text_for_font(document.issuer))
    pdf.set_creator("Fetlock")
    pdf.add_page()

    # Heading: issuer, document kind and number, status when not plain issued.
    pdf.line_of(document.issuer, size=12, bold=True)
    for issuer_line in document.issuer_lines:
        pdf.line_of(issuer_line, size=9)
    pdf.ln(2)
    heading = document.title + (f" {document.number}" if document.number else "")
    pdf.line_of(heading, size=16, bold=True)
    if document.status in ("paid", "void"):
        pdf.line_of(document.status.upper(), size=11, bold=True)
    pdf.ln(2)

    # Who is billed, for which horse and visit.
    pdf.line_of("Bill to", size=9, bold=True)
    pdf.line_of(document.client_name)
    for address_line in document.client_address:
        pdf.line_of(address_line, size=9)
    pdf.ln(2)
    issued = document.issued_on.isoformat() if document.issued_on else "not issued"
    pdf.line_of(f"Horse: {document.horse_name} (Patient ID {document.patient_id})")
    pdf.line_of(f"Visit: {document.visit_date.isoformat()}   Issued: {issued}")
    pdf.ln(3)

    # One row per line: the whole charge, the owner's share and part of it.
    pdf.set_font(pdf.family, "", 8)
    with pdf.table(
        col_widths=[width for _, width, _ in COLUMNS],
        text_align=tuple(align for _, _, align in COLUMNS),
        line_height=4.5,
        first_row_as_headings=True,
    ) as table:
        table.row([name for name, _, _ in COLUMNS])
        for row in document.rows:
            service = (
                f"{row.description}\n{row.service_date.isoformat()} · {row.fee_code}"
                f" · tax {format_share(row.tax_rate)}"
            )
            table.row(
                [
                    pdf.text_for_font(service),
                    str(row.quantity),
                    format_money(row.unit_price, document.currency),
                    format_money(row.charge_amount, document.currency),
                    format_share(row.share),
                    format_money(row.amount, document.currency),
                    format_money(row.tax_amount, document.currency),
                    format_money(row.amount + row.tax_amount, document.currency),
                ]
            )
    pdf.ln(3)

    # Totals, right-aligned under the table.
    for label, value, bold in (
        ("Net", document.subtotal, False),
        ("Tax", document.tax_total, False),
        ("Total", document.total, True),
    ):
        pdf.set_font(pdf.family, "B" if bold else "", 10)
        pdf.cell(150, 6, label, align="R")
        pdf.cell(
            30,
            6,
            format_money(value, document.currency),
            align="R",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    pdf.ln(3)

    # Remarks: payment, void reason, what a credit note corrects, notes.
    for remark in document.remarks:
        pdf.line_of(remark, size=9)
    return bytes(pdf.output())
