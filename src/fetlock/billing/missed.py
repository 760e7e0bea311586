"""The missed-charge report: imaging done but not billed, and the fix for each.

Four kinds of leak are listed for a date range, each with its estimated net
value (before tax) and the one action that charges it:

``unbilled_study``
    A study received with no order (unscheduled, imported), or whose order
    never had a charge. Estimated from the catalog procedure that matches its
    modality and body part, else from the fee item that the schedule names for
    its modality. Action: post that charge to the horse's visit.
``reversed_order``
    An order whose charge was reversed (cancelled or re-priced) although
    images came in for it. Action: post the order's charge again.
``waived_order``
    An order whose charge was waived. Action: post the order's charge again.
``uncharged_views``
    Views received beyond those ordered, left for review by the practice's
    ``extra_views_policy``. Action: charge them.

A reversal before any image is a cancelled service, not a leak, and is not
listed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.billing import charges as charging
from fetlock.billing import fees, service
from fetlock.billing import invoices as invoicing
from fetlock.billing.models import Charge, ChargeKind, FeeItem
from fetlock.billing.service import LineSpec
from fetlock.config import Settings, get_settings
from fetlock.imaging.models import ImagingOrder, Procedure
from fetlock.imaging.study_models import Instance, Series, Study
from fetlock.practice import service as practice
from fetlock.practice.models import Horse, VisitKind
from fetlock.web.errors import Conflict, DomainError, NotFound


class Category:
    UNBILLED_STUDY = "unbilled_study"
    REVERSED_ORDER = "reversed_order"
    WAIVED_ORDER = "waived_order"
    UNCHARGED_VIEWS = "uncharged_views"


CATEGORY_LABELS = {
    Category.UNBILLED_STUDY: "Study with no charge",
    Category.REVERSED_ORDER: "Charge reversed, images received",
    Category.WAIVED_ORDER: "Charge waived",
    Category.UNCHARGED_VIEWS: "Views beyond the order, not charged",
}


@dataclass(frozen=True)
class MissedCharge:
    """One leak: what was done, what it is worth, and how to charge it."""

    category: str
    day: dt.date
    description: str
    estimated_value: int
    fee_code: str | None
    action: str
    horse_id: int | None = None
    horse_name: str | None = None
    study_id: int | None = None
    order_id: int | None = None
    accession_number: str | None = None
    blocked: str | None = None

    @property
    def label(self) -> str:
        return CATEGORY_LABELS[self.category]


@dataclass
class MissedChargeReport:
    """The leaks found between ``start`` and ``end`` (both inclusive)."""

    start: dt.date
    end: dt.date
    currency: str
    items: list[MissedCharge] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(item.estimated_value for item in self.items)

    def subtotals(self) -> dict[str, int]:
        totals = dict.fromkeys(CATEGORY_LABELS, 0)
        for item in self.items:
            totals[item.category] += item.estimated_value
        return totals


def _bounds(
    start: dt.date, end: dt.date, settings: Settings
) -> tuple[dt.datetime, dt.datetime]:
    zone = settings.zone
    return (
        dt.datetime.combine(start, dt.time(), tzinfo=zone),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=zone),
    )


def check_range(start: dt.date, end: dt.date) -> None:
    if end < start:
        raise DomainError(
            f"the range ends ({end.isoformat()}) before it starts "
            f"({start.isoformat()}); swap the dates",
            field="to",
            value=end.isoformat(),
        )


def missed_charges(
    db_session: Session,
    start: dt.date,
    end: dt.date,
    *,
    settings: Settings | None = None,
) -> MissedChargeReport:
    """List every leak dated ``start`` to ``end`` inclusive (practice dates)."""
    settings = settings or get_settings()
    check_range(start, end)
    report = MissedChargeReport(start, end, settings.currency)
    report.items.extend(_unbilled_studies(db_session, start, end, settings))
    report.items.extend(_credited_orders(db_session, start, end))
    report.items.extend(_uncharged_views(db_session, start, end, settings))
    report.items.sort(key=lambda item: (item.day, item.category, item.description))
    return report


# --------------------------------------------------------------------------
# Studies with no charge
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyFacts:
    """A received study's modality, body part and image count."""

    modality: str | None
    body_part: str | None
    images: int


