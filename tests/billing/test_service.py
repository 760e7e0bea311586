"""Charges posted from imaging orders, split between owners, and invoiced."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fetlock.audit.models import AuditEvent
from fetlock.billing import charges as charging
from fetlock.billing import fees, hooks, service
from fetlock.billing import invoices as invoicing
from fetlock.billing.models import (
    Charge,
    ChargeKind,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
)
from fetlock.practice.models import Ownership
from fetlock.web.errors import Conflict, DomainError

from .factories import (
    SERVICE_DAY,
    OrderPlacer,
    Syndicate,
    make_client,
    make_horse,
    make_procedure,
    make_visit,
    store_study,
)

# The seeded fee schedule: RAD-FET 80.00 for the standard set, RAD-VIEW 25.00
# for each view beyond it, both with 20 % tax.
RAD_FET_BASE = 8000
RAD_VIEW = 2500
# The four standard views of the test procedure and its optional flexed view.
STANDARD = ["LM", "DP", "D45L-PaMO", "D45M-PaLO"]
WITH_FLEXED = [*STANDARD, "FLM"]


def _actions(db_session: Session, action: str) -> list[AuditEvent]:
    return list(
        db_session.execute(
            select(AuditEvent).where(AuditEvent.action == action)
        ).scalars()
    )


def _drafts(db_session: Session, syndicate: Syndicate) -> list[Invoice]:
    return invoicing.drafts_for_visit(db_session, syndicate.visit.id)


def test_order_of_the_standard_set_posts_the_base_fee(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    order = place_order(syndicate.visit, make_procedure(db_session), STANDARD)

    lines = charging.charges_for_order(db_session, order.id)
    assert [(c.kind, c.fee_code, c.quantity, c.amount) for c in lines] == [
        ("procedure", "RAD-FET", 1, RAD_FET_BASE)
    ]


def test_order_posts_base_and_view_lines_at_once(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    order = place_order(syndicate.visit, make_procedure(db_session), WITH_FLEXED)

    lines = charging.charges_for_order(db_session, order.id)
    assert [(c.kind, c.fee_code, c.quantity, c.unit_price) for c in lines] == [
        ("procedure", "RAD-FET", 1, RAD_FET_BASE),
        ("views", "RAD-VIEW", 1, RAD_VIEW),
    ]
    assert [c.amount for c in lines] == [8000, 2500]
    assert [c.tax_amount for c in lines] == [1600, 500]
    assert all(c.service_date == SERVICE_DAY for c in lines)
    assert all(c.visit_id == syndicate.visit.id for c in lines)
    assert len(_actions(db_session, "charge.post")) == 2


def test_order_drafts_one_invoice_per_owner_adding_up_to_the_charge(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    # Three extra views at RAD-FET's own add-on of 22.01 make amounts that do
    # not split evenly.
    fees.update_fee(db_session, syndicate.actor, "RAD-FET", view_price=2201)
    extra = ["FLM", "DMPaO", "SKY"]
    procedure = make_procedure(db_session, optional=extra)
    place_order(syndicate.visit, procedure, STANDARD + extra)

    charges = charging.charges_for_visit(db_session, syndicate.visit.id)
    drafts = _drafts(db_session, syndicate)
    assert [d.client_id for d in drafts] == [o.id for o in syndicate.owners]
    assert [d.lines[0].share for d in drafts] == [5000, 3000, 2000]
    assert sum(d.subtotal for d in drafts) == sum(c.amount for c in charges)
    assert sum(d.tax_total for d in drafts) == sum(c.tax_amount for c in charges)
    assert sum(d.total for d in drafts) == sum(c.total for c in charges) == 17524
    # Every line adds up across owners too.
    for charge in charges:
        parts = [
            line for d in drafts for line in d.lines if line.charge_id == charge.id
        ]
        assert sum(p.amount for p in parts) == charge.amount
        assert sum(p.tax_amount for p in parts) == charge.tax_amount
    # 66.03 at 50/30/20 is 33.015 / 19.809 / 13.206: floors leave two units,
    # which go to the largest remainders (.9 and .6), not to the largest share.
    views = [line.amount for d in drafts for line in d.lines if line.quantity == 3]
    assert views == [3301, 1981, 1321]
    assert all(d.status == InvoiceStatus.DRAFT and d.number is None for d in drafts)


def test_cancel_before_images_reverses_with_credit_lines(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    order = place_order(syndicate.visit, make_procedure(db_session), WITH_FLEXED)
    order.status = "cancelled"
    order.cancel_reason = "horse sound on the day"
    hooks.on_order_cancelled(db_session, order, syndicate.actor)

    lines = charging.charges_for_order(db_session, order.id)
    credits = [c for c in lines if c.kind == ChargeKind.REVERSAL]
    assert len(credits) == 2
    assert {c.reverses_id for c in credits} == {
        c.id for c in lines if c.kind != ChargeKind.REVERSAL
    }
    assert all(c.description.startswith("Reversal: ") for c in credits)
    assert "horse sound on the day" in (credits[0].reason or "")
    assert sum(c.amount for c in lines) == 0
    drafts = _drafts(db_session, syndicate)
    assert [d.total for d in drafts] == [0, 0, 0]
    assert all(len(d.lines) == 4 for d in drafts)
    assert charging.active_charges(db_session, order_id=order.id) == []


def test_cancel_after_images_keeps_the_charge_and_needs_a_reason(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    order = place_order(syndicate.visit, make_procedure(db_session), WITH_FLEXED)
    store_study(db_session, horse_id=syndicate.horse.id, order_id=order.id, images=4)
    order.cancel_reason = None

    with pytest.raises(DomainError, match="needs a reason") as raised:
        hooks.on_order_cancelled(db_session, order, syndicate.actor)
    assert raised.value.field == "reason"

    order.cancel_reason = "owner withdrew consent after acquisition"
    hooks.on_order_cancelled(db_session, order, syndicate.actor)
    assert len(charging.active_charges(db_session, order_id=order.id)) == 2
    kept = _actions(db_session, "charge.keep")
    assert len(kept) == 1
    assert "withdrew consent" in kept[0].detail


def test_waiver_cancels_the_charge_with_an_audited_reason(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    order = place_order(syndicate.visit, make_procedure(db_session), WITH_FLEXED)
    store_study(db_session, horse_id=syndicate.horse.id, order_id=order.id, images=4)

    credits = service.waive_order(
        db_session, syndicate.actor, order, reason="goodwill: repeat of a bad study"
    )

    assert [c.kind for c in credits] == ["waiver", "waiver"]
    assert sum(c.amount for c in charging.charges_for_order(db_session, order.id)) == 0
    assert len(_actions(db_session, "charge.waiver")) == 2
    with pytest.raises(Conflict, match="no charge left to waive"):
        service.waive_order(db_session, syndicate.actor, order, reason="again")
    with pytest.raises(DomainError, match="needs a reason"):
        service.waive_order(db_session, syndicate.actor, order, reason="  ")


def test_editing_views_reverses_the_old_line_and_posts_the_new(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    extra = ["FLM", "SKY"]
    procedure = make_procedure(db_session, optional=extra)
    order = place_order(syndicate.visit, procedure, STANDARD + extra)
    order.views.pop()
    db_session.flush()

    hooks.on_order_edited(db_session, order, syndicate.actor)

    active = charging.active_charges(db_session, order_id=order.id)
    assert [(c.kind, c.quantity) for c in active] == [("procedure", 1), ("views", 1)]
    reversed_ = [
        c
        for c in charging.charges_for_order(db_session, order.id)
        if c.kind == ChargeKind.REVERSAL
    ]
    assert [(c.quantity, c.amount) for c in reversed_] == [(2, -2 * RAD_VIEW)]
    # Nothing changes when the order is edited without a priced change.
    hooks.on_order_edited(db_session, order, syndicate.actor)
    assert len(charging.charges_for_order(db_session, order.id)) == 4


def test_per_view_fee_code_prices_views_beyond_the_standard_set(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    standard = [f"P{i}" for i in range(10)]
    procedure = make_procedure(
        db_session, "PPE-SET", "RAD-PPE", projections=standard, optional=["X1", "X2"]
    )
    order = place_order(syndicate.visit, procedure, [*standard, "X1", "X2"])
    lines = charging.charges_for_order(db_session, order.id)
    assert [(c.fee_code, c.quantity, c.unit_price) for c in lines] == [
        ("RAD-PPE", 1, 42000),
        ("RAD-VIEW", 2, RAD_VIEW),
    ]


def test_own_view_price_of_a_fee_overrides_the_per_view_fee_code(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    procedure = make_procedure(db_session, "STIFLE", "RAD-STIFLE")
    order = place_order(syndicate.visit, procedure, WITH_FLEXED)
    lines = charging.charges_for_order(db_session, order.id)
    assert [(c.fee_code, c.quantity, c.unit_price) for c in lines] == [
        ("RAD-STIFLE", 1, 11000),
        ("RAD-STIFLE", 1, 3000),
    ]


@pytest.mark.parametrize("policy", ["review", "charge"])
def test_views_beyond_the_order_follow_the_practice_policy(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer, policy: str
) -> None:
    fees.set_extra_views_policy(db_session, syndicate.actor, policy)
    order = place_order(syndicate.visit, make_procedure(db_session), STANDARD)
    study = store_study(
        db_session, horse_id=syndicate.horse.id, order_id=order.id, images=7
    )

    hooks.on_study_received(db_session, study, syndicate.actor)
    hooks.on_study_received(db_session, study, syndicate.actor)  # idempotent

    extra = charging.active_charges(
        db_session, order_id=order.id, kinds=[ChargeKind.EXTRA_VIEWS]
    )
    if policy == "charge":
        assert [(c.fee_code, c.quantity, c.amount) for c in extra] == [
            ("RAD-VIEW", 3, 3 * RAD_VIEW)
        ]
        assert service.view_count(db_session, order).uncharged == 0
    else:
        assert extra == []
        assert service.view_count(db_session, order).uncharged == 3
        assert len(_actions(db_session, "charge.views_flagged")) == 2


def test_ultrasound_images_are_not_counted_as_extra_views(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    fees.set_extra_views_policy(db_session, syndicate.actor, "charge")
    procedure = make_procedure(
        db_session, "TENDON", "US-TEN", modality="US", per_view_fee_code="US-ZONE"
    )
    order = place_order(syndicate.visit, procedure, STANDARD)
    study = store_study(
        db_session,
        horse_id=syndicate.horse.id,
        order_id=order.id,
        images=40,
        modality="US",
    )
    hooks.on_study_received(db_session, study, syndicate.actor)
    assert service.view_count(db_session, order).uncharged == 0
    assert len(charging.charges_for_order(db_session, order.id)) == 1


def test_unknown_fee_code_posts_nothing_and_names_the_code(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    procedure = make_procedure(db_session, "MYSTERY", "RAD-NOPE")
    with pytest.raises(DomainError, match="'RAD-NOPE' is not in the fee schedule") as e:
        place_order(syndicate.visit, procedure)
    assert (e.value.field, e.value.value) == ("procedure.fee_code", "RAD-NOPE")
    assert db_session.execute(select(func.count(Charge.id))).scalar_one() == 0


def test_shares_not_adding_up_on_the_service_date_refuse_the_charge(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    # A row written behind the practice service's back: 50+30+20+10 = 110 %.
    extra = make_client(db_session, syndicate.actor, "Doyle")
    db_session.add(
        Ownership(
            horse_id=syndicate.horse.id,
            client_id=extra.id,
            share=1000,
            effective_from=dt.date(2026, 11, 1),
        )
    )
    db_session.flush()

    with pytest.raises(DomainError, match="add up to 110 %, not 100 %") as raised:
        place_order(syndicate.visit, make_procedure(db_session), WITH_FLEXED)
    assert (raised.value.field, raised.value.value) == ("ownership.share", "110 %")
    assert "2026-11-20" in raised.value.message


def test_ownership_in_force_on_the_service_date_decides_the_split(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    from fetlock.practice.service import ShareInput, set_owners_from

    # From the day after the service the horse belongs to one owner only.
    set_owners_from(
        db_session,
        syndicate.actor,
        syndicate.horse,
        SERVICE_DAY + dt.timedelta(days=1),
        [ShareInput(syndicate.owners[0].id, 10000)],
    )
    place_order(syndicate.visit, make_procedure(db_session), WITH_FLEXED)
    assert len(_drafts(db_session, syndicate)) == 3


def test_horse_without_owner_gets_charges_but_no_invoice(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    stray = make_horse(db_session, syndicate.actor, [], barn_name="Stray")
    visit = make_visit(db_session, syndicate.actor, stray)
    order = place_order(visit, make_procedure(db_session), WITH_FLEXED)
    assert len(charging.charges_for_order(db_session, order.id)) == 2
    assert invoicing.drafts_for_visit(db_session, visit.id) == []
    _, ownerless = invoicing.unbilled_parts(db_session, visit)
    assert len(ownerless) == 2


def test_issue_numbers_and_freezes_an_invoice(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    place_order(syndicate.visit, make_procedure(db_session), WITH_FLEXED)
    first, second, _ = _drafts(db_session, syndicate)

    invoicing.issue_invoice(db_session, syndicate.actor, first)
    invoicing.issue_invoice(db_session, syndicate.actor, second)

    assert (first.number, second.number) == ("INV-000001", "INV-000002")
    assert first.status == InvoiceStatus.ISSUED
    assert first.issued_at is not None
    with pytest.raises(Conflict, match="INV-000001 is issued and cannot be changed"):
        invoicing.update_draft(db_session, syndicate.actor, first, notes="edited")
    with pytest.raises(Conflict, match="only a draft can be issued"):
        invoicing.issue_invoice(db_session, syndicate.actor, first)


def test_charges_after_issue_go_on_a_new_draft(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    place_order(syndicate.visit, make_procedure(db_session), WITH_FLEXED)
    issued = _drafts(db_session, syndicate)[0]
    invoicing.issue_invoice(db_session, syndicate.actor, issued)
    frozen = [(line.id, line.amount) for line in issued.lines]

    place_order(syndicate.visit, make_procedure(db_session, "HOCK", "RAD-HOCK"))

    drafts = sorted(_drafts(db_session, syndicate), key=lambda d: d.client_id)
    assert [d.client_id for d in drafts] == [o.id for o in syndicate.owners]
    assert [(line.id, line.amount) for line in issued.lines] == frozen
    assert {line.fee_code for line in drafts[0].lines} == {"RAD-HOCK"}
    assert {line.fee_code for line in drafts[1].lines} == {
        "RAD-FET",
        "RAD-VIEW",
        "RAD-HOCK",
    }


def test_pay_void_and_credit_note(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    place_order(syndicate.visit, make_procedure(db_session), WITH_FLEXED)
    owner_a, owner_b, _ = _drafts(db_session, syndicate)
    invoicing.issue_invoice(db_session, syndicate.actor, owner_a)
    invoicing.issue_invoice(db_session, syndicate.actor, owner_b)

    invoicing.pay_invoice(db_session, syndicate.actor, owner_a, reference="BACS 1142")
    assert owner_a.status == InvoiceStatus.PAID
    with pytest.raises(Conflict, match="only an issued, unpaid"):
        invoicing.void_invoice(db_session, syndicate.actor, owner_a, reason="wrong")

    note = invoicing.credit_note(
        db_session,
        syndicate.actor,
        owner_a,
        reason="views line billed in error",
        line_ids=[owner_a.lines[1].id],
    )
    assert note.kind == InvoiceKind.CREDIT_NOTE
    assert note.number == "CN-000001"
    assert note.total == -owner_a.lines[1].total
    assert note.credit_for_id == owner_a.id
    with pytest.raises(Conflict, match="already credited"):
        invoicing.credit_note(
            db_session,
            syndicate.actor,
            owner_a,
            reason="x",
            line_ids=[owner_a.lines[1].id],
        )

    # Voiding B's unpaid invoice puts its share back on a fresh draft.
    invoicing.void_invoice(db_session, syndicate.actor, owner_b, reason="wrong address")
    assert owner_b.status == InvoiceStatus.VOID
    redrafted = [
        d for d in _drafts(db_session, syndicate) if d.client_id == owner_b.client_id
    ]
    assert len(redrafted) == 1
    assert redrafted[0].total == owner_b.total


def test_code_that_changes_an_issued_invoice_is_stopped_at_flush(
    db_session: Session, syndicate: Syndicate, place_order: OrderPlacer
) -> None:
    place_order(syndicate.visit, make_procedure(db_session), WITH_FLEXED)
    invoice = _drafts(db_session, syndicate)[0]
    invoice.notes = "drafts may change"
    db_session.flush()
    invoicing.issue_invoice(db_session, syndicate.actor, invoice)
    db_session.commit()

    invoice.total += 1
    with pytest.raises(Conflict, match=r"INV-000001 is issued .* \(total\)"):
        db_session.flush()
    db_session.rollback()

    invoice = _issued(db_session)
    invoice.lines[0].amount = 0
    with pytest.raises(Conflict, match="INV-000001 is issued"):
        db_session.flush()
    db_session.rollback()

    invoice = _issued(db_session)
    db_session.delete(invoice)
    with pytest.raises(Conflict, match=r"\(delete\)"):
        db_session.flush()
    db_session.rollback()

    # Payment is the one change an issued invoice takes.
    invoicing.pay_invoice(db_session, syndicate.actor, _issued(db_session))
    assert _issued(db_session).status == InvoiceStatus.PAID


def _issued(db_session: Session) -> Invoice:
    return db_session.execute(
        select(Invoice).where(Invoice.number == "INV-000001")
    ).scalar_one()
