"""Charge lines: post, reverse and waive them, and read them back.

A charge is posted to a visit and never edited or deleted; a reversal or
waiver is a negative line pointing at the line it cancels. Every function
takes the caller's ``db_session`` and leaves committing to the caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.billing import fees
from fetlock.billing.models import (
    CREDIT_KINDS,
    Charge,
    ChargeKind,
    Invoice,
    InvoiceLine,
)
from fetlock.config import Settings, get_settings
from fetlock.db.base import utcnow
from fetlock.practice.models import Visit
from fetlock.web.errors import Conflict, DomainError, NotFound

DESCRIPTION_MAX = 200


def resolve_settings(settings: Settings | None) -> Settings:
    """Return ``settings``, or the process settings when None."""
    return settings or get_settings()


def tax_on(amount: int, rate: int) -> int:
    """Tax on ``amount`` at ``rate`` hundredths of a percent, rounded half up.

    A negative amount gets the negated tax of its absolute value, so a credit
    cancels its charge's tax exactly.
    """
    if amount < 0:
        return -tax_on(-amount, rate)
    return (amount * rate + fees.MAX_TAX_RATE // 2) // fees.MAX_TAX_RATE


def local_date(moment: dt.datetime, settings: Settings | None = None) -> dt.date:
    """Return the calendar date of ``moment`` in the practice's time zone."""
    return moment.astimezone(resolve_settings(settings).zone).date()


def clip(text: str) -> str:
    """Shorten ``text`` to fit a description column."""
    return text if len(text) <= DESCRIPTION_MAX else text[: DESCRIPTION_MAX - 1] + "…"


# --------------------------------------------------------------------------
# Posting, reversing and waiving charges
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LineSpec:
    """A charge line to post: what it is for and its price."""

    kind: ChargeKind
    fee_code: str
    description: str
    quantity: int
    unit_price: int
    tax_rate: int

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


def post_charge(
    db_session: Session,
    actor: audit.Actor,
    visit: Visit,
    spec: LineSpec,
    *,
    service_date: dt.date,
    order_id: int | None = None,
    study_id: int | None = None,
    reason: str | None = None,
) -> Charge:
    """Post one service line to ``visit``. Invoices are not touched here."""
    if spec.quantity <= 0:
        raise DomainError(
            f"quantity {spec.quantity} of {spec.fee_code!r} must be at least 1",
            field="quantity",
            value=spec.quantity,
        )
    charge = Charge(
        visit_id=visit.id,
        horse_id=visit.horse_id,
        order_id=order_id,
        study_id=study_id,
        kind=spec.kind.value,
        fee_code=spec.fee_code,
        description=clip(spec.description),
        quantity=spec.quantity,
        unit_price=spec.unit_price,
        amount=spec.amount,
        tax_rate=spec.tax_rate,
        tax_amount=tax_on(spec.amount, spec.tax_rate),
        service_date=service_date,
        reason=reason,
        created_at=utcnow(),
        created_by_id=actor.user_id,
    )
    db_session.add(charge)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "charge.post",
        "charge",
        charge.id,
        horse_id=visit.horse_id,
        detail={
            "visit_id": visit.id,
            "order_id": order_id,
            "study_id": study_id,
            "kind": charge.kind,
            "fee_code": charge.fee_code,
            "quantity": charge.quantity,
            "amount": charge.amount,
            "tax_amount": charge.tax_amount,
        },
    )
    return charge


