"""Reports, coded findings, key images, reading claims, vocabulary, notifications.

A ``Report`` is one version of the report on one study. Drafts and
preliminary reports are edited in place; a final (signed) report never
changes. An addendum or amendment is a new ``Report`` row that names the
version it follows in ``supersedes_id``; an amendment also sets
``superseded_by_id`` on the old version, which stays visible. Reports that
arrive as DICOM objects (Encapsulated PDF, Structured Reports) are rows of
kind ``external`` pointing at the instance that carried them.

Findings search reads ``ReportSearchToken``: the normalised words of each
signed report's findings, impression and recommendations, one row per word
(see ``fetlock.reporting.search``).
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fetlock.db.base import Base, UTCDateTime, utcnow
from fetlock.imaging.models import CS_MAX

# Keys of vocabulary terms and templates are short snake_case names.
TERM_KEY_MAX = 64
BLOB_KEY_MAX = 255
# A search token is one normalised word; longer words are cut to this length.
TOKEN_MAX = 40


class ReportStatus(enum.StrEnum):
    """``draft`` -> ``preliminary`` (issued, still editable) -> ``final``."""

    DRAFT = "draft"
    PRELIMINARY = "preliminary"
    FINAL = "final"


class ReportKind(enum.StrEnum):
    """What a report version is: the first report, a later one, or received."""

    REPORT = "report"
    ADDENDUM = "addendum"
    AMENDMENT = "amendment"
    EXTERNAL = "external"


class DocumentStatus(enum.StrEnum):
    """State of a signed report's PDF and thumbnail, written by the job."""

    NONE = "none"
    PENDING = "pending"
    READY = "ready"


class TermKind(enum.StrEnum):
    FINDING = "finding"
    STRUCTURE = "structure"


class ReportTerm(Base):
    """A vocabulary term: an anatomical structure or a finding.

    ``scheme`` is ``SCT`` (SNOMED CT) with ``code`` the concept id, or
    ``local`` with an empty code when no checked standard code exists.
    ``regions`` lists the template keys the term belongs to (space-separated;
    findings apply to every region). ``synonyms`` are ``|``-separated and are
    indexed for search with the display name.
    """

    __tablename__ = "report_term"
    __table_args__ = (UniqueConstraint("kind", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(TERM_KEY_MAX))
    display: Mapped[str] = mapped_column(String(200))
    scheme: Mapped[str] = mapped_column(String(16), default="local")
    code: Mapped[str] = mapped_column(String(32), default="")
    regions: Mapped[str] = mapped_column(String(400), default="")
    synonyms: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    @property
    def synonym_list(self) -> list[str]:
        return [s for s in self.synonyms.split("|") if s]

    @property
    def region_list(self) -> list[str]:
        return self.regions.split()


class ReportTemplate(Base):
    """A reporting template for one body region (foot, fetlock, thorax...).

    ``zones`` lists the ultrasound zones a finding may name (space-separated);
    ``normal_text`` is offered as the findings text of a normal study.
    """

    __tablename__ = "report_template"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(TERM_KEY_MAX), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    modality: Mapped[str] = mapped_column(String(CS_MAX))
    technique: Mapped[str] = mapped_column(Text, default="")
    normal_text: Mapped[str] = mapped_column(Text, default="")
    zones: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    ordinal: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def zone_list(self) -> list[str]:
        return self.zones.split()


class Report(Base):
    """One version of the report on one study.

    ``content_json`` is the canonical JSON that was signed and
    ``content_sha256`` its digest; both are None until sign-off. The
    ``horse_id``, ``requesting_clinician_id`` and ``modality`` columns copy the
    study's context at creation so that search filters need no joins.
    """

    __tablename__ = "report"
    __table_args__ = (
        UniqueConstraint("study_id", "version"),
        # Findings search walks current signed reports newest first.
        Index(
            "ix_report_current_signed",
            "status",
            "superseded_by_id",
            "signed_at",
            "id",
        ),
        Index("ix_report_status_study", "status", "study_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("imaging_study.id"))
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("imaging_order.id"), index=True
    )
    horse_id: Mapped[int | None] = mapped_column(ForeignKey("horse.id"), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[str] = mapped_column(String(16), default=ReportKind.REPORT)
    status: Mapped[str] = mapped_column(String(16), default=ReportStatus.DRAFT)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("report.id"))
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("report.id"))
    template_key: Mapped[str | None] = mapped_column(String(TERM_KEY_MAX))
    modality: Mapped[str | None] = mapped_column(String(CS_MAX))
    title: Mapped[str] = mapped_column(String(200), default="")
    clinical_history: Mapped[str] = mapped_column(Text, default="")
    technique: Mapped[str] = mapped_column(Text, default="")
    impression: Mapped[str] = mapped_column(Text, default="")
    recommendations: Mapped[str] = mapped_column(Text, default="")
    requesting_clinician_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id"), index=True
    )
    author_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    preliminary_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    preliminary_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    signed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    signed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id"), index=True
    )
    content_json: Mapped[str | None] = mapped_column(Text)
    content_sha256: Mapped[str | None] = mapped_column(String(64))

    # Received reports: the DICOM instance that carried the report.
    external_instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("imaging_instance.id"), unique=True
    )
    external_text: Mapped[str] = mapped_column(Text, default="")

    # Documents written by the job that follows sign-off.
    representative_instance_id: Mapped[int | None] = mapped_column(
        ForeignKey("imaging_instance.id")
    )
    document_status: Mapped[str] = mapped_column(
        String(16), default=DocumentStatus.NONE
    )
    pdf_blob_key: Mapped[str | None] = mapped_column(String(BLOB_KEY_MAX))
    pdf_sha256: Mapped[str | None] = mapped_column(String(64))
    thumbnail_blob_key: Mapped[str | None] = mapped_column(String(BLOB_KEY_MAX))
    documents_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    findings: Mapped[list[ReportFinding]] = relationship(
        back_populates="report",
        order_by="ReportFinding.ordinal",
        cascade="all, delete-orphan",
    )
    key_images: Mapped[list[ReportKeyImage]] = relationship(
        back_populates="report",
        order_by="ReportKeyImage.ordinal",
        cascade="all, delete-orphan",
    )

    @property
    def is_signed(self) -> bool:
        return self.status == ReportStatus.FINAL


