"""Procedure catalog, remote modalities, imaging orders, worklist steps, MPPS.

An ``ImagingOrder`` is one Requested Procedure (PS3.3 C.4.11): it carries the
Accession Number, Requested Procedure ID and Study Instance UID, allocated once
when the order is saved and never changed afterwards. Each order has one or
more ``ScheduledProcedureStep`` rows, which are the Modality Worklist items
(PS3.4 K.6). ``MppsInstance`` rows keep every Modality Performed Procedure Step
received, linked to its order where one matches and flagged where none does.
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

# Maximum lengths fixed by the DICOM value representations (PS3.5 6.2).
AE_TITLE_MAX = 16  # AE
SH_MAX = 16  # SH: Accession Number, Requested Procedure ID, SPS ID
UI_MAX = 64  # UI: every UID
CS_MAX = 16  # CS: Modality and other code strings


class Limb(enum.StrEnum):
    """Limb codes used in view codes such as ``LF-LM``."""

    LF = "LF"
    RF = "RF"
    LH = "LH"
    RH = "RH"


class OrderStatus(enum.StrEnum):
    """Life cycle of an imaging order.

    ``scheduled`` -> ``in_progress`` -> ``completed``; ``discontinued`` when the
    modality stops a started step; ``cancelled`` when the practice withdraws
    the order before acquisition. ``reported`` once a final report on the
    order's study is signed (set by ``fetlock.reporting``).
    """

    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REPORTED = "reported"
    DISCONTINUED = "discontinued"
    CANCELLED = "cancelled"


class RequestedProcedurePriority(enum.StrEnum):
    """Defined terms of (0040,1003) Requested Procedure Priority."""

    STAT = "STAT"
    HIGH = "HIGH"
    ROUTINE = "ROUTINE"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


class ScheduledProcedureStepStatus(enum.StrEnum):
    """Defined terms of (0040,0020) Scheduled Procedure Step Status used here."""

    SCHEDULED = "SCHEDULED"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"
    CANCELED = "CANCELED"


class PerformedProcedureStepStatus(enum.StrEnum):
    """Enumerated values of (0040,0252) Performed Procedure Step Status."""

    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"


class SpecificCharacterSet(enum.StrEnum):
    """Character sets a remote modality may be configured for."""

    UTF8 = "ISO_IR 192"
    LATIN1 = "ISO_IR 100"


class Procedure(Base):
    """A catalog entry: a study type with its modality, view set and fee code.

    ``limb_choice`` lists the limbs an order may pick (space-separated, for
    example ``"LF RF"`` for a front-foot series); empty means the views name
    their own limbs or none. ``fee_code`` prices the study and
    ``per_view_fee_code``, when set, prices each view beyond the standard set.
    """

    __tablename__ = "imaging_procedure"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(SH_MAX), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str] = mapped_column(String(CS_MAX))
    body_region: Mapped[str] = mapped_column(String(64))
    body_part_examined: Mapped[str | None] = mapped_column(String(CS_MAX))
    limb_choice: Mapped[str] = mapped_column(String(16), default="")
    fee_code: Mapped[str] = mapped_column(String(32))
    per_view_fee_code: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    views: Mapped[list[ProcedureView]] = relationship(
        back_populates="procedure",
        order_by="ProcedureView.ordinal",
        cascade="all, delete-orphan",
    )

    @property
    def limbs(self) -> list[str]:
        return self.limb_choice.split()


class ProcedureView(Base):
    """One view of a procedure's standard set.

    ``limb`` pins the view to a limb; None means the limb chosen on the order
    (or no limb, for a procedure without ``limb_choice``).
    """

    __tablename__ = "imaging_procedure_view"
    __table_args__ = (UniqueConstraint("procedure_id", "limb", "projection"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    procedure_id: Mapped[int] = mapped_column(
        ForeignKey("imaging_procedure.id", ondelete="CASCADE"), index=True
    )
    projection: Mapped[str] = mapped_column(String(32))
    limb: Mapped[str | None] = mapped_column(String(2))
    description: Mapped[str] = mapped_column(String(200))
    default_selected: Mapped[bool] = mapped_column(Boolean, default=True)
    ordinal: Mapped[int] = mapped_column(Integer, default=0)

    procedure: Mapped[Procedure] = relationship(back_populates="views")


class RemoteAE(Base):
    """A remote DICOM node (a modality) allowed to call Fetlock.

    ``character_set`` is the Specific Character Set sent in its worklist
    responses. With ``restrict_worklist_to_own_ae``, a query that leaves
    (0040,0001) Scheduled Station AE Title empty only returns this station's
    items.
    """

    __tablename__ = "dicom_remote_ae"

    id: Mapped[int] = mapped_column(primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(AE_TITLE_MAX), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    modality: Mapped[str] = mapped_column(String(CS_MAX))
    description: Mapped[str | None] = mapped_column(String(200))
    station_name: Mapped[str | None] = mapped_column(String(CS_MAX))
    character_set: Mapped[str] = mapped_column(
        String(32), default=SpecificCharacterSet.UTF8
    )
    restrict_worklist_to_own_ae: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImagingOrder(Base):
    """A requested imaging procedure for one horse, within one visit."""

    __tablename__ = "imaging_order"

    id: Mapped[int] = mapped_column(primary_key=True)
    horse_id: Mapped[int] = mapped_column(ForeignKey("horse.id"), index=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    procedure_id: Mapped[int] = mapped_column(ForeignKey("imaging_procedure.id"))
    modality: Mapped[str] = mapped_column(String(CS_MAX))
    status: Mapped[str] = mapped_column(
        String(16), default=OrderStatus.SCHEDULED, index=True
    )
    accession_number: Mapped[str] = mapped_column(String(SH_MAX), unique=True)
    requested_procedure_id: Mapped[str] = mapped_column(String(SH_MAX), unique=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UI_MAX), unique=True)
    limb: Mapped[str | None] = mapped_column(String(2))
    requesting_clinician_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id"), index=True
    )
    station_id: Mapped[int | None] = mapped_column(
        ForeignKey("dicom_remote_ae.id"), index=True
    )
    scheduled_start: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    priority: Mapped[str] = mapped_column(
        String(16), default=RequestedProcedurePriority.ROUTINE
    )
    clinical_history: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(Text)

    procedure: Mapped[Procedure] = relationship(lazy="joined")
    station: Mapped[RemoteAE | None] = relationship(lazy="joined")
    views: Mapped[list[OrderView]] = relationship(
        back_populates="order",
        order_by="OrderView.ordinal",
        cascade="all, delete-orphan",
    )
    steps: Mapped[list[ScheduledProcedureStep]] = relationship(
        back_populates="order",
        order_by="ScheduledProcedureStep.id",
        cascade="all, delete-orphan",
    )

    @property
    def open_for_edit(self) -> bool:
        """True until acquisition starts (and while not cancelled)."""
        return self.status == OrderStatus.SCHEDULED

    @property
    def open_for_cancel(self) -> bool:
        """True until acquisition ends; billing keeps the charge once images exist."""
        return self.status in (OrderStatus.SCHEDULED, OrderStatus.IN_PROGRESS)


class OrderView(Base):
    """A view ordered for a study, such as ``LF-LM`` (left fore lateromedial)."""

    __tablename__ = "imaging_order_view"
    __table_args__ = (UniqueConstraint("order_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("imaging_order.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(48))
    limb: Mapped[str | None] = mapped_column(String(2))
    projection: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(200))
    ordinal: Mapped[int] = mapped_column(Integer, default=0)

    order: Mapped[ImagingOrder] = relationship(back_populates="views")


class ScheduledProcedureStep(Base):
    """A Scheduled Procedure Step: one Modality Worklist item (PS3.4 K.6)."""

    __tablename__ = "scheduled_procedure_step"
    __table_args__ = (Index("ix_sps_status_start", "status", "scheduled_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("imaging_order.id", ondelete="CASCADE"), index=True
    )
    sps_id: Mapped[str] = mapped_column(String(SH_MAX), unique=True)
    station_ae_title: Mapped[str | None] = mapped_column(
        String(AE_TITLE_MAX), index=True
    )
    station_name: Mapped[str | None] = mapped_column(String(CS_MAX))
    modality: Mapped[str] = mapped_column(String(CS_MAX), index=True)
    scheduled_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    description: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(
        String(16), default=ScheduledProcedureStepStatus.SCHEDULED
    )

    order: Mapped[ImagingOrder] = relationship(back_populates="steps")


class MppsInstance(Base):
    """A Modality Performed Procedure Step SOP Instance (PS3.4 F.7).

    ``order_id`` is None and ``unmatched`` True when the Scheduled Step
    Attribute Sequence names no known order; the row is kept for
    reconciliation. ``attributes_json`` is the latest full dataset as DICOM
    JSON (PS3.18 F.2).
    """

    __tablename__ = "mpps_instance"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(UI_MAX), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("imaging_order.id"), index=True
    )
    step_id: Mapped[int | None] = mapped_column(
        ForeignKey("scheduled_procedure_step.id"), index=True
    )
    unmatched: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    calling_ae_title: Mapped[str] = mapped_column(String(AE_TITLE_MAX))
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_instance_uid: Mapped[str | None] = mapped_column(String(UI_MAX))
    scheduled_procedure_step_id: Mapped[str | None] = mapped_column(String(64))
    performed_procedure_step_id: Mapped[str | None] = mapped_column(String(64))
    performed_station_ae_title: Mapped[str | None] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(CS_MAX))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attributes_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    order: Mapped[ImagingOrder | None] = relationship()
