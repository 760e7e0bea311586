"""The demo practice holds the cases the product promises to show."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.auth.models import Role, User
from fetlock.auth.service import create_user
from fetlock.config import Settings
from fetlock.db.base import Base, utcnow
from fetlock.db.session import Database
from fetlock.demo import DEMO_STAFF
from fetlock.practice import service
from fetlock.practice.demo import seed_practice
from fetlock.practice.models import (
    FULL_SHARE,
    Client,
    ClientKind,
    Horse,
    NoteStatus,
    SoapNote,
    Visit,
    VisitKind,
)


def _seed(database: Database, settings: Settings) -> None:
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


@pytest.fixture
def seeded(database: Database, settings: Settings) -> Database:
    _seed(database, settings)
    return database


def _snapshot(session: Session) -> list[tuple[object, ...]]:
    today = dt.date(2025, 1, 1)
    rows: list[tuple[object, ...]] = []
    for horse in session.execute(select(Horse).order_by(Horse.patient_id)).scalars():
        owners = tuple(
            (c.display_name, s) for c, s in service.owners_on(session, horse, today)
        )
        rows.append(
            (horse.patient_id, horse.barn_name, horse.microchip, horse.ueln, owners)
        )
    return rows


def test_demo_has_the_promised_cases(seeded: Database) -> None:
    today = utcnow().date()
    with seeded.session() as session:
        horses = list(session.execute(select(Horse)).scalars())
        assert len(horses) == 40
        assert len({h.patient_id for h in horses}) == 40

        staff = {u.role for u in session.execute(select(User)).scalars()}
        assert {r.value for r in Role} <= staff
        vets = session.execute(
            select(User).where(User.role == Role.VETERINARIAN.value)
        ).all()
        assert len(vets) >= 3

        syndicated = [
            sorted((s for _c, s in service.owners_on(session, h, today)), reverse=True)
            for h in horses
        ]
        assert [5000, 3000, 2000] in syndicated
        assert all(sum(s) == FULL_SHARE for s in syndicated)

        species = {h.species for h in horses}
        assert {"horse", "pony", "donkey", "mule"} <= species
        assert any(h.sex == "gelding" and h.microchip and h.ueln for h in horses), (
            "a gelding with microchip and UELN"
        )

        clients = list(session.execute(select(Client)).scalars())
        names = " ".join(c.display_name for c in clients)
        for accented in ("Müller", "Muñoz", "Søndergaard", "Åkesson"):
            assert accented in names
        organisations = [
            c.organisation_name for c in clients if c.kind == ClientKind.ORGANISATION
        ]
        for kind in ("Stud", "Syndicate", "Livery Yard"):
            assert any(kind in (name or "") for name in organisations), kind

        in_hospital = session.execute(
            select(Visit).where(
                Visit.kind == VisitKind.ADMISSION, Visit.discharged_at.is_(None)
            )
        ).all()
        assert in_hospital
        signed = list(
            session.execute(
                select(SoapNote).where(SoapNote.status == NoteStatus.SIGNED.value)
            ).scalars()
        )
        assert len(signed) >= 3
        assert all(service.verify_note(n) for n in signed)


def test_demo_is_the_same_every_time(
    seeded: Database, database: Database, settings: Settings
) -> None:
    with seeded.session() as session:
        first = _snapshot(session)
    with database.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    _seed(database, settings)
    with database.session() as session:
        assert _snapshot(session) == first