def study_facts(db_session: Session, study: Study) -> StudyFacts:
    series = list(
        db_session.execute(select(Series).where(Series.study_id == study.id)).scalars()
    )
    images = db_session.execute(
        select(func.count(Instance.id)).where(
            Instance.study_id == study.id,
            Instance.rows.is_not(None),
            Instance.columns.is_not(None),
        )
    ).scalar_one()
    modality = next((s.modality for s in series if s.modality), None)
    body_part = next(
        (s.body_part_examined for s in series if s.body_part_examined), None
    )
    return StudyFacts(modality, body_part, images)


def study_lines(db_session: Session, study: Study) -> list[LineSpec]:
    """Return the lines that would charge a study received with no order.

    A single active catalog procedure with the study's modality and (0018,0015)
    Body Part Examined prices it as that procedure would be, views beyond its
    standard set included. Otherwise the fee item named for the modality
    prices it: its base fee plus its view price for each image.
    """
    facts = study_facts(db_session, study)
    label = f"Unscheduled study {study.study_description or study.study_instance_uid}"
    procedure = _matching_procedure(db_session, facts)
    if procedure is not None:
        base = fees.fee_for_charge(
            db_session, procedure.fee_code, field="procedure.fee_code"
        )
        lines = [
            LineSpec(
                ChargeKind.STUDY,
                base.code,
                f"{base.description}: {label}",
                1,
                base.unit_price,
                base.tax_rate,
            )
        ]
        price = service.view_price(db_session, procedure, base)
        beyond = facts.images - service.standard_view_count(procedure)
        if (
            price is not None
            and beyond > 0
            and facts.modality in service.ONE_IMAGE_PER_VIEW_MODALITIES
        ):
            lines.append(
                LineSpec(
                    ChargeKind.VIEWS,
                    price.fee_code,
                    f"Views beyond the standard set of {procedure.code}",
                    beyond,
                    price.unit_price,
                    price.tax_rate,
                )
            )
        return lines

    item = _modality_fee(db_session, facts.modality)
    if item is None:
        raise DomainError(
            f"no fee item prices studies of modality {facts.modality!r}; add the "
            "modality to a fee item's unscheduled_modalities, or charge the study "
            "with an explicit fee_code",
            field="fee_code",
            value=None,
        )
    return _item_lines(item, label, facts.images)


def _item_lines(item: FeeItem, label: str, images: int) -> list[LineSpec]:
    lines = [
        LineSpec(
            ChargeKind.STUDY,
            item.code,
            f"{item.description}: {label}",
            1,
            item.unit_price,
            item.tax_rate,
        )
    ]
    if item.view_price > 0 and images > 0:
        lines.append(
            LineSpec(
                ChargeKind.VIEWS,
                item.code,
                f"Images of the unscheduled study ({images})",
                images,
                item.view_price,
                item.tax_rate,
            )
        )
    return lines


def _matching_procedure(db_session: Session, facts: StudyFacts) -> Procedure | None:
    if not facts.modality or not facts.body_part:
        return None
    matches = list(
        db_session.execute(
            select(Procedure).where(
                Procedure.active.is_(True),
                Procedure.modality == facts.modality,
                func.upper(Procedure.body_part_examined) == facts.body_part.upper(),
            )
        )
        .unique()
        .scalars()
    )
    return matches[0] if len(matches) == 1 else None


def _modality_fee(db_session: Session, modality: str | None) -> FeeItem | None:
    if not modality:
        return None
    for item in fees.list_fees(db_session, include_inactive=False):
        if modality in item.modalities:
            return item
    return None


def _local_day(moment: dt.datetime, settings: Settings) -> dt.date:
    return moment.astimezone(settings.zone).date()


