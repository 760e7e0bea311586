"""Practice pages: search, the chart, forms that re-render with errors."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fetlock.audit.models import AuditEvent
from fetlock.auth.models import Role
from fetlock.auth.service import create_user
from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.demo import DEMO_STAFF
from fetlock.practice.demo import seed_practice
from fetlock.practice.models import Client, Horse, Ownership, SoapNote


@pytest.fixture
def demo_practice(database: Database, settings: Settings) -> None:
    """The demo staff, owners, horses, visits and notes (no imaging, billing)."""
    with database.session() as session:
        users = {
            username: create_user(
                session,
                username=username,
                full_name=name,
                role=role,
                password="demo-password-123",
            )
            for username, name, role in DEMO_STAFF
        }
        seed_practice(session, settings, users)


def _horse_id(database: Database, barn_name: str) -> int:
    with database.session() as session:
        return session.execute(
            select(Horse.id).where(Horse.barn_name == barn_name)
        ).scalar_one()


def _count(database: Database, model: type) -> int:
    with database.session() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


@pytest.fixture
def vet(login_as):  # type: ignore[no-untyped-def]
    return login_as(Role.VETERINARIAN, "drpage")


@pytest.fixture
def reception(login_as):  # type: ignore[no-untyped-def]
    return login_as(Role.RECEPTION, "deskpage")


class TestSearchAndChart:
    def test_anonymous_is_sent_to_login(self, client: TestClient) -> None:
        response = client.get("/horses?q=storm", follow_redirects=False)
        assert response.status_code == 303
        # The next page is one query value, its own query escaped.
        assert response.headers["location"] == "/login?next=/horses%3Fq%3Dstorm"
        login = client.get(response.headers["location"])
        assert 'name="next" value="/horses?q=storm"' in login.text

    def test_horse_search(self, demo_practice: None, vet) -> None:  # type: ignore[no-untyped-def]
        # One seeded practice, several queries: seeding is the slow part.
        for query, expected in [
            ("muller", "Storm"),
            ("Muñoz", "Luna"),
            ("sondergaard", "Rosie"),
            ("FL000003", "Pickle"),
            ("826041000023757", "Pickle"),
            ("belle etoile", "Bella"),
        ]:
            response = vet.get("/horses", params={"q": query})
            assert response.status_code == 200
            assert f"<strong>{expected}</strong>" in response.text, query

    def test_horse_search__no_match_says_what_to_try(
        self, demo_practice: None, vet
    ) -> None:  # type: ignore[no-untyped-def]
        response = vet.get("/horses", params={"q": "Shadowfax"})
        assert "No horse matches" in response.text
        assert "Patient ID" in response.text

    def test_chart_shows_identity_owners_sections_and_is_audited(
        self, demo_practice: None, vet, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        horse_id = _horse_id(database, "Storm")
        response = vet.get(f"/horses/{horse_id}")
        assert response.status_code == 200
        page = response.text
        assert "FL000002" in page
        owners = re.search(r'<dd class="owners">(.*?)</dd>', page, re.S)
        assert owners is not None
        assert re.findall(r">([^<>]+)</a> (\d+%)", owners.group(1)) == [
            ("Oakridge Racing Syndicate", "50%"),
            ("Mrs Anna Müller", "30%"),
            ("Mr José Muñoz", "20%"),
        ]
        assert "In hospital since" in page
        for section, heading in (
            ("orders", "Imaging orders"),
            ("studies", "Studies"),
            ("billing", "Billing"),
        ):
            assert (
                f'<section id="{section}-section" '
                f'data-refresh="/horses/{horse_id}/{section}-section">'
            ) in page
            assert f">{heading}</h2>" in page
        # The vet is not an admin: no access history.
        assert "Access history" not in page

        with database.session() as session:
            views = session.execute(
                select(AuditEvent).where(AuditEvent.action == "chart.view")
            ).scalars()
            assert [(e.actor_name, e.horse_id) for e in views] == [("drpage", horse_id)]

    def test_admin_sees_access_history(
        self, demo_practice: None, vet, login_as, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        horse_id = _horse_id(database, "Monty")
        vet.get(f"/horses/{horse_id}")
        admin = login_as(Role.ADMIN, "boss")
        page = admin.get(f"/horses/{horse_id}").text
        history = page[page.index("Access history") :]
        assert "drpage" in history
        assert "chart.view" in history
        assert "horse.create" in history

    def test_client_page_lists_horses_with_shares(
        self, demo_practice: None, vet, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        with database.session() as session:
            syndicate = session.execute(
                select(Client.id).where(
                    Client.organisation_name == "Oakridge Racing Syndicate"
                )
            ).scalar_one()
        page = vet.get(f"/clients/{syndicate}").text
        assert "Storm" in page
        assert "share 50%" in page
        assert "Zephyr" in page
        assert "share 100%" in page

    def test_unknown_horse_is_404(self, vet) -> None:  # type: ignore[no-untyped-def]
        response = vet.get("/horses/55555")
        assert response.status_code == 404
        assert "55555" in response.text


class TestForms:
    def test_new_client_then_horse(self, reception, database: Database) -> None:  # type: ignore[no-untyped-def]
        response = reception.post(
            "/clients",
            data={"kind": "person", "given_name": "Zoë", "family_name": "Brontë"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        client_id = int(response.headers["location"].rsplit("/", 1)[1])

        response = reception.post(
            "/horses",
            data={
                "barn_name": "Heathcliff",
                "species": "pony",
                "sex": "gelding",
                "owner_id": str(client_id),
                "owner_percent": "100",
            },
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        chart = reception.get(response.headers["location"]).text
        assert "Heathcliff" in chart
        assert "Zoë Brontë" in chart

    def test_horse_form__unknown_species_rerenders_with_values(
        self, reception, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        with database.session() as session:
            from fetlock.audit.service import SYSTEM
            from fetlock.practice import service

            owner = service.create_client(
                session, SYSTEM, kind="person", family_name="Hollis"
            )
        response = reception.post(
            "/horses",
            data={
                "barn_name": "Stripes",
                "species": "zebra",
                "date_of_birth": "2019-02-30",
                "owner_id": str(owner.id),
                "owner_percent": "100",
            },
        )
        assert response.status_code == 422
        page = response.text
        assert "species" in page
        assert "zebra" in page
        assert "date_of_birth" in page
        assert "YYYY-MM-DD" in page
        assert 'value="Stripes"' in page
        assert 'value="2019-02-30"' in page
        assert _count(database, Horse) == 0

    def test_horse_form__without_owner_is_refused(
        self, reception, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        response = reception.post("/horses", data={"barn_name": "Orphan"})
        assert response.status_code == 422
        assert "needs an owner" in response.text
        assert 'value="Orphan"' in response.text
        assert _count(database, Horse) == 0

    def test_ownership_form__95_percent_rerenders_and_saves_nothing(
        self, demo_practice: None, reception, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        horse_id = _horse_id(database, "Storm")
        with database.session() as session:
            ids = list(session.execute(select(Client.id).limit(2)).scalars())
        before = _count(database, Ownership)
        response = reception.post(
            f"/horses/{horse_id}/owners",
            data={
                "effective_from": "2025-02-01",
                "owner_id": [str(ids[0]), str(ids[1]), ""],
                "owner_percent": ["50", "45", ""],
            },
        )
        assert response.status_code == 422
        assert "95%" in response.text
        assert "2025-02-01" in response.text
        assert 'value="45"' in response.text
        assert _count(database, Ownership) == before

    def test_ownership_form__bad_date(
        self, demo_practice: None, reception, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        horse_id = _horse_id(database, "Monty")
        with database.session() as session:
            first = session.execute(select(Client.id).limit(1)).scalar_one()
        response = reception.post(
            f"/horses/{horse_id}/owners",
            data={
                "effective_from": "01/02/2025",
                "owner_id": [str(first)],
                "owner_percent": ["100"],
            },
        )
        assert response.status_code == 422
        assert "effective_from" in response.text
        assert "YYYY-MM-DD" in response.text

    def test_form_without_csrf_token_is_refused(
        self, reception, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        response = reception.http.post(
            "/clients", data={"kind": "person", "family_name": "Forged"}
        )
        assert response.status_code == 403
        assert _count(database, Client) == 0

    def test_visit_form__ambulatory_without_location(
        self, demo_practice: None, reception, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        horse_id = _horse_id(database, "Pepper")
        response = reception.post(
            f"/horses/{horse_id}/visits",
            data={"kind": "ambulatory", "started_at": "2025-03-01T10:00"},
        )
        assert response.status_code == 422
        assert "location" in response.text
        assert 'value="2025-03-01T10:00"' in response.text


class TestNotesOnTheChart:
    def test_write_and_sign_then_edit_is_refused(
        self, demo_practice: None, vet, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        horse_id = _horse_id(database, "Luna")
        vet.post(
            f"/horses/{horse_id}/visits",
            data={"kind": "outpatient", "started_at": "2025-03-01T10:00"},
        )
        chart = vet.get(f"/horses/{horse_id}").text
        visit_id = int(re.findall(r'id="visit-(\d+)"', chart)[0])
        form = vet.get(f"/visits/{visit_id}/notes/new")
        assert form.status_code == 200

        response = vet.post(
            f"/visits/{visit_id}/notes",
            data={
                "subjective": "Pre-purchase vetting",
                "assessment": "Sound at walk and trot",
                "action": "sign",
            },
            follow_redirects=False,
        )
        assert response.status_code == 303
        note_id = int(response.headers["location"].rsplit("note-", 1)[1])
        chart = vet.get(f"/horses/{horse_id}").text
        article = chart[chart.index(f'id="note-{note_id}"') :]
        assert 'data-status="signed"' in article[:200]
        assert "Signed by Drpage" in article

        response = vet.post(f"/notes/{note_id}", data={"subjective": "Changed"})
        assert response.status_code == 409
        assert "addendum" in response.text
        with database.session() as session:
            note = session.get(SoapNote, note_id)
            assert note is not None and note.subjective == "Pre-purchase vetting"

    def test_reception_cannot_open_the_note_form(
        self, demo_practice: None, reception, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        response = reception.get("/visits/1/notes/new")
        assert response.status_code == 403
        with database.session() as session:
            denied = session.execute(
                select(AuditEvent.actor_name).where(
                    AuditEvent.action == "access.denied"
                )
            ).scalars()
            assert list(denied) == ["deskpage"]
