"""Charges that follow imaging: orders placed, edited and cancelled, studies received.

Every function takes the caller's ``db_session`` and leaves committing to the
caller, so a charge and the order change that caused it share one transaction.
If anything fails (an unknown fee code, owners' shares that do not add up to
100 %), nothing of it is saved. The billing hooks call these functions; the
charge lines themselves are in ``charges`` and the owners' invoices in
``invoices``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.billing import fees
from fetlock.billing.charges import (
    LineSpec,
    active_charges,
    credit_charge,
    get_visit,
    local_date,
    post_charge,
)
from fetlock.billing.invoices import sync_visit_invoices
from fetlock.billing.models import Charge, ChargeKind, ExtraViewsPolicy, FeeItem
from fetlock.config import Settings
from fetlock.db.base import utcnow
from fetlock.imaging.models import ImagingOrder, Procedure
from fetlock.imaging.study_models import Instance, Study
from fetlock.web.errors import Conflict, DomainError

# Service kinds an order posts; extra views are tracked apart.
ORDER_KINDS = (ChargeKind.PROCEDURE, ChargeKind.VIEWS)

# (0008,0060) Modality values where each image is one radiographic view, so
# images beyond the ordered views are views beyond the order.
ONE_IMAGE_PER_VIEW_MODALITIES = frozenset({"DX", "CR"})


# --------------------------------------------------------------------------
# Imaging orders
# --------------------------------------------------------------------------


def order_service_date(
    order: ImagingOrder, settings: Settings | None = None
) -> dt.date:
    """Return the service date of an order: its scheduled start's local date."""
    return local_date(order.scheduled_start or order.created_at or utcnow(), settings)


@dataclass(frozen=True)
class ViewPrice:
    """The fee code, price and tax rate of one view beyond the standard set."""

    fee_code: str
    unit_price: int
    tax_rate: int


def view_price(
    db_session: Session, procedure: Procedure, base: FeeItem
) -> ViewPrice | None:
    """Return the price of a view beyond the procedure's standard set.

    That is the base item's own ``view_price`` when above zero, else the unit
    price of the catalog's ``per_view_fee_code``. None means extra views are
    free.
    """
    per_view = None
    if procedure.per_view_fee_code:
        per_view = fees.fee_for_charge(
            db_session,
            procedure.per_view_fee_code,
            field="procedure.per_view_fee_code",
        )
    if base.view_price > 0:
        return ViewPrice(base.code, base.view_price, base.tax_rate)
    if per_view is not None and per_view.unit_price > 0:
        return ViewPrice(per_view.code, per_view.unit_price, per_view.tax_rate)
    return None


def standard_view_count(procedure: Procedure) -> int:
    """Views in the procedure's standard set, which its base fee covers."""
    return sum(1 for view in procedure.views if view.default_selected)


def order_lines(db_session: Session, order: ImagingOrder) -> list[LineSpec]:
    """Return an order's charge lines: the base fee, then views beyond the
    standard set."""
    procedure = order.procedure
    base = fees.fee_for_charge(
        db_session, procedure.fee_code, field="procedure.fee_code"
    )
    price = view_price(db_session, procedure, base)
    lines = [
        LineSpec(
            kind=ChargeKind.PROCEDURE,
            fee_code=base.code,
            description=f"{base.description} (accession {order.accession_number})",
            quantity=1,
            unit_price=base.unit_price,
            tax_rate=base.tax_rate,
        )
    ]
    standard = standard_view_count(procedure)
    beyond = len(order.views) - standard
    if beyond > 0 and price is not None:
        codes = ", ".join(view.code for view in order.views)
        lines.append(
            LineSpec(
                kind=ChargeKind.VIEWS,
                fee_code=price.fee_code,
                description=(
                    f"Views beyond the standard {standard} of {procedure.code} "
                    f"(ordered: {codes})"
                ),
                quantity=beyond,
                unit_price=price.unit_price,
                tax_rate=price.tax_rate,
            )
        )
    return lines


