"""Ordering imaging from the chart: JSON API, order form and chart fragment."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from tests.imaging_testdata import ACTOR, DR_STATION, EquinePractice, build_practice

from fetlock.audit.service import events_for_horse
from fetlock.auth.models import Role
from fetlock.billing import hooks
from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.imaging import service
from fetlock.imaging.models import ImagingOrder, OrderStatus
from fetlock.imaging.service import MppsReport


@pytest.fixture
def practice(database: Database) -> EquinePractice:
    with database.session() as db_session:
        return build_practice(db_session)


@pytest.fixture
def vet(login_as, practice: EquinePractice):  # type: ignore[no-untyped-def]
    return login_as(Role.VETERINARIAN, "vet-api")


def tomorrow_at(settings: Settings, hour: int) -> str:
    day = dt.datetime.now(settings.zone).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(hour, 0)).isoformat()


def order_count(database: Database) -> int:
    with database.session() as db_session:
        return db_session.execute(select(func.count(ImagingOrder.id))).scalar_one()


def test_api_order_allocates_identifiers(  # type: ignore[no-untyped-def]
    vet, practice: EquinePractice, settings: Settings, database: Database
) -> None:
    response = vet.post(
        f"/api/v1/horses/{practice.monty.id}/orders",
        json={
            "procedure_code": "RAD-NAV",
            "limb": "RF",
            "station_ae_title": DR_STATION,
            "scheduled_start": tomorrow_at(settings, 9),
            "priority": "HIGH",
            "clinical_history": "Lame RF",
        },
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "scheduled"
    assert len(body["accession_number"]) <= 16
    assert body["accession_number"].startswith("FA")
    assert body["requested_procedure_id"].startswith("RP")
    assert body["study_instance_uid"].startswith(settings.uid_root)
    assert [v["code"] for v in body["views"]] == [
        "RF-LM",
        "RF-D65Pr-PaDiO",
        "RF-PaPr-PaDiO",
    ]
    assert body["requesting_clinician_id"] == vet.user.id
    assert body["scheduled_procedure_steps"][0]["sps_id"].startswith("SP")
    assert body["scheduled_procedure_steps"][0]["station_ae_title"] == DR_STATION
    assert body["visit_id"] > 0

    by_id = vet.get(f"/api/v1/orders/{body['id']}").json()
    with database.session() as db_session:
        actions = [e.action for e in events_for_horse(db_session, practice.monty.id)]
    assert "imaging_order.create" in actions
    assert "imaging_order.view" in actions
    by_accession = vet.get(
        f"/api/v1/orders?accession={body['accession_number']}"
    ).json()
    assert by_id["study_instance_uid"] == body["study_instance_uid"]
    assert [o["id"] for o in by_accession] == [body["id"]]


@pytest.mark.parametrize(
    ("change", "field", "value_fragment"),
    [
        ({"procedure_code": "RAD-XYZ"}, "procedure_code", "RAD-XYZ"),
        ({"views": ["LF-LM", "LF-SKYWARD"]}, "views", "LF-SKYWARD"),
        ({"views": ["LM-LF"]}, "views", "LM-LF"),
        ({"station_ae_title": "NO_SUCH_AE"}, "station_ae_title", "NO_SUCH_AE"),
        ({"station_ae_title": "US_VET1"}, "station_ae_title", "US_VET1"),
        ({"limb": "LH"}, "limb", "LH"),
        ({"scheduled_start": "2020-01-01T09:00"}, "scheduled_start", "2020-01-01"),
        ({"priority": "SOON"}, "priority", "SOON"),
    ],
)
def test_api_bad_order_names_field_and_saves_nothing(  # type: ignore[no-untyped-def]
    vet, practice: EquinePractice, database: Database, change, field, value_fragment
) -> None:
    body = {"procedure_code": "RAD-NAV", "limb": "LF", "station_ae_title": DR_STATION}
    body.update(change)

    response = vet.post(f"/api/v1/horses/{practice.monty.id}/orders", json=body)

    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert errors[0]["field"] == field
    assert value_fragment in response.json()["detail"]
    assert order_count(database) == 0


def test_failed_order_does_not_use_up_accession(  # type: ignore[no-untyped-def]
    vet, practice: EquinePractice
) -> None:
    bad = vet.post(
        f"/api/v1/horses/{practice.monty.id}/orders",
        json={
            "procedure_code": "RAD-NAV",
            "limb": "LF",
            "views": ["LF-NOPE"],
            "station_ae_title": DR_STATION,
        },
    )
    good = vet.post(
        f"/api/v1/horses/{practice.monty.id}/orders",
        json={
            "procedure_code": "RAD-NAV",
            "limb": "LF",
            "station_ae_title": DR_STATION,
        },
    )

    assert bad.status_code == 422
    assert good.status_code == 201
    assert good.json()["accession_number"] == "FA00000001"


def test_billing_hook_failure_rolls_back_order(  # type: ignore[no-untyped-def]
    vet, practice: EquinePractice, database: Database, monkeypatch
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("fee schedule unavailable")

    monkeypatch.setattr(hooks, "on_order_created", broken)

    with pytest.raises(RuntimeError):
        vet.post(
            f"/api/v1/horses/{practice.monty.id}/orders",
            json={
                "procedure_code": "RAD-NAV",
                "limb": "LF",
                "station_ae_title": DR_STATION,
            },
        )
    assert order_count(database) == 0


def test_extra_view_from_another_set_is_accepted(  # type: ignore[no-untyped-def]
    vet, practice: EquinePractice
) -> None:
    response = vet.post(
        f"/api/v1/horses/{practice.monty.id}/orders",
        json={
            "procedure_code": "RAD-NAV",
            "limb": "LF",
            "views": ["LF-LM", "LF-D65Pr-PaDiO", "LF-DPa"],
            "station_ae_title": DR_STATION,
        },
    )

    assert response.status_code == 201, response.text
    views = response.json()["views"]
    assert [v["code"] for v in views] == ["LF-LM", "LF-D65Pr-PaDiO", "LF-DPa"]
    assert views[2]["description"].startswith("Dorsopalmar")


def test_edit_keeps_identifiers_and_cancel_closes(  # type: ignore[no-untyped-def]
    vet, practice: EquinePractice, settings: Settings
) -> None:
    created = vet.post(
        f"/api/v1/horses/{practice.monty.id}/orders",
        json={
            "procedure_code": "RAD-NAV",
            "limb": "LF",
            "station_ae_title": DR_STATION,
        },
    ).json()

    edited = vet.patch(
        f"/api/v1/orders/{created['id']}",
        json={
            "procedure_code": "RAD-FET",
            "limb": "LH",
            "scheduled_start": tomorrow_at(settings, 14),
        },
    )
    assert edited.status_code == 200, edited.text
    body = edited.json()
    for key in ("accession_number", "requested_procedure_id", "study_instance_uid"):
        assert body[key] == created[key]
    assert (
        body["scheduled_procedure_steps"][0]["sps_id"]
        == created["scheduled_procedure_steps"][0]["sps_id"]
    )
    assert body["procedure_code"] == "RAD-FET"
    assert [v["code"] for v in body["views"]][0] == "LH-LM"

    cancelled = vet.post(
        f"/api/v1/orders/{created['id']}/cancel", json={"reason": "owner declined"}
    )
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["scheduled_procedure_steps"][0]["status"] == "CANCELED"

    again = vet.post(f"/api/v1/orders/{created['id']}/cancel", json={})
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "status"


def test_order_in_progress_cannot_be_edited(  # type: ignore[no-untyped-def]
    vet, practice: EquinePractice, database: Database
) -> None:
    created = vet.post(
        f"/api/v1/horses/{practice.monty.id}/orders",
        json={
            "procedure_code": "RAD-NAV",
            "limb": "LF",
            "station_ae_title": DR_STATION,
        },
    ).json()
    with database.session() as db_session:
        service.mpps_create(
            db_session,
            ACTOR,
            MppsReport(
                sop_instance_uid="1.2.3.4.5",
                status="IN PROGRESS",
                accession_number=created["accession_number"],
            ),
        )

    response = vet.patch(f"/api/v1/orders/{created['id']}", json={"limb": "RF"})

    assert response.status_code == 409
    assert "in progress" in response.json()["detail"]


def test_chart_fragment_shows_orders_and_mpps_state(  # type: ignore[no-untyped-def]
    vet, practice: EquinePractice, database: Database
) -> None:
    created = vet.post(
        f"/api/v1/horses/{practice.monty.id}/orders",
        json={
            "procedure_code": "RAD-NAV",
            "limb": "LF",
            "station_ae_title": DR_STATION,
        },
    ).json()

    before = vet.get(f"/horses/{practice.monty.id}/orders-section")
    with database.session() as db_session:
        service.mpps_create(
            db_session,
            ACTOR,
            MppsReport(
                sop_instance_uid="1.2.3.4.6",
                status="IN PROGRESS",
                accession_number=created["accession_number"],
            ),
        )
    after = vet.get(f"/horses/{practice.monty.id}/orders-section")

    assert before.status_code == 200
    assert created["accession_number"] in before.text
    assert 'data-status="scheduled"' in before.text
    assert "LF-D65Pr-PaDiO" in before.text
    assert "Order study" in before.text
    assert 'data-status="in_progress"' in after.text


def test_order_form_creates_order(  # type: ignore[no-untyped-def]
    vet, practice: EquinePractice, database: Database, settings: Settings
) -> None:
    page = vet.get(f"/horses/{practice.monty.id}/orders/new?procedure=RAD-FET")
    assert page.status_code == 200
    assert 'value="FLM" checked' in page.text

    response = vet.post(
        f"/horses/{practice.monty.id}/orders",
        data={
            "procedure_code": "RAD-FET",
            "limb": "RH",
            "views": ["LM", "DPa"],
            "extra_views": "RH-FLM",
            "modality": "DX",
            "station_ae_title": DR_STATION,
            "requesting_clinician_id": str(practice.vet.id),
            "scheduled_start": tomorrow_at(settings, 10)[:16],
            "priority": "ROUTINE",
            "clinical_history": "Effusion RH fetlock",
        },
        follow_redirects=False,
    )

    assert response.status_code == 303, response.text
    with database.session() as db_session:
        order = db_session.execute(select(ImagingOrder)).scalar_one()
        assert [v.code for v in order.views] == ["RH-LM", "RH-DPa", "RH-FLM"]
        assert order.requesting_clinician_id == practice.vet.id
        assert order.status == OrderStatus.SCHEDULED


def test_order_form_error_shows_message(  # type: ignore[no-untyped-def]
    vet, practice: EquinePractice, database: Database
) -> None:
    response = vet.post(
        f"/horses/{practice.monty.id}/orders",
        data={
            "procedure_code": "RAD-NAV",
            "limb": "LF",
            "views": ["LM"],
            "extra_views": "LF-BOGUS",
            "station_ae_title": DR_STATION,
        },
    )

    assert response.status_code == 422
    assert "LF-BOGUS" in response.text
    assert order_count(database) == 0


def test_catalog_is_seeded_with_fee_codes(vet) -> None:  # type: ignore[no-untyped-def]
    procedures = {p["code"]: p for p in vet.get("/api/v1/procedures").json()}
    fee_codes = vet.get("/api/v1/fee-codes").json()

    assert {"RAD-NAV", "RAD-FET", "RAD-PPE", "US-TEN", "ENDO-UA"} <= set(procedures)
    assert procedures["RAD-NAV"]["limbs"] == ["LF", "RF"]
    assert procedures["ENDO-UA"]["modality"] == "ES"
    for procedure in procedures.values():
        assert procedure["fee_code"] in fee_codes
        if procedure["per_view_fee_code"]:
            assert procedure["per_view_fee_code"] in fee_codes


def test_only_admin_edits_catalog_and_modalities(  # type: ignore[no-untyped-def]
    vet, login_as, practice: EquinePractice
) -> None:
    procedure = {
        "code": "RAD-HEAD",
        "name": "Skull series",
        "modality": "DX",
        "body_region": "Head",
        "fee_code": "RAD-HEAD",
        "views": [{"projection": "LL", "description": "Laterolateral"}],
    }
    station = {"ae_title": "CT_EQ1", "host": "127.0.0.1", "port": 104, "modality": "CT"}

    assert vet.post("/api/v1/procedures", json=procedure).status_code == 403
    assert vet.post("/api/v1/modalities", json=station).status_code == 403

    admin = login_as(Role.ADMIN, "admin-api")
    created = admin.post("/api/v1/procedures", json=procedure)
    assert created.status_code == 201, created.text
    assert created.json()["views"][0]["projection"] == "LL"
    duplicate = admin.post("/api/v1/procedures", json=procedure)
    assert duplicate.status_code == 409
    assert admin.post("/api/v1/modalities", json=station).status_code == 201
    bad = admin.post("/api/v1/modalities", json={**station, "ae_title": "A\\B"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "ae_title"
