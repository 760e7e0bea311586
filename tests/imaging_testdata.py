"""Builders for imaging and worklist tests: owners, horses, vets, modalities.

Shared by ``tests/imaging``, ``tests/dicom``, ``tests/interop`` and ``bench/``;
import it as ``tests.imaging_testdata`` (pytest's ``pythonpath`` is the
repository root).
"""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import dataclass

from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.auth.models import Role, User
from fetlock.auth.service import create_user
from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.imaging import service
from fetlock.imaging.models import ImagingOrder, RemoteAE, SpecificCharacterSet
from fetlock.imaging.schemas import OrderCreate, StationIn
from fetlock.practice import service as practice
from fetlock.practice.models import Client, Horse

ACTOR = Actor(name="tester")
OWNED_FROM = dt.date(2020, 1, 1)
PASSWORD = "correct-horse-battery"

DR_STATION = "DR_STALL1"
US_STATION = "US_VET1"
LATIN1_STATION = "CR_OLD"


@dataclass
class EquinePractice:
    """A small practice: a vet, stations and three horses with their owners."""

    vet: User
    reception: User
    dr: RemoteAE
    us: RemoteAE
    latin1: RemoteAE
    muller: Client
    stud: Client
    monty: Horse
    ballyhale_star: Horse
    lukasz_pony: Horse


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_practice(db_session: Session) -> EquinePractice:
    vet = create_user(
        db_session,
        username="dr-whitfield",
        full_name="Dr Sarah Whitfield",
        role=Role.VETERINARIAN,
        password=PASSWORD,
    )
    reception = create_user(
        db_session,
        username="front-desk",
        full_name="Priya Nair",
        role=Role.RECEPTION,
        password=PASSWORD,
    )
    dr = service.save_station(
        db_session,
        ACTOR,
        StationIn(ae_title=DR_STATION, host="127.0.0.1", port=104, modality="DX"),
    )
    us = service.save_station(
        db_session,
        ACTOR,
        StationIn(
            ae_title=US_STATION,
            host="127.0.0.1",
            port=104,
            modality="US",
            restrict_worklist_to_own_ae=True,
        ),
    )
    latin1 = service.save_station(
        db_session,
        ACTOR,
        StationIn(
            ae_title=LATIN1_STATION,
            host="127.0.0.1",
            port=104,
            modality="DX",
            character_set=SpecificCharacterSet.LATIN1,
        ),
    )
    muller = practice.create_client(
        db_session, ACTOR, kind="person", given_name="Anna", family_name="Müller"
    )
    stud = practice.create_client(
        db_session, ACTOR, kind="organisation", organisation_name="Ballyhale Stud"
    )
    wisniewski = practice.create_client(
        db_session,
        ACTOR,
        kind="person",
        given_name="Łukasz",
        family_name="Wiśniewski",
    )
    monty = practice.create_horse(
        db_session,
        ACTOR,
        barn_name="Monty",
        registered_name="Ballyhale Monarch",
        species="horse",
        breed="Hanoverian",
        sex="gelding",
        date_of_birth=dt.date(2014, 5, 2),
        microchip="826041000012345",
        ueln="826002000098765",
        passport_number="GBR-2014-00001",
        registry_name="Hanoverian Society",
        registry_number="DE 331310412514",
    )
    star = practice.create_horse(
        db_session,
        ACTOR,
        barn_name="Star",
        species="horse",
        breed="Thoroughbred",
        sex="mare",
    )
    pony = practice.create_horse(
        db_session,
        ACTOR,
        barn_name="Żuk",
        species="pony",
        breed="Connemara Pony",
        sex="stallion",
    )
    for horse, owner in ((monty, muller), (star, stud), (pony, wisniewski)):
        practice.set_owners_from(
            db_session, ACTOR, horse, OWNED_FROM, [practice.ShareInput(owner.id, 10000)]
        )
    db_session.flush()
    return EquinePractice(
        vet=vet,
        reception=reception,
        dr=dr,
        us=us,
        latin1=latin1,
        muller=muller,
        stud=stud,
        monty=monty,
        ballyhale_star=star,
        lukasz_pony=pony,
    )