def _horse_names(db_session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = db_session.execute(
        select(Horse.id, Horse.barn_name).where(Horse.id.in_(ids))
    ).all()
    return {horse_id: name for horse_id, name in rows}


def _unbilled_studies(
    db_session: Session, start: dt.date, end: dt.date, settings: Settings
) -> list[MissedCharge]:
    low, high = _bounds(start, end, settings)
    order_charged = exists().where(Charge.order_id == Study.order_id)
    study_charged = exists().where(Charge.study_id == Study.id)
    studies = list(
        db_session.execute(
            select(Study)
            .where(
                Study.received_at >= low,
                Study.received_at < high,
                ~study_charged,
                (Study.order_id.is_(None)) | ~order_charged,
            )
            .order_by(Study.received_at, Study.id)
        ).scalars()
    )
    names = _horse_names(db_session, {s.horse_id for s in studies if s.horse_id})
    items = []
    for study in studies:
        order = db_session.get(ImagingOrder, study.order_id) if study.order_id else None
        blocked = None
        try:
            if order is not None:
                lines = service.order_lines(db_session, order)
            else:
                lines = study_lines(db_session, study)
            value = sum(line.amount for line in lines)
            fee_code = lines[0].fee_code
        except DomainError as exc:
            value, fee_code, blocked = 0, None, exc.message
        if study.horse_id is None:
            blocked = (
                "the study waits in the reconciliation queue; attach it to a horse "
                "first"
            )
        what = study.study_description or "study"
        source = f" from {study.source_ae_title}" if study.source_ae_title else ""
        items.append(
            MissedCharge(
                category=Category.UNBILLED_STUDY,
                day=_local_day(study.received_at, settings),
                description=(
                    f"{what}{source}, order {order.accession_number} never charged"
                    if order is not None
                    else f"{what}{source}, received with no order"
                ),
                estimated_value=value,
                fee_code=fee_code,
                action="charge_study",
                horse_id=study.horse_id,
                horse_name=names.get(study.horse_id) if study.horse_id else None,
                study_id=study.id,
                order_id=study.order_id,
                accession_number=order.accession_number if order else None,
                blocked=blocked,
            )
        )
    return items


# --------------------------------------------------------------------------
# Orders whose charge was reversed or waived
# --------------------------------------------------------------------------


def _credited_orders(
    db_session: Session, start: dt.date, end: dt.date
) -> list[MissedCharge]:
    order_ids = list(
        db_session.execute(
            select(Charge.order_id)
            .where(
                Charge.order_id.is_not(None),
                Charge.kind.in_([ChargeKind.REVERSAL, ChargeKind.WAIVER]),
                Charge.service_date >= start,
                Charge.service_date <= end,
            )
            .distinct()
        ).scalars()
    )
    items = []
    for order_id in sorted(i for i in order_ids if i is not None):
        order = db_session.get(ImagingOrder, order_id)
        if order is None or charging.active_charges(
            db_session, order_id=order_id, kinds=service.ORDER_KINDS
        ):
            continue
        credits = [
            c for c in charging.charges_for_order(db_session, order_id) if c.is_credit
        ]
        waived = any(c.kind == ChargeKind.WAIVER for c in credits)
        if not waived and not service.order_has_images(db_session, order_id):
            continue
        value = (
            -sum(c.amount for c in credits if c.kind == ChargeKind.WAIVER)
            if waived
            else _order_value(db_session, order)
        )
        last = credits[-1]
        horse = db_session.get(Horse, order.horse_id)
        items.append(
            MissedCharge(
                category=Category.WAIVED_ORDER if waived else Category.REVERSED_ORDER,
                day=last.service_date,
                description=(
                    f"{order.procedure.name}, accession {order.accession_number}: "
                    f"{last.reason or last.kind}"
                ),
                estimated_value=value,
                fee_code=order.procedure.fee_code,
                action="recharge_order",
                horse_id=order.horse_id,
                horse_name=horse.barn_name if horse else None,
                order_id=order.id,
                accession_number=order.accession_number,
            )
        )
    return items


def _order_value(db_session: Session, order: ImagingOrder) -> int:
    try:
        return sum(line.amount for line in service.order_lines(db_session, order))
    except DomainError:
        return 0


# --------------------------------------------------------------------------
# Views beyond the order
# --------------------------------------------------------------------------


def _uncharged_views(
    db_session: Session, start: dt.date, end: dt.date, settings: Settings
) -> list[MissedCharge]:
    low, high = _bounds(start, end, settings)
    order_ids = db_session.execute(
        select(Study.order_id)
        .where(
            Study.order_id.is_not(None),
            Study.received_at >= low,
            Study.received_at < high,
        )
        .distinct()
    ).scalars()
    items = []
    for order_id in sorted(i for i in order_ids if i is not None):
        order = db_session.get(ImagingOrder, order_id)
        if order is None or not charging.active_charges(
            db_session, order_id=order_id, kinds=service.ORDER_KINDS
        ):
            continue
        count = service.view_count(db_session, order)
        if count.uncharged <= 0:
            continue
        spec = service.extra_view_line(db_session, order, count.uncharged)
        horse = db_session.get(Horse, order.horse_id)
        items.append(
            MissedCharge(
                category=Category.UNCHARGED_VIEWS,
                day=service.order_service_date(order, settings),
                description=(
                    f"{order.procedure.name}, accession {order.accession_number}: "
                    f"{count.received} images received, {count.ordered} views "
                    f"ordered, {count.charged_extra} extra charged"
                ),
                estimated_value=spec.amount if spec else 0,
                fee_code=spec.fee_code if spec else None,
                action="charge_views",
                horse_id=order.horse_id,
                horse_name=horse.barn_name if horse else None,
                order_id=order.id,
                accession_number=order.accession_number,
                blocked=None if spec else "views beyond the order have no price",
            )
        )
    return items


# --------------------------------------------------------------------------
# One-click actions
# --------------------------------------------------------------------------


def charge_study(
    db_session: Session,
    actor: audit.Actor,
    study_id: int,
    *,
    fee_code: str | None = None,
    settings: Settings | None = None,
) -> list[Charge]:
    """Charge a study received with no charge, to the horse's visit that day.

    A study with an uncharged order gets the order's charge; otherwise the
    estimate's lines, or ``fee_code``'s base fee and image price when given.
    The visit is the horse's current visit when the study arrived, or a new
    outpatient visit then.
    """
    settings = settings or get_settings()
    study = db_session.get(Study, study_id)
    if study is None:
        raise NotFound(
            f"study {study_id} does not exist", field="study_id", value=study_id
        )
    if study.horse_id is None:
        raise Conflict(
            f"study {study.study_instance_uid} is not attached to a horse; attach "
            "it from the reconciliation queue, then charge it",
            field="study_id",
            value=study_id,
        )
    if charging.active_charges(db_session, study_id=study.id):
        raise Conflict(
            f"study {study_id} is charged already", field="study_id", value=study_id
        )
    if study.order_id is not None:
        order = db_session.get(ImagingOrder, study.order_id)
        if order is not None and not charging.charges_for_order(db_session, order.id):
            return service.post_order_charges(
                db_session, actor, order, settings=settings
            )
        raise Conflict(
            f"study {study_id} belongs to order {study.order_id}, which has "
            "charges; use that order's action instead",
            field="study_id",
            value=study_id,
        )

    if fee_code:
        item = fees.fee_for_charge(db_session, fee_code, field="fee_code")
        label = (
            f"Unscheduled study {study.study_description or study.study_instance_uid}"
        )
        lines = _item_lines(item, label, study_facts(db_session, study).images)
    else:
        lines = study_lines(db_session, study)
    horse = practice.get_horse(db_session, study.horse_id)
    visit = practice.open_or_create_visit(
        db_session,
        actor,
        horse,
        study.received_at,
        kind=VisitKind.OUTPATIENT,
        reason="Imaging study received without an order",
        zone=settings.zone,
    )
    day = _local_day(study.received_at, settings)
    posted = [
        charging.post_charge(
            db_session,
            actor,
            visit,
            spec,
            service_date=day,
            study_id=study.id,
            reason="charged from the missed-charge report",
        )
        for spec in lines
    ]
    invoicing.sync_visit_invoices(db_session, actor, visit, settings=settings)
    return posted


def recharge_order(
    db_session: Session,
    actor: audit.Actor,
    order_id: int,
    *,
    settings: Settings | None = None,
) -> list[Charge]:
    """Post an order's charge again after it was reversed or waived."""
    order = _order(db_session, order_id)
    if charging.active_charges(
        db_session, order_id=order.id, kinds=service.ORDER_KINDS
    ):
        raise Conflict(
            f"order {order.accession_number} is charged already",
            field="order_id",
            value=order_id,
        )
    return service.post_order_charges(db_session, actor, order, settings=settings)


def charge_views(
    db_session: Session,
    actor: audit.Actor,
    order_id: int,
    *,
    settings: Settings | None = None,
) -> Charge:
    """Charge the views received beyond an order that are not charged yet."""
    order = _order(db_session, order_id)
    charge = service.charge_extra_views(db_session, actor, order, settings=settings)
    if charge is None:
        raise Conflict(
            f"order {order.accession_number} has no uncharged views beyond the order",
            field="order_id",
            value=order_id,
        )
    return charge


def _order(db_session: Session, order_id: int) -> ImagingOrder:
    order = db_session.get(ImagingOrder, order_id)
    if order is None:
        raise NotFound(
            f"imaging order {order_id} does not exist",
            field="order_id",
            value=order_id,
        )
    return order
