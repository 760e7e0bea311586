"""The billing JSON API and pages: roles, bad input, state changes."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from fetlock.auth.models import Role, User
from fetlock.billing import charges as charging
from fetlock.billing.models import Charge
from fetlock.config import Settings
from fetlock.db.session import Database

from .factories import build_syndicate, make_procedure, place_order, store_study

WITH_FLEXED = ["LM", "DP", "D45L-PaMO", "D45M-PaLO", "FLM"]


@dataclass
class Seeded:
    horse_id: int
    visit_id: int
    order_id: int
    owner_ids: list[int]


@pytest.fixture
def seeded(database: Database) -> Seeded:
    """The syndicate horse with one charged order, committed for HTTP tests."""
    from fetlock.auth.service import create_user

    with database.session() as db_session:
        vet: User = create_user(
            db_session,
            username="ordering-vet",
            full_name="Dr Ordering",
            role=Role.VETERINARIAN,
            password="correct-horse-battery",
        )
        syndicate = build_syndicate(db_session, vet)
        order = place_order(
            db_session, vet, syndicate.visit, make_procedure(db_session), WITH_FLEXED
        )
        return Seeded(
            syndicate.horse.id,
            syndicate.visit.id,
            order.id,
            [o.id for o in syndicate.owners],
        )


Login = Callable[..., object]


def _count(database: Database, model: type) -> int:
    with database.session() as db_session:
        return int(db_session.execute(select(func.count(model.id))).scalar_one())


def test_invoices_per_visit_order_and_client(seeded: Seeded, login_as: Login) -> None:
    vet = login_as(Role.VETERINARIAN)
    by_visit = vet.get(f"/api/v1/invoices?visit={seeded.visit_id}").json()
    by_order = vet.get(f"/api/v1/invoices?order={seeded.order_id}").json()
    by_client = vet.get(f"/api/v1/invoices?client={seeded.owner_ids[1]}").json()

    assert [i["client_id"] for i in by_visit] == seeded.owner_ids
    assert by_order == by_visit
    assert [i["id"] for i in by_client] == [by_visit[1]["id"]]
    assert [line["share"] for line in by_client[0]["lines"]] == [3000, 3000]
    charges = vet.get(f"/api/v1/charges?order={seeded.order_id}").json()
    assert sum(i["total"] for i in by_visit) == sum(c["total"] for c in charges)
    assert vet.get("/api/v1/invoices").status_code == 422


def test_issue_then_change_is_refused_naming_the_invoice(
    seeded: Seeded, login_as: Login
) -> None:
    vet = login_as(Role.VETERINARIAN)
    invoice_id = vet.get(f"/api/v1/invoices?visit={seeded.visit_id}").json()[0]["id"]

    issued = vet.post(f"/api/v1/invoices/{invoice_id}/issue")
    assert issued.status_code == 200, issued.text
    number = issued.json()["number"]
    assert number.startswith("INV-")

    changed = vet.patch(f"/api/v1/invoices/{invoice_id}", json={"notes": "x"})
    assert changed.status_code == 409
    assert number in changed.json()["detail"]
    assert changed.json()["errors"][0]["value"] == number
    again = vet.post(f"/api/v1/invoices/{invoice_id}/issue")
    assert again.status_code == 409
    assert number in again.json()["detail"]


def test_draft_lines_cannot_be_edited(seeded: Seeded, login_as: Login) -> None:
    vet = login_as(Role.VETERINARIAN)
    invoice_id = vet.get(f"/api/v1/invoices?visit={seeded.visit_id}").json()[0]["id"]
    response = vet.patch(f"/api/v1/invoices/{invoice_id}", json={"total": 1})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "total"
    ok = vet.patch(f"/api/v1/invoices/{invoice_id}", json={"notes": "Pay by BACS"})
    assert ok.status_code == 200
    assert ok.json()["notes"] == "Pay by BACS"


def test_pay_void_and_credit_note_need_reception(
    seeded: Seeded, login_as: Login
) -> None:
    vet = login_as(Role.VETERINARIAN)
    reception = login_as(Role.RECEPTION)
    first, second, _ = vet.get(f"/api/v1/invoices?visit={seeded.visit_id}").json()
    vet.post(f"/api/v1/invoices/{first['id']}/issue")
    vet.post(f"/api/v1/invoices/{second['id']}/issue")

    assert vet.post(f"/api/v1/invoices/{first['id']}/pay").status_code == 403
    paid = reception.post(
        f"/api/v1/invoices/{first['id']}/pay", json={"reference": "card 4411"}
    )
    assert paid.json()["status"] == "paid"
    note = reception.post(
        f"/api/v1/invoices/{first['id']}/credit-notes",
        json={"reason": "goodwill", "line_ids": [first["lines"][1]["id"]]},
    )
    assert note.status_code == 201, note.text
    assert note.json()["number"].startswith("CN-")
    assert note.json()["total"] == -first["lines"][1]["total"]

    void = reception.post(f"/api/v1/invoices/{second['id']}/void", json={"reason": ""})
    assert void.status_code == 422
    assert void.json()["errors"][0]["field"] == "reason"
    void = reception.post(
        f"/api/v1/invoices/{second['id']}/void", json={"reason": "wrong owner"}
    )
    assert void.json()["status"] == "void"


def test_fee_schedule_crud_and_bad_values(login_as: Login) -> None:
    reception = login_as(Role.RECEPTION)
    vet = login_as(Role.VETERINARIAN)

    codes = [item["code"] for item in vet.get("/api/v1/fees").json()]
    for code in ("RAD-NAV", "RAD-FET", "RAD-HOCK", "RAD-STIFLE", "RAD-PPE", "RAD-VIEW"):
        assert code in codes
    created = reception.post(
        "/api/v1/fees",
        json={
            "code": "RAD-NECK",
            "description": "Radiography: cervical spine",
            "unit_price": 14000,
            "tax_rate": 2000,
        },
    )
    assert created.status_code == 201, created.text
    assert vet.post("/api/v1/fees", json=created.json()).status_code == 403

    negative = reception.patch("/api/v1/fees/RAD-NECK", json={"unit_price": -5})
    assert negative.status_code == 422
    assert negative.json()["errors"][0] == {
        "field": "unit_price",
        "value": -5,
        "message": negative.json()["detail"],
    }
    assert "cannot be negative" in negative.json()["detail"]
    assert vet.get("/api/v1/fees/RAD-NECK").json()["unit_price"] == 14000

    missing = reception.patch("/api/v1/fees/RAD-NOPE", json={"unit_price": 1})
    assert missing.status_code == 404
    assert "'RAD-NOPE'" in missing.json()["detail"]
    duplicate = reception.post("/api/v1/fees", json=created.json())
    assert duplicate.status_code == 409
    bad_code = reception.post(
        "/api/v1/fees", json={**created.json(), "code": "rad neck"}
    )
    assert (
        bad_code.status_code == 422 and bad_code.json()["errors"][0]["field"] == "code"
    )
    gone = reception.delete("/api/v1/fees/RAD-NECK")
    assert gone.json()["active"] is False


def test_manual_charge_with_unknown_fee_code_posts_nothing(
    seeded: Seeded, login_as: Login, database: Database
) -> None:
    vet = login_as(Role.VETERINARIAN)
    before = _count(database, Charge)
    response = vet.post(
        "/api/v1/charges",
        json={"visit_id": seeded.visit_id, "fee_code": "RAD-UNICORN"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["value"] == "RAD-UNICORN"
    assert _count(database, Charge) == before

    ok = vet.post(
        "/api/v1/charges",
        json={"visit_id": seeded.visit_id, "fee_code": "US-GEN", "quantity": 1},
    )
    assert ok.status_code == 201, ok.text
    assert _count(database, Charge) == before + 1


def test_waive_needs_reception_and_a_reason(
    seeded: Seeded, login_as: Login, database: Database
) -> None:
    vet = login_as(Role.VETERINARIAN)
    reception = login_as(Role.RECEPTION)
    url = f"/api/v1/billing/orders/{seeded.order_id}/waive"
    assert vet.post(url, json={"reason": "friend"}).status_code == 403
    assert reception.post(url, json={"reason": " "}).status_code == 422
    waived = reception.post(url, json={"reason": "repeat of a spoiled study"})
    assert waived.status_code == 200
    assert [c["kind"] for c in waived.json()] == ["waiver", "waiver"]
    with database.session() as db_session:
        assert charging.active_charges(db_session, order_id=seeded.order_id) == []


def test_invoice_pdf_shows_the_owner_share(seeded: Seeded, login_as: Login) -> None:
    vet = login_as(Role.VETERINARIAN)
    invoice = vet.get(f"/api/v1/invoices?visit={seeded.visit_id}").json()[2]
    response = vet.get(invoice["pdf_url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    text = "".join(
        page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages
    )
    assert "Draft invoice" in text
    assert "20 %" in text
    assert "Castell" in text
    total = invoice["total"]
    assert f"GBP {total // 100:,}.{total % 100:02d}" in text


def test_invoice_pdf_prints_the_practice_letterhead(
    seeded: Seeded, login_as: Login, settings: Settings
) -> None:
    settings.practice_name = "Newmarket Equine Clinic"
    settings.practice_address = "1 High Street, Newmarket CB8 8AA"
    settings.practice_phone = "01638 000000"
    vet = login_as(Role.VETERINARIAN)
    invoice = vet.get(f"/api/v1/invoices?visit={seeded.visit_id}").json()[0]

    response = vet.get(invoice["pdf_url"])

    text = "".join(
        page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages
    )
    assert "Newmarket Equine Clinic" in text
    assert "1 High Street" in text
    assert "Newmarket CB8 8AA" in text
    assert "01638 000000" in text


def test_billing_section_lists_charges_and_issue_buttons(
    seeded: Seeded, login_as: Login
) -> None:
    vet = login_as(Role.VETERINARIAN)
    html = vet.get(f"/horses/{seeded.horse_id}/billing-section").text
    assert html.count('class="issue"') == 3
    assert "Radiography: fetlock series" in html
    assert "50%" in html
    assert "30%" in html
    assert "20%" in html

    tech = login_as(Role.TECHNICIAN)
    hidden = tech.get(f"/horses/{seeded.horse_id}/billing-section")
    assert hidden.status_code == 200
    assert "GBP" not in hidden.text

    invoice_id = vet.get(f"/api/v1/invoices?visit={seeded.visit_id}").json()[0]["id"]
    issued = vet.post(
        f"/invoices/{invoice_id}/issue",
        data={"next": f"/horses/{seeded.horse_id}"},
        follow_redirects=False,
    )
    assert issued.status_code == 303
    assert issued.headers["location"] == f"/horses/{seeded.horse_id}"
    html = vet.get(f"/horses/{seeded.horse_id}/billing-section").text
    assert html.count('class="issue"') == 2
    assert "INV-" in html


def test_pages_render(seeded: Seeded, login_as: Login) -> None:
    reception = login_as(Role.RECEPTION)
    invoice_id = reception.get(f"/api/v1/invoices?visit={seeded.visit_id}").json()[0][
        "id"
    ]
    for url in (
        f"/invoices/{invoice_id}",
        f"/clients/{seeded.owner_ids[0]}/invoices",
        "/billing/fees",
        "/billing/missed-charges",
    ):
        response = reception.get(url)
        assert response.status_code == 200, (url, response.text[:500])
        assert "Not done" not in response.text


def test_missed_charge_api_needs_reception_and_a_valid_range(
    seeded: Seeded, login_as: Login
) -> None:
    vet = login_as(Role.VETERINARIAN)
    reception = login_as(Role.RECEPTION)
    url = "/api/v1/billing/missed-charges"
    assert vet.get(url).status_code == 403
    report = reception.get(url)
    assert report.status_code == 200
    assert report.json()["total"] == 0
    assert report.json()["currency"] == "GBP"
    backwards = reception.get(f"{url}?from=2026-02-01&to=2026-01-01")
    assert backwards.status_code == 422
    assert backwards.json()["errors"][0]["field"] == "to"
    garbage = reception.get(f"{url}?from=yesterday")
    assert garbage.status_code == 422
    assert "from" in garbage.json()["detail"]


def test_missed_charge_page_charges_a_study_in_one_click(
    seeded: Seeded, login_as: Login, database: Database
) -> None:
    with database.session() as db_session:
        study = store_study(
            db_session, horse_id=seeded.horse_id, order_id=None, images=2
        )
        study_id = study.id
    reception = login_as(Role.RECEPTION)
    page = reception.get("/billing/missed-charges")
    assert f'data-study-id="{study_id}"' in page.text
    assert "GBP 95.00" in page.text  # RAD-GEN: 45.00 + 2 images at 25.00

    charged = reception.post(
        "/billing/missed-charges/charge",
        data={"action": "charge_study", "target": str(study_id)},
        follow_redirects=False,
    )
    assert charged.status_code == 303, charged.text
    page = reception.get("/billing/missed-charges")
    assert f'data-study-id="{study_id}"' not in page.text
    charges = reception.get(f"/api/v1/charges?horse={seeded.horse_id}").json()
    assert [c["kind"] for c in charges if c["study_id"] == study_id] == [
        "study",
        "views",
    ]
    again = reception.post(
        "/billing/missed-charges/charge",
        data={"action": "charge_study", "target": str(study_id)},
    )
    assert again.status_code == 409
    assert "charged already" in again.text


@pytest.fixture
def ordering(database: Database) -> tuple[int, int]:
    """The syndicate horse, the seed catalog, a DX station and a mystery procedure.

    Return ``(horse id, id of a procedure whose fee code is not in the fee
    schedule)``.
    """
    from fetlock.auth.service import create_user
    from fetlock.imaging import service as imaging
    from fetlock.imaging.models import RemoteAE

    with database.session() as db_session:
        vet: User = create_user(
            db_session,
            username="catalog-vet",
            full_name="Dr Catalog",
            role=Role.VETERINARIAN,
            password="correct-horse-battery",
        )
        syndicate = build_syndicate(db_session, vet)
        imaging.ensure_catalog(db_session)
        db_session.add(
            RemoteAE(ae_title="STALLDR", host="127.0.0.1", port=104, modality="DX")
        )
        mystery = make_procedure(db_session, "MYSTERY", "RAD-UNICORN")
        return syndicate.horse.id, mystery.id


def test_order_through_the_imaging_api_is_invoiced_and_credited(
    ordering: tuple[int, int], login_as: Login
) -> None:
    horse_id, _ = ordering
    vet = login_as(Role.VETERINARIAN)
    created = vet.post(
        f"/api/v1/horses/{horse_id}/orders",
        json={"procedure_code": "RAD-STIFLE", "limb": "LH"},
    )
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]

    invoices = vet.get(f"/api/v1/invoices?order={order_id}").json()
    charges = vet.get(f"/api/v1/charges?order={order_id}").json()
    assert [i["lines"][0]["share"] for i in invoices] == [5000, 3000, 2000]
    assert sum(i["total"] for i in invoices) == sum(c["total"] for c in charges)
    assert sum(c["total"] for c in charges) == 13200  # 110.00 + 20 % tax

    cancelled = vet.post(
        f"/api/v1/orders/{order_id}/cancel", json={"reason": "owner postponed"}
    )
    assert cancelled.status_code == 200, cancelled.text
    charges = vet.get(f"/api/v1/charges?order={order_id}").json()
    assert [c["kind"] for c in charges] == ["procedure", "reversal"]
    invoices = vet.get(f"/api/v1/invoices?order={order_id}").json()
    assert [i["total"] for i in invoices] == [0, 0, 0]


def test_order_with_an_unknown_fee_code_is_not_saved(
    ordering: tuple[int, int], login_as: Login, database: Database
) -> None:
    from fetlock.imaging.models import ImagingOrder

    horse_id, _ = ordering
    vet = login_as(Role.VETERINARIAN)
    orders_before = _count(database, ImagingOrder)
    response = vet.post(
        f"/api/v1/horses/{horse_id}/orders",
        json={"procedure_code": "MYSTERY", "limb": "LF"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "procedure.fee_code"
    assert response.json()["errors"][0]["value"] == "RAD-UNICORN"
    assert "not in the fee schedule" in response.json()["detail"]
    assert _count(database, ImagingOrder) == orders_before
    assert _count(database, Charge) == 0


def test_order_for_shares_not_adding_up_is_not_saved(
    ordering: tuple[int, int], login_as: Login, database: Database
) -> None:
    import datetime as dt

    from fetlock.imaging.models import ImagingOrder
    from fetlock.practice.models import Client, Ownership

    horse_id, _ = ordering
    with database.session() as db_session:
        # Written behind the practice service's back: 50 + 30 + 20 + 5 = 105 %.
        extra = Client(kind="person", family_name="Doyle")
        db_session.add(extra)
        db_session.flush()
        db_session.add(
            Ownership(
                horse_id=horse_id,
                client_id=extra.id,
                share=500,
                effective_from=dt.date(2021, 6, 1),
            )
        )
    vet = login_as(Role.VETERINARIAN)
    orders_before = _count(database, ImagingOrder)
    response = vet.post(
        f"/api/v1/horses/{horse_id}/orders",
        json={"procedure_code": "RAD-STIFLE", "limb": "LH"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "ownership.share"
    assert response.json()["errors"][0]["value"] == "105 %"
    assert "not 100 %" in response.json()["detail"]
    assert _count(database, ImagingOrder) == orders_before
    assert _count(database, Charge) == 0