def credit_charge(
    db_session: Session,
    actor: audit.Actor,
    charge: Charge,
    *,
    kind: ChargeKind,
    reason: str,
) -> Charge:
    """Post a reversal or waiver line that cancels ``charge`` exactly."""
    if kind not in CREDIT_KINDS:
        raise ValueError(f"{kind!r} is not a credit kind")
    if charge.is_credit:
        raise Conflict(
            f"charge {charge.id} is itself a {charge.kind}; it cannot be credited",
            field="charge_id",
            value=charge.id,
        )
    if credit_of(db_session, charge) is not None:
        raise Conflict(
            f"charge {charge.id} has already been reversed or waived",
            field="charge_id",
            value=charge.id,
        )
    label = "Reversal" if kind == ChargeKind.REVERSAL else "Waived"
    credit = Charge(
        visit_id=charge.visit_id,
        horse_id=charge.horse_id,
        order_id=charge.order_id,
        study_id=charge.study_id,
        reverses_id=charge.id,
        kind=kind.value,
        fee_code=charge.fee_code,
        description=clip(f"{label}: {charge.description}"),
        quantity=charge.quantity,
        unit_price=-charge.unit_price,
        amount=-charge.amount,
        tax_rate=charge.tax_rate,
        tax_amount=-charge.tax_amount,
        service_date=charge.service_date,
        reason=reason,
        created_at=utcnow(),
        created_by_id=actor.user_id,
    )
    db_session.add(credit)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        f"charge.{kind.value}",
        "charge",
        credit.id,
        horse_id=charge.horse_id,
        detail={
            "credits_charge_id": charge.id,
            "order_id": charge.order_id,
            "amount": credit.amount,
            "reason": reason,
        },
    )
    return credit


def credit_of(db_session: Session, charge: Charge) -> Charge | None:
    """Return the reversal or waiver line that cancels ``charge``, if any."""
    return db_session.execute(
        select(Charge).where(Charge.reverses_id == charge.id)
    ).scalar_one_or_none()


def active_charges(
    db_session: Session,
    *,
    order_id: int | None = None,
    study_id: int | None = None,
    kinds: Iterable[ChargeKind] | None = None,
) -> list[Charge]:
    """Service lines of an order or a study that nothing has cancelled."""
    credit = Charge.__table__.alias("credit")
    query = select(Charge).where(
        Charge.kind.not_in([k.value for k in CREDIT_KINDS]),
        ~exists().where(credit.c.reverses_id == Charge.id),
    )
    if order_id is not None:
        query = query.where(Charge.order_id == order_id)
    if study_id is not None:
        query = query.where(Charge.study_id == study_id)
    if kinds is not None:
        query = query.where(Charge.kind.in_([k.value for k in kinds]))
    return list(db_session.execute(query.order_by(Charge.id)).scalars())


def charges_for_order(db_session: Session, order_id: int) -> list[Charge]:
    return list(
        db_session.execute(
            select(Charge).where(Charge.order_id == order_id).order_by(Charge.id)
        ).scalars()
    )


def charges_for_visit(db_session: Session, visit_id: int) -> list[Charge]:
    return list(
        db_session.execute(
            select(Charge).where(Charge.visit_id == visit_id).order_by(Charge.id)
        ).scalars()
    )


def get_charge(db_session: Session, charge_id: int) -> Charge:
    charge = db_session.get(Charge, charge_id)
    if charge is None:
        raise NotFound(
            f"charge {charge_id} does not exist", field="charge_id", value=charge_id
        )
    return charge


def get_visit(db_session: Session, visit_id: int) -> Visit:
    visit = db_session.get(Visit, visit_id)
    if visit is None:
        raise NotFound(
            f"visit {visit_id} does not exist", field="visit_id", value=visit_id
        )
    return visit


def list_charges(
    db_session: Session,
    *,
    visit_id: int | None = None,
    order_id: int | None = None,
    horse_id: int | None = None,
    client_id: int | None = None,
) -> list[Charge]:
    """Charge lines matching every filter given, oldest first.

    ``client_id`` selects charges that appear on that client's invoices.
    """
    query = select(Charge)
    if visit_id is not None:
        query = query.where(Charge.visit_id == visit_id)
    if order_id is not None:
        query = query.where(Charge.order_id == order_id)
    if horse_id is not None:
        query = query.where(Charge.horse_id == horse_id)
    if client_id is not None:
        query = query.where(
            exists()
            .where(InvoiceLine.charge_id == Charge.id)
            .where(InvoiceLine.invoice_id == Invoice.id)
            .where(Invoice.client_id == client_id)
        )
    return list(db_session.execute(query.order_by(Charge.id)).scalars())