def post_order_charges(
    db_session: Session,
    actor: audit.Actor,
    order: ImagingOrder,
    *,
    settings: Settings | None = None,
) -> list[Charge]:
    """Post an order's charge lines to its visit and refresh its invoices."""
    visit = get_visit(db_session, order.visit_id)
    day = order_service_date(order, settings)
    posted = [
        post_charge(db_session, actor, visit, spec, service_date=day, order_id=order.id)
        for spec in order_lines(db_session, order)
    ]
    sync_visit_invoices(db_session, actor, visit, settings=settings)
    return posted


def reprice_order(
    db_session: Session,
    actor: audit.Actor,
    order: ImagingOrder,
    *,
    settings: Settings | None = None,
) -> tuple[list[Charge], list[Charge]]:
    """Bring an order's charges in line with its procedure and views.

    A line that no longer matches is reversed in full and the new line posted,
    so the chart shows what changed. Return ``(credits, posted)``.
    """
    wanted = order_lines(db_session, order)
    active = active_charges(db_session, order_id=order.id, kinds=ORDER_KINDS)
    unmatched_active = list(active)
    missing: list[LineSpec] = []
    for spec in wanted:
        match = next(
            (
                c
                for c in unmatched_active
                if (c.kind, c.fee_code, c.quantity)
                == (spec.kind.value, spec.fee_code, spec.quantity)
            ),
            None,
        )
        if match is None:
            missing.append(spec)
        else:
            unmatched_active.remove(match)
    if not missing and not unmatched_active:
        return [], []

    visit = get_visit(db_session, order.visit_id)
    credits = [
        credit_charge(
            db_session,
            actor,
            charge,
            kind=ChargeKind.REVERSAL,
            reason="order changed before acquisition",
        )
        for charge in unmatched_active
    ]
    day = order_service_date(order, settings)
    posted = [
        post_charge(db_session, actor, visit, spec, service_date=day, order_id=order.id)
        for spec in missing
    ]
    sync_visit_invoices(db_session, actor, visit, settings=settings)
    return credits, posted


def order_has_images(db_session: Session, order_id: int) -> bool:
    """True once any instance of a study linked to the order is stored."""
    return bool(
        db_session.execute(
            select(
                exists()
                .where(Instance.study_id == Study.id)
                .where(Study.order_id == order_id)
            )
        ).scalar()
    )


def images_received(db_session: Session, order_id: int) -> int:
    """Image instances (views) received in the studies linked to an order."""
    rows = db_session.execute(
        select(Instance.rows, Instance.columns)
        .join(Study, Study.id == Instance.study_id)
        .where(Study.order_id == order_id)
    ).all()
    return sum(1 for rows_, columns in rows if rows_ and columns)


def cancel_order_charges(
    db_session: Session,
    actor: audit.Actor,
    order: ImagingOrder,
    *,
    settings: Settings | None = None,
) -> list[Charge]:
    """Reverse an order's charges, unless images exist; return the credits.

    Once images exist the charge stays: the service was performed. The
    cancellation must then carry a reason, and only a waiver by reception or
    an administrator removes the charge.
    """
    reason = (order.cancel_reason or "").strip()
    if order_has_images(db_session, order.id):
        if not reason:
            raise DomainError(
                f"order {order.accession_number} already has images, so "
                "cancelling it needs a reason; give one (the charge stays "
                "unless reception waives it)",
                field="reason",
                value=order.cancel_reason,
            )
        audit.record(
            db_session,
            actor,
            "charge.keep",
            "imaging_order",
            order.id,
            horse_id=order.horse_id,
            detail={
                "accession_number": order.accession_number,
                "reason": reason,
                "charges": [
                    c.id for c in active_charges(db_session, order_id=order.id)
                ],
            },
        )
        return []

    credits = [
        credit_charge(
            db_session,
            actor,
            charge,
            kind=ChargeKind.REVERSAL,
            reason=f"order cancelled before acquisition: {reason}"
            if reason
            else "order cancelled before acquisition",
        )
        for charge in active_charges(db_session, order_id=order.id)
    ]
    if credits:
        sync_visit_invoices(
            db_session, actor, get_visit(db_session, order.visit_id), settings=settings
        )
    return credits


