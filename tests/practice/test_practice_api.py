"""The practice JSON API: roles, bad input, ownership, visits and notes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fetlock.audit.models import AuditEvent
from fetlock.auth.models import Role
from fetlock.auth.service import create_api_token
from fetlock.db.session import Database
from fetlock.practice.models import Client, Horse, Ownership, SoapNote, Visit


def _count(database: Database, model: type) -> int:
    with database.session() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def _events(database: Database, action: str) -> list[AuditEvent]:
    with database.session() as session:
        return list(
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.action == action)
                .order_by(AuditEvent.seq)
            ).scalars()
        )


def _field_errors(body: dict[str, Any]) -> dict[str, Any]:
    return {e["field"]: e for e in body.get("errors", [])}


@pytest.fixture
def reception(login_as):  # type: ignore[no-untyped-def]
    return login_as(Role.RECEPTION, "frontdesk")


@pytest.fixture
def vet(login_as):  # type: ignore[no-untyped-def]
    return login_as(Role.VETERINARIAN, "drvet")


@pytest.fixture
def clients(reception) -> dict[str, int]:  # type: ignore[no-untyped-def]
    created = {}
    for key, body in {
        "syndicate": {
            "kind": "organisation",
            "organisation_name": "Oakridge Racing Syndicate",
        },
        "muller": {"given_name": "Anna", "family_name": "Müller"},
        "munoz": {"given_name": "José", "family_name": "Muñoz"},
    }.items():
        response = reception.post("/api/v1/clients", json=body)
        assert response.status_code == 201, response.text
        created[key] = response.json()["id"]
    return created


@pytest.fixture
def horse(reception, clients: dict[str, int]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = reception.post(
        "/api/v1/horses",
        json={
            "barn_name": "Storm",
            "species": "horse",
            "sex": "gelding",
            "microchip": "826 041 000 012 345",
            "ueln": "826-002-000098765",
            "owners": [
                {"client_id": clients["syndicate"], "share": 5000},
                {"client_id": clients["muller"], "share": 3000},
                {"client_id": clients["munoz"], "share": 2000},
            ],
            "owned_from": "2023-04-01",
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class TestClientsAndHorses:
    def test_create_horse__allocates_patient_id_and_normalises_ids(
        self, horse: dict[str, Any]
    ) -> None:
        assert horse["patient_id"].startswith("FL")
        assert horse["microchip"] == "826041000012345"
        assert horse["ueln"] == "826002000098765"
        assert [(o["name"], o["percent"]) for o in horse["owners"]] == [
            ("Oakridge Racing Syndicate", "50"),
            ("Anna Müller", "30"),
            ("José Muñoz", "20"),
        ]

    def test_search_horses__by_owner_without_accents(
        self, vet, horse: dict[str, Any]
    ) -> None:  # type: ignore[no-untyped-def]
        response = vet.get("/api/v1/horses", params={"q": "munoz"})
        assert response.status_code == 200
        assert [h["id"] for h in response.json()] == [horse["id"]]
        assert vet.get("/api/v1/horses", params={"q": "nobody"}).json() == []

    def test_search_clients(self, vet, clients: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
        response = vet.get("/api/v1/clients", params={"q": "MULLER"})
        assert [c["id"] for c in response.json()] == [clients["muller"]]

    def test_update_client_and_horse(
        self, reception, clients: dict[str, int], horse: dict[str, Any]
    ) -> None:  # type: ignore[no-untyped-def]
        response = reception.patch(
            f"/api/v1/clients/{clients['muller']}",
            json={"email": "anna@example.com", "postcode": "CB8 7AA"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["email"] == "anna@example.com"
        assert response.json()["family_name"] == "Müller"

        response = reception.patch(
            f"/api/v1/horses/{horse['id']}", json={"colour": "dark bay"}
        )
        assert response.status_code == 200
        assert response.json()["colour"] == "dark bay"
        assert response.json()["patient_id"] == horse["patient_id"]

    def test_update_horse__patient_id_is_not_an_accepted_field(
        self, reception, horse: dict[str, Any]
    ) -> None:  # type: ignore[no-untyped-def]
        response = reception.patch(
            f"/api/v1/horses/{horse['id']}", json={"patient_id": "FL999999"}
        )
        assert response.status_code == 422
        assert "patient_id" in _field_errors(response.json())

    def test_get_horse__unknown_id_is_404_naming_it(self, vet) -> None:  # type: ignore[no-untyped-def]
        response = vet.get("/api/v1/horses/987654")
        assert response.status_code == 404
        assert "987654" in response.json()["detail"]

    def test_get_horse__records_a_chart_view(
        self, vet, database: Database, horse: dict[str, Any]
    ) -> None:  # type: ignore[no-untyped-def]
        assert vet.get(f"/api/v1/horses/{horse['id']}").status_code == 200
        views = _events(database, "chart.view")
        assert [(e.actor_name, e.horse_id) for e in views] == [("drvet", horse["id"])]


class TestBadInput:
    def test_shares_95_percent__nothing_saved(
        self, reception, database: Database, clients: dict[str, int]
    ) -> None:  # type: ignore[no-untyped-def]
        response = reception.post(
            "/api/v1/horses",
            json={
                "barn_name": "Half Saved",
                "owners": [
                    {"client_id": clients["muller"], "share": 5000},
                    {"client_id": clients["munoz"], "share": 4500},
                ],
                "owned_from": "2024-01-01",
            },
        )
        assert response.status_code == 422
        body = response.json()
        assert "95%" in body["detail"]
        assert "2024-01-01" in body["detail"]
        assert _field_errors(body)["owners"]["value"] == "95%"
        assert _count(database, Horse) == 0
        assert _count(database, Ownership) == 0
        assert _events(database, "horse.create") == []

    def test_bad_date__names_field_value_and_format(self, reception) -> None:  # type: ignore[no-untyped-def]
        response = reception.post(
            "/api/v1/horses",
            json={"barn_name": "Datey", "date_of_birth": "2019-13-45"},
        )
        assert response.status_code == 422
        error = _field_errors(response.json())["date_of_birth"]
        assert error["value"] == "2019-13-45"
        assert "YYYY-MM-DD" in error["message"]

    def test_unknown_species__lists_the_accepted_values(
        self, reception, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        response = reception.post(
            "/api/v1/horses", json={"barn_name": "Stripes", "species": "zebra"}
        )
        assert response.status_code == 422
        error = _field_errors(response.json())["species"]
        assert error["value"] == "zebra"
        for accepted in ("horse", "pony", "donkey", "mule"):
            assert accepted in error["message"]
        assert _count(database, Horse) == 0

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"barn_name": "X", "microchip": "12"}, "microchip"),
            ({"barn_name": "X", "ueln": "GB123"}, "ueln"),
            ({"barn_name": "X", "sex": "wether"}, "sex"),
            ({"barn_name": "X", "foaling_year": 1800}, "foaling_year"),
            ({"barn_name": "   "}, "barn_name"),
            ({"barn_name": "X", "colour": "bay", "wings": 2}, "wings"),
        ],
    )
    def test_invalid_horse_fields(
        self, reception, database: Database, body: dict[str, Any], field: str
    ) -> None:  # type: ignore[no-untyped-def]
        response = reception.post("/api/v1/horses", json=body)
        assert response.status_code == 422, response.text
        assert field in _field_errors(response.json())
        assert _count(database, Horse) == 0

    def test_client_email_is_checked(self, reception, database: Database) -> None:  # type: ignore[no-untyped-def]
        response = reception.post(
            "/api/v1/clients", json={"family_name": "Smith", "email": "not-an-email"}
        )
        assert response.status_code == 422
        assert "owner@example.com" in _field_errors(response.json())["email"]["message"]
        assert _count(database, Client) == 0

    def test_person_without_family_name(self, reception) -> None:  # type: ignore[no-untyped-def]
        response = reception.post("/api/v1/clients", json={"given_name": "Jo"})
        assert response.status_code == 422
        assert "family_name" in _field_errors(response.json())


class TestOwnershipApi:
    def test_change_ownership_keeps_history(
        self, reception, clients: dict[str, int], horse: dict[str, Any]
    ) -> None:  # type: ignore[no-untyped-def]
        response = reception.put(
            f"/api/v1/horses/{horse['id']}/ownership",
            json={
                "effective_from": "2025-01-01",
                "owners": [{"client_id": clients["muller"], "share": 10000}],
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert [o["name"] for o in body["owners"]] == ["Anna Müller"]
        assert len(body["history"]) == 4

        earlier = reception.get(
            f"/api/v1/horses/{horse['id']}/ownership", params={"on": "2024-06-01"}
        ).json()
        assert sorted(o["share"] for o in earlier["owners"]) == [2000, 3000, 5000]

    def test_change_ownership__bad_sum_names_date_and_sum(
        self, reception, database: Database, clients: dict[str, int], horse
    ) -> None:  # type: ignore[no-untyped-def]
        before = _count(database, Ownership)
        response = reception.put(
            f"/api/v1/horses/{horse['id']}/ownership",
            json={
                "effective_from": "2025-01-01",
                "owners": [
                    {"client_id": clients["muller"], "share": 3333},
                    {"client_id": clients["munoz"], "share": 3333},
                    {"client_id": clients["syndicate"], "share": 3333},
                ],
            },
        )
        assert response.status_code == 422
        assert "99.99%" in response.json()["detail"]
        assert "2025-01-01" in response.json()["detail"]
        assert _count(database, Ownership) == before


class TestRoles:
    def test_technician_cannot_register_a_horse__403_and_audited(
        self, login_as, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        tech = login_as(Role.TECHNICIAN, "tech1")
        response = tech.post("/api/v1/horses", json={"barn_name": "Nope"})
        assert response.status_code == 403
        assert "technician" in response.json()["detail"]
        denied = _events(database, "access.denied")
        assert [(e.actor_name, e.object_id) for e in denied] == [
            ("tech1", "POST /api/v1/horses")
        ]
        assert _count(database, Horse) == 0

    @pytest.mark.parametrize(
        "role", [Role.RADIOLOGIST, Role.TECHNICIAN, Role.RECEPTION, Role.VETERINARIAN]
    )
    def test_every_staff_role_reads_horses(
        self, login_as, horse: dict[str, Any], role: Role
    ) -> None:  # type: ignore[no-untyped-def]
        reader = login_as(role, f"reader-{role.value}")
        assert reader.get(f"/api/v1/horses/{horse['id']}").status_code == 200
        assert reader.get(f"/api/v1/horses/{horse['id']}/visits").status_code == 200

    def test_anonymous_api_call_is_401(self, client: TestClient) -> None:
        response = client.get("/api/v1/horses")
        assert response.status_code == 401
        assert "Bearer" in response.json()["detail"]

    def test_api_token_reads_the_api_without_csrf(
        self, database: Database, client: TestClient, horse: dict[str, Any]
    ) -> None:
        with database.session() as session:
            from fetlock.auth.models import User

            user = session.execute(
                select(User).where(User.username == "frontdesk")
            ).scalar_one()
            token, _row = create_api_token(session, user, "lab integration")
        headers = {"Authorization": f"Bearer {token}"}
        response = client.get(f"/api/v1/horses/{horse['id']}", headers=headers)
        assert response.status_code == 200
        # Tokens are not cookies: unsafe methods need no CSRF token.
        response = client.post(
            "/api/v1/clients", json={"family_name": "Token"}, headers=headers
        )
        assert response.status_code == 201
        wrong = client.get(
            "/api/v1/horses", headers={"Authorization": "Bearer not-a-token"}
        )
        assert wrong.status_code == 401

    def test_cookie_session_without_csrf_header_is_refused(
        self, reception, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        response = reception.http.post("/api/v1/clients", json={"family_name": "X"})
        assert response.status_code == 403
        assert "CSRF" in response.json()["detail"]
        assert _count(database, Client) == 0

    def test_openapi_lists_the_practice_api(self, client: TestClient) -> None:
        assert client.get("/docs").status_code == 200
        paths = client.get("/api/v1/openapi.json").json()["paths"]
        for path in (
            "/api/v1/clients",
            "/api/v1/horses",
            "/api/v1/horses/{horse_id}/ownership",
            "/api/v1/horses/{horse_id}/visits",
            "/api/v1/visits/{visit_id}/notes",
            "/api/v1/notes/{note_id}/sign",
        ):
            assert path in paths


class TestVisitsAndNotes:
    @pytest.fixture
    def visit(self, reception, vet, horse: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        response = reception.post(
            f"/api/v1/horses/{horse['id']}/visits",
            json={
                "kind": "admission",
                "started_at": "2024-07-01T09:30",
                "attending_vet_id": vet.user.id,
                "reason": "Colic",
            },
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def test_naive_times_are_read_in_the_practice_time_zone(
        self, visit: dict[str, Any]
    ) -> None:
        # 09:30 in London in July is 08:30 UTC.
        started = dt.datetime.fromisoformat(visit["started_at"])
        assert started.astimezone(dt.UTC) == dt.datetime(
            2024, 7, 1, 8, 30, tzinfo=dt.UTC
        )

    def test_discharge(self, reception, visit: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
        response = reception.post(
            f"/api/v1/visits/{visit['id']}/discharge",
            json={"discharged_at": "2024-07-03T12:00:00+01:00"},
        )
        assert response.status_code == 200
        again = reception.post(
            f"/api/v1/visits/{visit['id']}/discharge",
            json={"discharged_at": "2024-07-04T12:00:00+01:00"},
        )
        assert again.status_code == 409

    def test_attending_vet_must_be_a_veterinarian(
        self, reception, horse: dict[str, Any]
    ) -> None:  # type: ignore[no-untyped-def]
        response = reception.post(
            f"/api/v1/horses/{horse['id']}/visits",
            json={
                "kind": "outpatient",
                "started_at": "2024-07-01T09:30",
                "attending_vet_id": reception.user.id,
            },
        )
        assert response.status_code == 422
        assert "attending_vet_id" in _field_errors(response.json())

    def test_signed_note__edit_409_addendum_ok(
        self, vet, database: Database, visit: dict[str, Any]
    ) -> None:  # type: ignore[no-untyped-def]
        response = vet.post(
            f"/api/v1/visits/{visit['id']}/notes",
            json={"subjective": "Rolling", "assessment": "Colic"},
        )
        assert response.status_code == 201
        note = response.json()
        assert note["status"] == "draft"

        assert (
            vet.patch(
                f"/api/v1/notes/{note['id']}", json={"plan": "Fluids"}
            ).status_code
            == 200
        )
        signed = vet.post(f"/api/v1/notes/{note['id']}/sign").json()
        assert signed["status"] == "signed"
        assert len(signed["content_sha256"]) == 64
        assert signed["signed_by_id"] == vet.user.id

        response = vet.patch(f"/api/v1/notes/{note['id']}", json={"plan": "Surgery"})
        assert response.status_code == 409
        assert "addendum" in response.json()["detail"]
        assert vet.get(f"/api/v1/notes/{note['id']}").json()["plan"] == "Fluids"

        addendum = vet.post(
            f"/api/v1/notes/{note['id']}/addenda",
            json={"plan": "Correction: surgery booked", "sign": True},
        )
        assert addendum.status_code == 201
        assert addendum.json()["addendum_to_id"] == note["id"]
        assert addendum.json()["status"] == "signed"
        listed = vet.get(f"/api/v1/visits/{visit['id']}/notes").json()
        assert [n["id"] for n in listed] == [note["id"], addendum.json()["id"]]

    @pytest.mark.parametrize("role", [Role.RECEPTION, Role.ADMIN, Role.RADIOLOGIST])
    def test_only_veterinarians_write_notes(
        self, login_as, database: Database, visit: dict[str, Any], role: Role
    ) -> None:  # type: ignore[no-untyped-def]
        other = login_as(role, f"not-a-vet-{role.value}")
        response = other.post(
            f"/api/v1/visits/{visit['id']}/notes", json={"subjective": "x"}
        )
        assert response.status_code == 403
        assert _count(database, SoapNote) == 0
        denied = _events(database, "access.denied")
        assert denied[-1].actor_name == f"not-a-vet-{role.value}"

    def test_another_vet_cannot_change_a_draft(
        self, vet, login_as, visit: dict[str, Any]
    ) -> None:  # type: ignore[no-untyped-def]
        note = vet.post(
            f"/api/v1/visits/{visit['id']}/notes", json={"subjective": "Mine"}
        ).json()
        colleague = login_as(Role.VETERINARIAN, "colleague")
        response = colleague.patch(
            f"/api/v1/notes/{note['id']}", json={"subjective": "Theirs"}
        )
        assert response.status_code == 403
        assert colleague.post(f"/api/v1/notes/{note['id']}/sign").status_code == 403

    def test_unknown_visit_kind(self, reception, horse: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
        response = reception.post(
            f"/api/v1/horses/{horse['id']}/visits",
            json={"kind": "house call", "started_at": "2024-07-01T09:30"},
        )
        assert response.status_code == 422
        assert _field_errors(response.json())["kind"]["value"] == "house call"

    def test_bad_visit_time(self, reception, database, horse: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
        response = reception.post(
            f"/api/v1/horses/{horse['id']}/visits",
            json={"kind": "outpatient", "started_at": "yesterday"},
        )
        assert response.status_code == 422
        assert "YYYY-MM-DDTHH:MM" in response.json()["detail"]
        assert _count(database, Visit) == 0
