"""Billing test data: a syndicate horse with a visit, procedures, orders, studies."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from pydicom.uid import generate_uid
from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.auth.models import Role, User
from fetlock.auth.service import create_user
from fetlock.billing import hooks
from fetlock.imaging.models import ImagingOrder, OrderView, Procedure, ProcedureView
from fetlock.imaging.study_models import Instance, Series, Study
from fetlock.practice import service as practice
from fetlock.practice.models import Client, ClientKind, Horse, Visit, VisitKind

SERVICE_DAY = dt.date(2026, 11, 20)
SERVICE_AT = dt.datetime(2026, 11, 20, 10, 30, tzinfo=dt.UTC)

_numbers = itertools.count(1)


@dataclass
class Syndicate:
    """A horse owned 50/30/20 by three clients, with one open visit."""

    horse: Horse
    owners: list[Client]
    visit: Visit
    vet: User
    actor: Actor


def make_client(db_session: Session, actor: Actor, name: str) -> Client:
    return practice.create_client(
        db_session, actor, kind=ClientKind.PERSON, given_name="Pat", family_name=name
    )


def make_horse(
    db_session: Session,
    actor: Actor,
    owners: Sequence[tuple[Client, int]],
    *,
    barn_name: str = "Nutmeg",
    day: dt.date = dt.date(2020, 1, 1),
) -> Horse:
    horse = practice.create_horse(db_session, actor, barn_name=barn_name)
    if owners:
        practice.set_owners_from(
            db_session,
            actor,
            horse,
            day,
            [practice.ShareInput(client.id, share) for client, share in owners],
        )
    return horse


def make_visit(db_session: Session, actor: Actor, horse: Horse) -> Visit:
    return practice.create_visit(
        db_session,
        actor,
        horse,
        kind=VisitKind.OUTPATIENT,
        started_at=SERVICE_AT - dt.timedelta(hours=1),
    )


@pytest.fixture
def vet(db_session: Session) -> User:
    return create_user(
        db_session,
        username="billvet",
        full_name="Dr Bill Vet",
        role=Role.VETERINARIAN,
        password="correct-horse-battery",
    )


@pytest.fixture
def actor(vet: User) -> Actor:
    return Actor(name=vet.username, user_id=vet.id)


@pytest.fixture
def syndicate(db_session: Session, vet: User, actor: Actor) -> Syndicate:
    return build_syndicate(db_session, vet)


def build_syndicate(db_session: Session, vet: User) -> Syndicate:
    """Three owners 50/30/20 of one horse, and a visit on the service day."""
    actor = Actor(name=vet.username, user_id=vet.id)
    owners = [
        make_client(db_session, actor, "Ashworth"),
        make_client(db_session, actor, "Byrne"),
        make_client(db_session, actor, "Castell"),
    ]
    horse = make_horse(
        db_session, actor, list(zip(owners, (5000, 3000, 2000), strict=True))
    )
    visit = make_visit(db_session, actor, horse)
    db_session.flush()
    return Syndicate(horse, owners, visit, vet, actor)


def make_procedure(
    db_session: Session,
    code: str = "FETLOCK-LAT",
    fee_code: str = "RAD-FET",
    *,
    modality: str = "DX",
    projections: Sequence[str] = ("LM", "DP", "D45L-PaMO", "D45M-PaLO"),
    optional: Sequence[str] = ("FLM",),
    per_view_fee_code: str | None = "RAD-VIEW",
) -> Procedure:
    """A catalog procedure whose standard set is ``projections``."""
    procedure = Procedure(
        code=code,
        name=f"Procedure {code}",
        modality=modality,
        body_region="fetlock",
        fee_code=fee_code,
        per_view_fee_code=per_view_fee_code,
        limb_choice="LF RF LH RH",
    )
    procedure.views = [
        ProcedureView(
            projection=p, description=p, ordinal=i, default_selected=p not in optional
        )
        for i, p in enumerate([*projections, *optional])
    ]
    db_session.add(procedure)
    db_session.flush()
    return procedure


OrderPlacer = Callable[..., ImagingOrder]


def place_order(
    db_session: Session,
    vet: User,
    visit: Visit,
    procedure: Procedure,
    views: Sequence[str] | None = None,
    *,
    limb: str = "LF",
) -> ImagingOrder:
    """Save an imaging order row and call the billing hook, as imaging does."""
    number = next(_numbers)
    chosen = (
        list(views)
        if views is not None
        else [v.projection for v in procedure.views if v.default_selected]
    )
    order = ImagingOrder(
        horse_id=visit.horse_id,
        visit_id=visit.id,
        procedure_id=procedure.id,
        procedure=procedure,
        modality=procedure.modality,
        accession_number=f"TEST{number:06d}",
        requested_procedure_id=f"RP{number:06d}",
        study_instance_uid=generate_uid(),
        limb=limb,
        requesting_clinician_id=vet.id,
        scheduled_start=SERVICE_AT,
    )
    order.views = [
        OrderView(code=f"{limb}-{p}", limb=limb, projection=p, description=p, ordinal=i)
        for i, p in enumerate(chosen)
    ]
    db_session.add(order)
    db_session.flush()
    hooks.on_order_created(db_session, order, Actor(name=vet.username, user_id=vet.id))
    return order


@pytest.fixture(name="place_order")
def place_order_fixture(db_session: Session, vet: User) -> OrderPlacer:
    """``place_order`` bound to the test's session and veterinarian."""

    def _place(
        visit: Visit,
        procedure: Procedure,
        views: Sequence[str] | None = None,
        **kwargs: str,
    ) -> ImagingOrder:
        return place_order(db_session, vet, visit, procedure, views, **kwargs)

    return _place


def store_study(
    db_session: Session,
    *,
    horse_id: int | None,
    order_id: int | None,
    images: int,
    modality: str = "DX",
    study_date: str = "20261120",
) -> Study:
    """Index a study with ``images`` image instances, as ingest would."""
    study = Study(
        study_instance_uid=generate_uid(),
        horse_id=horse_id,
        order_id=order_id,
        study_date=study_date,
        study_description="test study",
    )
    db_session.add(study)
    db_session.flush()
    series = Series(
        study_id=study.id,
        series_instance_uid=generate_uid(),
        modality=modality,
        body_part_examined="LEG",
    )
    db_session.add(series)
    db_session.flush()
    for number in range(images):
        uid = generate_uid()
        db_session.add(
            Instance(
                study_id=study.id,
                series_id=series.id,
                sop_instance_uid=uid,
                sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                instance_number=number + 1,
                rows=256,
                columns=256,
                size_bytes=1000,
                sha256="0" * 64,
                blob_key=f"dicom/{uid}.dcm",
            )
        )
    db_session.flush()
    return study
