"""Fixtures for practice tests: a vet, a few owners and a horse."""

from __future__ import annotations

import datetime as dt

import pytest
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.auth import service as auth_service
from fetlock.auth.models import Role, User
from fetlock.auth.service import create_user
from fetlock.practice import service
from fetlock.practice.models import Client, Horse

OWNED_FROM = dt.date(2022, 1, 1)


@pytest.fixture(autouse=True)
def quick_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash test passwords with the cheapest Argon2 parameters.

    Every API test logs in several users; the production parameters cost about
    a second per hash on a busy machine. Password handling itself is tested
    with the real parameters in tests/auth.
    """
    monkeypatch.setattr(
        auth_service,
        "_hasher",
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )


@pytest.fixture
def actor() -> Actor:
    return Actor(name="tester")


@pytest.fixture
def vet(db_session: Session) -> User:
    return create_user(
        db_session,
        username="dr-test",
        full_name="Dr Test",
        role=Role.VETERINARIAN,
        password="correct-horse-battery",
    )


@pytest.fixture
def owners(db_session: Session, actor: Actor) -> dict[str, Client]:
    """Anna Müller, José Muñoz and the Oakridge Racing Syndicate."""
    return {
        "muller": service.create_client(
            db_session, actor, kind="person", given_name="Anna", family_name="Müller"
        ),
        "munoz": service.create_client(
            db_session, actor, kind="person", given_name="José", family_name="Muñoz"
        ),
        "oakridge": service.create_client(
            db_session,
            actor,
            kind="organisation",
            organisation_name="Oakridge Racing Syndicate",
        ),
    }


@pytest.fixture
def horse_owned_by_muller(
    db_session: Session, actor: Actor, owners: dict[str, Client]
) -> Horse:
    """Monty, a gelding with microchip and UELN, owned 100 % by Anna Müller."""
    horse = service.create_horse(
        db_session,
        actor,
        barn_name="Monty",
        registered_name="Ballyhale Monarch",
        species="horse",
        breed="Irish Sport Horse",
        sex="gelding",
        microchip="826041000012345",
        ueln="826002000098765",
        passport_number="GBR-2014-00001",
    )
    service.set_owners_from(
        db_session,
        actor,
        horse,
        OWNED_FROM,
        [service.ShareInput(owners["muller"].id, 10000)],
    )
    return horse
