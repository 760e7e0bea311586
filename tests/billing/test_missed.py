"""The missed-charge report: what it lists, what it is worth, and its actions."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from fetlock.billing import fees, hooks, missed, service
from fetlock.billing.models import ChargeKind
from fetlock.imaging import service as imaging
from fetlock.web.errors import Conflict, DomainError

from .factories import (
    SERVICE_DAY,
    OrderPlacer,
    Syndicate,
    make_procedure,
    store_study,
)

STANDARD = ["LM", "DP", "D45L-PaMO", "D45M-PaLO"]


def _report(db_session: Session) -> missed.MissedChargeReport:
    # Studies are stamped with the time they were indexed: today.
    today = dt.date.today()
    return missed.missed_charges(
        db_session,
        min(today, SERVICE_DAY) - dt.timedelta(days=1),
        today + dt.timedelta(days=1),
    )


def test_every_catalog_fee_code_is_in_the_fee_schedule(db_session: Session) -> None:
    catalog = imaging.load_catalog_data()
    codes = set(imaging.fee_codes())
    for procedure in catalog["procedures"]:
        codes.add(procedure["fee_code"])
        if procedure.get("per_view_fee_code"):
            codes.add(procedure["per_view_fee_code"])
    missing = sorted(code for code in codes if fees.find_fee(db_session, code) is None)
    assert missing == []


def test_nothing_is_listed_when_everything_is_charged(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    order = place_order(syndicate.visit, make_procedure(db_session), STANDARD)
    store_study(db_session, horse_id=syndicate.horse.id, order_id=order.id, images=4)
    report = _report(db_session)
    assert report.items == []
    assert report.total == 0


def test_reversed_order_with_images_is_listed_and_recharged(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    order = place_order(syndicate.visit, make_procedure(db_session), STANDARD)
    order.cancel_reason = "cancelled at the desk"
    hooks.on_order_cancelled(db_session, order, syndicate.actor)
    # Cancelled before any image: a cancelled service, not a leak.
    assert _report(db_session).items == []

    # ...but the images were taken after all.
    store_study(db_session, horse_id=syndicate.horse.id, order_id=order.id, images=4)
    (item,) = _report(db_session).items
    assert (item.category, item.order_id, item.estimated_value) == (
        "reversed_order",
        order.id,
        8000,
    )
    assert "cancelled at the desk" in item.description

    missed.recharge_order(db_session, syndicate.actor, order.id)
    assert _report(db_session).items == []
    with pytest.raises(Conflict, match="charged already"):
        missed.recharge_order(db_session, syndicate.actor, order.id)


def test_waived_order_is_listed_with_the_waived_amount(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    order = place_order(syndicate.visit, make_procedure(db_session), [*STANDARD, "FLM"])
    service.waive_order(db_session, syndicate.actor, order, reason="goodwill")
    (item,) = _report(db_session).items
    assert (item.category, item.estimated_value) == ("waived_order", 8000 + 2500)
    assert "goodwill" in item.description


def test_uncharged_views_are_listed_and_charged_in_one_action(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    order = place_order(syndicate.visit, make_procedure(db_session), STANDARD)
    study = store_study(
        db_session, horse_id=syndicate.horse.id, order_id=order.id, images=6
    )
    hooks.on_study_received(db_session, study, syndicate.actor)  # review policy

    (item,) = _report(db_session).items
    assert (item.category, item.estimated_value, item.fee_code) == (
        "uncharged_views",
        2 * 2500,
        "RAD-VIEW",
    )
    charge = missed.charge_views(db_session, syndicate.actor, order.id)
    assert (charge.kind, charge.quantity) == (ChargeKind.EXTRA_VIEWS, 2)
    assert _report(db_session).items == []


def test_unscheduled_study_is_estimated_by_modality_and_totalled(
    db_session: Session, syndicate: Syndicate
) -> None:
    store_study(db_session, horse_id=syndicate.horse.id, order_id=None, images=3)
    store_study(db_session, horse_id=None, order_id=None, images=12, modality="US")
    report = _report(db_session)
    by_category = sorted((i.fee_code, i.estimated_value) for i in report.items)
    assert by_category == [("RAD-GEN", 4500 + 3 * 2500), ("US-GEN", 11000)]
    assert report.total == 4500 + 3 * 2500 + 11000
    assert report.subtotals()["unbilled_study"] == report.total
    queued = next(i for i in report.items if i.fee_code == "US-GEN")
    assert queued.blocked is not None
    with pytest.raises(Conflict, match="not attached to a horse"):
        missed.charge_study(db_session, syndicate.actor, queued.study_id or 0)


def test_range_that_ends_before_it_starts_is_refused(db_session: Session) -> None:
    with pytest.raises(DomainError, match="swap the dates"):
        missed.missed_charges(db_session, dt.date(2026, 2, 1), dt.date(2026, 1, 1))