def waive_order(
    db_session: Session,
    actor: audit.Actor,
    order: ImagingOrder,
    *,
    reason: str,
    settings: Settings | None = None,
) -> list[Charge]:
    """Waive every live charge of an order (reception or admin decide)."""
    reason = reason.strip()
    if not reason:
        raise DomainError(
            "a waiver needs a reason; say why the practice will not charge",
            field="reason",
            value=reason,
        )
    charges = active_charges(db_session, order_id=order.id)
    if not charges:
        raise Conflict(
            f"order {order.accession_number} has no charge left to waive",
            field="order_id",
            value=order.id,
        )
    credits = [
        credit_charge(db_session, actor, c, kind=ChargeKind.WAIVER, reason=reason)
        for c in charges
    ]
    sync_visit_invoices(
        db_session, actor, get_visit(db_session, order.visit_id), settings=settings
    )
    return credits


@dataclass(frozen=True)
class ViewCount:
    """Views ordered, images received and views charged beyond the order.

    ``one_image_per_view`` is False for modalities such as ultrasound, because
    there the image count does not measure the views (zones) examined, so no
    extra views are counted.
    """

    ordered: int
    received: int
    charged_extra: int
    one_image_per_view: bool

    @property
    def uncharged(self) -> int:
        if not self.one_image_per_view:
            return 0
        return max(0, self.received - self.ordered - self.charged_extra)


def view_count(db_session: Session, order: ImagingOrder) -> ViewCount:
    extra = active_charges(
        db_session, order_id=order.id, kinds=(ChargeKind.EXTRA_VIEWS,)
    )
    return ViewCount(
        ordered=len(order.views),
        received=images_received(db_session, order.id),
        charged_extra=sum(c.quantity for c in extra),
        one_image_per_view=order.modality in ONE_IMAGE_PER_VIEW_MODALITIES,
    )


def extra_view_line(
    db_session: Session, order: ImagingOrder, quantity: int
) -> LineSpec | None:
    """Return the line for ``quantity`` views beyond the order, or None if free."""
    base = fees.fee_for_charge(
        db_session, order.procedure.fee_code, field="procedure.fee_code"
    )
    price = view_price(db_session, order.procedure, base)
    if price is None or quantity <= 0:
        return None
    return LineSpec(
        kind=ChargeKind.EXTRA_VIEWS,
        fee_code=price.fee_code,
        description=(
            f"Views received beyond the order (accession {order.accession_number})"
        ),
        quantity=quantity,
        unit_price=price.unit_price,
        tax_rate=price.tax_rate,
    )


def charge_extra_views(
    db_session: Session,
    actor: audit.Actor,
    order: ImagingOrder,
    *,
    settings: Settings | None = None,
) -> Charge | None:
    """Charge the views received beyond the order that are not charged yet."""
    count = view_count(db_session, order)
    spec = extra_view_line(db_session, order, count.uncharged)
    if spec is None:
        return None
    visit = get_visit(db_session, order.visit_id)
    charge = post_charge(
        db_session,
        actor,
        visit,
        spec,
        service_date=order_service_date(order, settings),
        order_id=order.id,
        reason=f"{count.received} views received, {count.ordered} ordered",
    )
    sync_visit_invoices(db_session, actor, visit, settings=settings)
    return charge


def study_received(
    db_session: Session,
    actor: audit.Actor,
    study: Study,
    *,
    settings: Settings | None = None,
) -> Charge | None:
    """React to a stored or newly linked study.

    A study with no order waits on the missed-charge report. For an order
    whose charge is live, views beyond those ordered are charged at once or
    left for review, following the practice's ``extra_views_policy``.
    """
    if study.order_id is None:
        return None
    order = db_session.get(ImagingOrder, study.order_id)
    if order is None or not active_charges(
        db_session, order_id=order.id, kinds=ORDER_KINDS
    ):
        return None
    count = view_count(db_session, order)
    if count.uncharged <= 0:
        return None
    if fees.extra_views_policy(db_session) == ExtraViewsPolicy.CHARGE:
        return charge_extra_views(db_session, actor, order, settings=settings)
    audit.record(
        db_session,
        actor,
        "charge.views_flagged",
        "imaging_order",
        order.id,
        horse_id=order.horse_id,
        detail={
            "accession_number": order.accession_number,
            "ordered": count.ordered,
            "received": count.received,
            "uncharged": count.uncharged,
        },
    )
    return None
