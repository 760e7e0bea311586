"""Demo imaging: the procedure catalog, two modalities and today's worklist.

Runs after the practice demo. A DR plate (``DR_STALL1``) and an ultrasound
(``US_VET1``) are configured on loopback, and orders are scheduled for today on
both, so a modality (or ``findscu -W``) finds a worklist at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.auth.models import User
from fetlock.config import Settings
from fetlock.imaging import service
from fetlock.imaging.schemas import OrderCreate, StationIn
from fetlock.practice.models import Horse

logger = logging.getLogger(__name__)

DEMO_ACTOR = Actor(name="demo")

DEMO_STATIONS = (
    StationIn(
        ae_title="DR_STALL1",
        host="127.0.0.1",
        port=11113,
        modality="DX",
        station_name="STALL1",
        description="Portable DR plate, stall 1",
    ),
    StationIn(
        ae_title="US_VET1",
        host="127.0.0.1",
        port=11114,
        modality="US",
        station_name="USVET1",
        description="Ultrasound, ambulatory",
        restrict_worklist_to_own_ae=True,
    ),
)


class DemoOrder(NamedTuple):
    horse: str
    procedure: str
    limb: str | None
    station: str
    time: dt.time
    vet: str
    history: str


TODAY = (
    DemoOrder(
        "Monty",
        "RAD-NAV",
        "LF",
        "DR_STALL1",
        dt.time(9, 30),
        "vet2",
        "LF lameness blocked to palmar digital nerve block.",
    ),
    DemoOrder(
        "Pickle",
        "RAD-HOCK",
        "LH",
        "DR_STALL1",
        dt.time(10, 15),
        "vet3",
        "Stiff LH, distension of the tarsocrural joint.",
    ),
    DemoOrder(
        "Flynn",
        "US-TEN",
        "RF",
        "US_VET1",
        dt.time(11, 0),
        "vet",
        "Heat and swelling over the SDFT, RF, after cross-country.",
    ),
    DemoOrder(
        "Luna",
        "RAD-PPE",
        None,
        "DR_STALL1",
        dt.time(14, 0),
        "vet",
        "Pre-purchase examination, five-stage vetting passed stage 2.",
    ),
    DemoOrder(
        "Rosie",
        "US-TEN",
        "LF",
        "US_VET1",
        dt.time(15, 30),
        "vet2",
        "Recheck of LF suspensory branch lesion, 8 weeks.",
    ),
)


def seed_imaging(
    db_session: Session, settings: Settings, users: dict[str, User]
) -> None:
    """Seed the catalog and modalities, and schedule today's demo orders."""
    service.seed_catalog(db_session, DEMO_ACTOR)
    for station in DEMO_STATIONS:
        if not any(
            s.ae_title == station.ae_title for s in service.list_stations(db_session)
        ):
            service.save_station(db_session, DEMO_ACTOR, station)

    today = dt.datetime.now(settings.zone).date()
    for entry in TODAY:
        horse = db_session.execute(
            select(Horse).where(Horse.barn_name == entry.horse)
        ).scalar_one_or_none()
        vet = users.get(entry.vet)
        if horse is None or vet is None:
            logger.warning(
                "demo order for %s skipped: horse or vet missing", entry.horse
            )
            continue
        start = dt.datetime.combine(today, entry.time, tzinfo=settings.zone)
        actor = Actor(name=vet.username, user_id=vet.id)
        order = service.create_order(
            db_session,
            actor,
            settings,
            horse.id,
            OrderCreate(
                procedure_code=entry.procedure,
                limb=entry.limb,
                station_ae_title=entry.station,
                scheduled_start=start,
                requesting_clinician_id=vet.id,
                clinical_history=entry.history,
            ),
        )
        logger.info(
            "demo order %s: %s %s on %s",
            order.accession_number,
            entry.horse,
            entry.procedure,
            entry.station,
        )
