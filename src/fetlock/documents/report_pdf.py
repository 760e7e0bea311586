"""The signed radiology report as a PDF.

:func:`render_report_pdf` lays out a :class:`ReportDocument` (plain values,
no database) on A4: practice letterhead, horse and owner identity, study and
accession, clinical history and technique, the coded findings as a table,
impression, recommendations, key images, and a signature block with the
signer, the time and the SHA-256 of the signed content. Text is set in
DejaVu Sans when the font is installed (Debian's ``fonts-dejavu-core``), so
any name prints as written; without it the PDF core font is used and
characters outside Latin-1 are transliterated.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos
from fpdf.fonts import FontFace

from fetlock.config import DEFAULT_PRACTICE_NAME, Settings

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/local/share/fonts/dejavu"),
)
FONT_FAMILY = "DejaVu"
FALLBACK_FAMILY = "Helvetica"
# Width in millimetres of a key image on the page, two to a row.
KEY_IMAGE_WIDTH_MM = 60.0


@dataclass(frozen=True)
class Letterhead:
    name: str
    address_lines: Sequence[str] = ()
    contact: str = ""


# Address and contact lines printed under the practice name, at most, and
# the characters kept of the name and of each line: beyond these the header
# could grow taller than the page, which fpdf2 cannot lay out.
LETTERHEAD_LINES_MAX = 6
LETTERHEAD_TEXT_MAX = 200


def practice_letterhead(settings: Settings) -> Letterhead:
    """Build the letterhead from the ``practice_*`` settings.

    Each comma in the address starts a line. When the address has more
    parts than there are lines, the last parts share one line, so none is
    lost.
    """
    contact = " · ".join(
        v.strip()
        for v in (settings.practice_phone, settings.practice_email)
        if v.strip()
    )
    parts = [part.strip() for part in settings.practice_address.split(",")]
    parts = [part for part in parts if part]
    room = LETTERHEAD_LINES_MAX - (1 if contact else 0)
    if len(parts) > room:
        parts = [*parts[: room - 1], ", ".join(parts[room - 1 :])]
    return Letterhead(
        name=_clip(settings.practice_name.strip() or DEFAULT_PRACTICE_NAME),
        address_lines=[_clip(part) for part in parts],
        contact=_clip(contact),
    )


def _clip(text: str) -> str:
    if len(text) <= LETTERHEAD_TEXT_MAX:
        return text
    return text[: LETTERHEAD_TEXT_MAX - 1] + "…"


@dataclass(frozen=True)
class PdfFinding:
    limb: str
    structure: str
    finding: str
    grade: str
    location: str
    detail: str
    codes: str


@dataclass(frozen=True)
class PdfKeyImage:
    jpeg: bytes
    caption: str


@dataclass(frozen=True)
class ReportDocument:
    """Everything printed on a signed report, as display-ready text."""

    letterhead: Letterhead
    title: str
    status_line: str
    horse_lines: Sequence[tuple[str, str]]
    owner_lines: Sequence[tuple[str, str]]
    study_lines: Sequence[tuple[str, str]]
    clinical_history: str
    technique: str
    findings: Sequence[PdfFinding]
    impression: str
    recommendations: str
    signer: str
    signed_at: str
    content_sha256: str
    key_images: Sequence[PdfKeyImage] = field(default_factory=tuple)
    notes: Sequence[str] = field(default_factory=tuple)
    body_text: str = ""


def _font_files() -> tuple[Path, Path] | None:
    for directory in FONT_DIRS:
        regular = directory / "DejaVuSans.ttf"
        bold = directory / "DejaVuSans-Bold.ttf"
        if regular.exists() and bold.exists():
            return regular, bold
    return None


def _latin1(text: str) -> str:
    # Only used with the core font: keep Latin-1, transliterate the rest.
    out = []
    for char in text:
        try:
            char.encode("latin-1")
            out.append(char)
        except UnicodeEncodeError:
            out.append(
                unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
                or "?"
            )
    return "".join(out)


class _ReportPdf(FPDF):
    def __init__(self, document: ReportDocument) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.document = document
        fonts = _font_files()
        if fonts is not None:
            self.add_font(FONT_FAMILY, "", str(fonts[0]))
            self.add_font(FONT_FAMILY, "B", str(fonts[1]))
            self.family = FONT_FAMILY
            self.unicode = True
        else:
            self.family = FALLBACK_FAMILY
            self.unicode = False
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(auto=True, margin=18)
        self.set_title(self.t(document.title))
        self.set_creator("Fetlock")

    def t(self, text: str) -> str:
        return text if self.unicode else _latin1(text)

    def header(self) -> None:
        letterhead = self.document.letterhead
        self.set_font(self.family, "B", 14)
        self.multi_cell(
            0,
            7,
            self.t(letterhead.name),
            align=Align.L,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        self.set_font(self.family, "", 8.5)
        # Lines past the limit would make the header taller than the page.
        lines = [*letterhead.address_lines, letterhead.contact]
        for line in [line for line in lines if line][:LETTERHEAD_LINES_MAX]:
            self.multi_cell(
                0, 4, self.t(line), align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT
            )
        self.set_draw_color(39, 65, 58)
        self.set_line_width(0.6)
        self.line(
            self.l_margin,
            self.get_y() + 1.5,
            self.w - self.r_margin,
            self.get_y() + 1.5,
        )
        self.ln(5)

    def footer(self) -> None:
        self.set_y(-13)
        self.set_font(self.family, "", 7.5)
        self.cell(
            0,
            4,
            self.t(
                f"{self.document.title} · SHA-256 {self.document.content_sha256[:16]}… "
                f"· page {self.page_no()}/{{nb}}"
            ),
            align="C",
        )

    # Building blocks.

    def heading(self, text: str) -> None:
        self.ln(2)
        self.set_font(self.family, "B", 11)
        self.cell(0, 6, self.t(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(self.family, "", 10)

    def paragraph(self, text: str) -> None:
        self.set_font(self.family, "", 10)
        self.multi_cell(
            0,
            5,
            self.t(text.strip() or "—"),
            align=Align.L,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )

    def pairs(self, rows: Sequence[tuple[str, str]], x: float, width: float) -> float:
        """Print label/value rows in a column starting at ``x``; return end y."""
        y = self.get_y()
        for label, value in rows:
            self.set_xy(x, y)
            self.set_font(self.family, "B", 9)
            self.cell(30, 4.8, self.t(label))
            self.set_font(self.family, "", 9)
            self.multi_cell(
                width - 30,
                4.8,
                self.t(value or "—"),
                align=Align.L,
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
            y = self.get_y()
        return y


def render_report_pdf(document: ReportDocument) -> bytes:
    """Return the PDF bytes of ``document``."""
    pdf = _ReportPdf(document)
    pdf.alias_nb_pages()
    pdf.add_page()

    # Title and status.
    pdf.set_font(pdf.family, "B", 15)
    pdf.multi_cell(
        0, 7, pdf.t(document.title), align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )
    pdf.set_font(pdf.family, "", 9.5)
    pdf.cell(0, 5, pdf.t(document.status_line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for note in document.notes:
        pdf.multi_cell(
            0, 5, pdf.t(note), align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
    pdf.ln(2)

    # Identity: horse and owner on the left, study on the right.
    column = (pdf.w - pdf.l_margin - pdf.r_margin) / 2
    top = pdf.get_y()
    left_end = pdf.pairs(
        [*document.horse_lines, *document.owner_lines], pdf.l_margin, column - 3
    )
    pdf.set_y(top)
    right_end = pdf.pairs(document.study_lines, pdf.l_margin + column, column)
    pdf.set_y(max(left_end, right_end) + 2)

    if document.clinical_history.strip():
        pdf.heading("Clinical history")
        pdf.paragraph(document.clinical_history)
    if document.technique.strip():
        pdf.heading("Technique")
        pdf.paragraph(document.technique)

    if document.findings:
        pdf.heading("Findings")
        _findings_table(pdf, document.findings)
    if document.body_text.strip():
        pdf.heading("Report text")
        pdf.paragraph(document.body_text)

    pdf.heading("Impression")
    pdf.paragraph(document.impression)
    if document.recommendations.strip():
        pdf.heading("Recommendations")
        pdf.paragraph(document.recommendations)

    if document.key_images:
        pdf.heading("Key images")
        _key_images(pdf, document.key_images)

    _signature_block(pdf, document)
    return bytes(pdf.output())


def _findings_table(pdf: _ReportPdf, findings: Sequence[PdfFinding]) -> None:
    pdf.set_font(pdf.family, "", 8.5)
    widths = (14, 38, 36, 16, 76)
    with pdf.table(
        col_widths=widths,
        text_align="LEFT",
        line_height=4.4,
        first_row_as_headings=True,
        headings_style=FontFace(emphasis="BOLD", fill_color=(228, 233, 229)),
    ) as table:
        head = table.row()
        for label in ("Limb", "Structure", "Finding", "Grade", "Detail and codes"):
            head.cell(pdf.t(label))
        for finding in findings:
            row = table.row()
            row.cell(pdf.t(finding.limb))
            row.cell(
                pdf.t(
                    finding.structure
                    + (f" ({finding.location})" if finding.location else "")
                )
            )
            row.cell(pdf.t(finding.finding))
            row.cell(pdf.t(finding.grade))
            detail = finding.detail
            if finding.codes:
                detail = f"{detail}\n{finding.codes}" if detail else finding.codes
            row.cell(pdf.t(detail))


def _key_images(pdf: _ReportPdf, images: Sequence[PdfKeyImage]) -> None:
    x_positions = (pdf.l_margin, pdf.l_margin + KEY_IMAGE_WIDTH_MM + 10)
    for index, image in enumerate(images):
        column = index % 2
        if column == 0:
            row_top = pdf.get_y()
            if row_top + KEY_IMAGE_WIDTH_MM + 10 > pdf.h - pdf.b_margin:
                pdf.add_page()
                row_top = pdf.get_y()
        info = pdf.image(
            io.BytesIO(image.jpeg),
            x=x_positions[column],
            y=row_top,
            w=KEY_IMAGE_WIDTH_MM,
            keep_aspect_ratio=True,
            h=KEY_IMAGE_WIDTH_MM,
        )
        pdf.set_xy(x_positions[column], row_top + float(info.rendered_height) + 1)
        pdf.set_font(pdf.family, "", 8)
        pdf.cell(KEY_IMAGE_WIDTH_MM, 4, pdf.t(image.caption))
        if column == 1 or index == len(images) - 1:
            pdf.set_xy(pdf.l_margin, row_top + KEY_IMAGE_WIDTH_MM + 7)


def _signature_block(pdf: _ReportPdf, document: ReportDocument) -> None:
    if pdf.get_y() + 32 > pdf.h - pdf.b_margin:
        pdf.add_page()
    pdf.ln(4)
    top = pdf.get_y()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.set_draw_color(120, 120, 120)
    pdf.set_line_width(0.3)
    pdf.rect(pdf.l_margin, top, width, 26)
    pdf.set_xy(pdf.l_margin + 3, top + 2)
    pdf.set_font(pdf.family, "B", 10)
    pdf.cell(
        0,
        5,
        pdf.t(f"Electronically signed by {document.signer}"),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.set_x(pdf.l_margin + 3)
    pdf.set_font(pdf.family, "", 9)
    pdf.cell(
        0, 5, pdf.t(f"Signed {document.signed_at}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )
    pdf.set_x(pdf.l_margin + 3)
    pdf.cell(
        0,
        5,
        "SHA-256 of the signed report content:",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.set_x(pdf.l_margin + 3)
    pdf.set_font(pdf.family, "B", 8.5)
    pdf.cell(0, 5, document.content_sha256, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_y(top + 28)