def place_order(
    db_session: Session,
    settings: Settings,
    horse: Horse,
    vet: User,
    *,
    procedure_code: str = "RAD-NAV",
    limb: str | None = "LF",
    station: str = DR_STATION,
    start: dt.datetime | None = None,
    views: list[str] | None = None,
) -> ImagingOrder:
    """Order a study through the service, as the chart's form would."""
    data = OrderCreate(
        procedure_code=procedure_code,
        limb=limb,
        station_ae_title=station,
        scheduled_start=start,
        requesting_clinician_id=vet.id,
        views=views,
        clinical_history="Lame LF 3/5 since Tuesday",
    )
    return service.create_order(db_session, ACTOR, settings, horse.id, data)


def dicom_settings(settings: Settings, **changes: object) -> Settings:
    """Return ``settings`` with the DICOM listener on a free loopback port."""
    values: dict[str, object] = {
        "dicom_enabled": True,
        "dicom_host": "127.0.0.1",
        "dicom_port": free_port(),
    }
    values.update(changes)
    return settings.model_copy(update=values)


def start_dicom(settings: Settings, database: Database):  # type: ignore[no-untyped-def]
    from fetlock.dicom.server import DicomService

    dicom = DicomService(settings, database)
    dicom.start()
    return dicom


def bulk_worklist(
    db_session: Session,
    settings: Settings,
    horses: list[Horse],
    vet: User,
    starts: list[dt.datetime],
    *,
    station: RemoteAE,
    procedure_code: str = "RAD-FET",
    limb: str = "LF",
) -> int:
    """Insert one scheduled order per start time, cycling through ``horses``.

    Rows are written directly (no audit event, no billing charge) so that tests
    and benchmarks can fill a worklist with thousands of items quickly. The
    identifiers come from the same counters and formats as ``create_order``.
    """
    from pydicom.uid import generate_uid

    from fetlock.db.counters import next_value
    from fetlock.imaging.models import ScheduledProcedureStep
    from fetlock.practice.models import Visit, VisitKind

    procedure = service.get_procedure_by_code(db_session, procedure_code)
    views = service.standard_views(procedure, limb)
    visits = {}
    for horse in horses:
        visit = Visit(
            horse_id=horse.id,
            kind=VisitKind.OUTPATIENT,
            started_at=min(starts),
            reason="bulk worklist",
        )
        db_session.add(visit)
        visits[horse.id] = visit
    db_session.flush()
    for index, start in enumerate(starts):
        horse = horses[index % len(horses)]
        number = next_value(db_session, service.ACCESSION_COUNTER)
        order = ImagingOrder(
            horse_id=horse.id,
            visit_id=visits[horse.id].id,
            procedure_id=procedure.id,
            modality=procedure.modality,
            status="scheduled",
            accession_number=service.ACCESSION_FORMAT.format(number),
            requested_procedure_id=service.REQUESTED_PROCEDURE_FORMAT.format(number),
            study_instance_uid=generate_uid(prefix=settings.uid_root),
            limb=limb,
            requesting_clinician_id=vet.id,
            station_id=station.id,
            scheduled_start=start,
            priority="ROUTINE",
        )
        order.procedure = procedure
        service._set_views(order, views)
        order.steps.append(
            ScheduledProcedureStep(
                sps_id=service.SPS_ID_FORMAT.format(
                    next_value(db_session, service.SPS_COUNTER)
                ),
                station_ae_title=station.ae_title,
                station_name=station.station_name,
                modality=procedure.modality,
                scheduled_start=start,
                description=f"{procedure.name} {limb}",
                status="SCHEDULED",
            )
        )
        db_session.add(order)
        if index % 500 == 499:
            db_session.flush()
    db_session.flush()
    return len(starts)
