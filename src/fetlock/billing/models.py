"""Fee schedule, charges, invoices and their lines, billing settings.

Money is in integer minor units of the practice currency; tax rates and
ownership shares are in hundredths of a percent (2000 is 20 %).

A ``Charge`` is a line posted to a visit: positive for a service, negative for
a reversal or a waiver, which points at the line it cancels. Charges are never
edited or deleted. Each charge is split between the owners in force on its
service date. An owner's part of it is an ``InvoiceLine`` on that owner's
invoice for the visit. Draft invoices follow the charges; an issued invoice
never changes, and is corrected by a credit note.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fetlock.db.base import Base, UTCDateTime, utcnow
from fetlock.practice.models import Client, Horse, Visit

FEE_CODE_MAX = 32


class ChargeKind(enum.StrEnum):
    """The purpose of a charge line."""

    PROCEDURE = "procedure"  # an ordered study's base fee
    VIEWS = "views"  # the ordered views
    EXTRA_VIEWS = "extra_views"  # views received beyond those ordered
    STUDY = "study"  # a study received with no order (unscheduled, imported)
    MANUAL = "manual"  # posted by hand
    REVERSAL = "reversal"  # cancels a line: order cancelled or re-priced
    WAIVER = "waiver"  # cancels a line the practice decided not to charge


# Kinds that cancel another line; every other kind is a service.
CREDIT_KINDS = frozenset({ChargeKind.REVERSAL, ChargeKind.WAIVER})


class InvoiceStatus(enum.StrEnum):
    """``draft`` -> ``issued`` -> ``paid``; ``issued`` -> ``void``."""

    DRAFT = "draft"
    ISSUED = "issued"
    PAID = "paid"
    VOID = "void"


class InvoiceKind(enum.StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


class ExtraViewsPolicy(enum.StrEnum):
    """The practice's rule for views received beyond those ordered."""

    CHARGE = "charge"  # post an extra-views line at once
    REVIEW = "review"  # list them on the missed-charge report


class FeeItem(Base):
    """A fee schedule entry: a procedure code and its prices.

    ``unit_price`` is the base fee, which covers a procedure's standard set of
    views. ``view_price``, when above zero, is this procedure's add-on for each
    view beyond the standard set; otherwise the catalog's per-view fee code
    prices those views. ``unscheduled_modalities`` (space-separated (0008,0060)
    Modality values) makes this item the estimate for a study of that modality
    received with no order: its base fee plus ``view_price`` for each image.
    """

    __tablename__ = "billing_fee_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(FEE_CODE_MAX), unique=True)
    description: Mapped[str] = mapped_column(String(200))
    unit_price: Mapped[int] = mapped_column(Integer)
    view_price: Mapped[int] = mapped_column(Integer, default=0)
    tax_rate: Mapped[int] = mapped_column(Integer, default=0)
    unscheduled_modalities: Mapped[str] = mapped_column(String(64), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def modalities(self) -> list[str]:
        return self.unscheduled_modalities.split()


class Charge(Base):
    """One line posted to a visit; see the module docstring."""

    __tablename__ = "billing_charge"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    horse_id: Mapped[int] = mapped_column(ForeignKey("horse.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("imaging_order.id"), index=True
    )
    study_id: Mapped[int | None] = mapped_column(
        ForeignKey("imaging_study.id"), index=True
    )
    reverses_id: Mapped[int | None] = mapped_column(
        ForeignKey("billing_charge.id"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    fee_code: Mapped[str] = mapped_column(String(FEE_CODE_MAX))
    description: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(Integer)
    tax_rate: Mapped[int] = mapped_column(Integer)
    tax_amount: Mapped[int] = mapped_column(Integer)
    service_date: Mapped[dt.date] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    visit: Mapped[Visit] = relationship()
    horse: Mapped[Horse] = relationship()

    @property
    def is_credit(self) -> bool:
        return self.kind in CREDIT_KINDS

    @property
    def total(self) -> int:
        return self.amount + self.tax_amount


class Invoice(Base):
    """One owner's invoice (or credit note) for one visit.

    ``number`` is allocated when the invoice is issued; from then on nothing
    on it changes but its payment or void status.
    """

    __tablename__ = "billing_invoice"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default=InvoiceKind.INVOICE)
    status: Mapped[str] = mapped_column(
        String(16), default=InvoiceStatus.DRAFT, index=True
    )
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    horse_id: Mapped[int] = mapped_column(ForeignKey("horse.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"), index=True)
    credit_for_id: Mapped[int | None] = mapped_column(
        ForeignKey("billing_invoice.id"), index=True
    )
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(Integer, default=0)
    tax_total: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    issued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    payment_reference: Mapped[str | None] = mapped_column(String(100))
    voided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    void_reason: Mapped[str | None] = mapped_column(Text)

    client: Mapped[Client] = relationship(lazy="joined")
    horse: Mapped[Horse] = relationship()
    visit: Mapped[Visit] = relationship()
    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice",
        order_by="InvoiceLine.position",
        cascade="all, delete-orphan",
    )
    credit_for: Mapped[Invoice | None] = relationship(remote_side=[id])

    @property
    def label(self) -> str:
        """The number once issued, else ``draft <id>``."""
        return self.number or f"draft {self.id}"


class InvoiceLine(Base):
    """An owner's part of one charge, with the whole charge beside it."""

    __tablename__ = "billing_invoice_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("billing_invoice.id", ondelete="CASCADE"), index=True
    )
    charge_id: Mapped[int | None] = mapped_column(
        ForeignKey("billing_charge.id"), index=True
    )
    credited_line_id: Mapped[int | None] = mapped_column(
        ForeignKey("billing_invoice_line.id")
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    fee_code: Mapped[str] = mapped_column(String(FEE_CODE_MAX))
    description: Mapped[str] = mapped_column(String(200))
    service_date: Mapped[dt.date] = mapped_column(Date)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(Integer)
    charge_amount: Mapped[int] = mapped_column(Integer)
    charge_tax: Mapped[int] = mapped_column(Integer)
    share: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(Integer)
    tax_rate: Mapped[int] = mapped_column(Integer)
    tax_amount: Mapped[int] = mapped_column(Integer)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")
    charge: Mapped[Charge | None] = relationship()

    @property
    def total(self) -> int:
        return self.amount + self.tax_amount


class BillingSetting(Base):
    """A practice-wide billing setting kept in the database, by name."""

    __tablename__ = "billing_setting"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