class ReportFinding(Base):
    """One coded finding: limb, structure, finding, grade and free text.

    The display names and codes of the structure and finding are copied from
    the vocabulary when the finding is saved, so a later edit of a term never
    changes what a signed report says. ``location`` holds an ultrasound zone
    (such as ``2B``) or another short location within the structure.
    """

    __tablename__ = "report_finding"
    __table_args__ = (
        Index("ix_report_finding_finding_limb", "finding_key", "limb"),
        Index("ix_report_finding_structure", "structure_key"),
        Index("ix_report_finding_region", "region_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(
        ForeignKey("report.id", ondelete="CASCADE"), index=True
    )
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    limb: Mapped[str] = mapped_column(String(2))
    region_key: Mapped[str] = mapped_column(String(TERM_KEY_MAX))
    structure_key: Mapped[str] = mapped_column(String(TERM_KEY_MAX))
    structure_display: Mapped[str] = mapped_column(String(200))
    structure_scheme: Mapped[str] = mapped_column(String(16))
    structure_code: Mapped[str] = mapped_column(String(32))
    finding_key: Mapped[str] = mapped_column(String(TERM_KEY_MAX))
    finding_display: Mapped[str] = mapped_column(String(200))
    finding_scheme: Mapped[str] = mapped_column(String(16))
    finding_code: Mapped[str] = mapped_column(String(32))
    grade: Mapped[int | None] = mapped_column(Integer)
    location: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")

    report: Mapped[Report] = relationship(back_populates="findings")


class ReportKeyImage(Base):
    """An instance the radiologist marked as a key image of the report."""

    __tablename__ = "report_key_image"
    __table_args__ = (UniqueConstraint("report_id", "instance_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(
        ForeignKey("report.id", ondelete="CASCADE"), index=True
    )
    instance_id: Mapped[int] = mapped_column(ForeignKey("imaging_instance.id"))
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    caption: Mapped[str] = mapped_column(String(200), default="")

    report: Mapped[Report] = relationship(back_populates="key_images")


class ReportSearchToken(Base):
    """One normalised word of a current signed report; the findings search index.

    The primary key ``(report_id, token)`` answers "does this report have a
    word starting so"; the ``(token, signed_at, report_id)`` index answers
    "which reports have it, newest first" without reading the reports.
    ``signed_at`` is copied from the report for that reason.
    """

    __tablename__ = "report_search_token"
    __table_args__ = (
        Index("ix_report_search_token_token", "token", "signed_at", "report_id"),
    )

    report_id: Mapped[int] = mapped_column(
        ForeignKey("report.id", ondelete="CASCADE"), primary_key=True
    )
    token: Mapped[str] = mapped_column(String(TOKEN_MAX), primary_key=True)
    signed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ReadingClaim(Base):
    """A radiologist reading a study; at most one per study."""

    __tablename__ = "reading_claim"

    study_id: Mapped[int] = mapped_column(
        ForeignKey("imaging_study.id"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), index=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notification(Base):
    """A message to one user, shown in the page header until read."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_user_read", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(String(400))
    horse_id: Mapped[int | None] = mapped_column(ForeignKey("horse.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
