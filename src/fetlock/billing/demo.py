"""Demo billing: the fee schedule, and invoices in each state.

Runs after the other domains' demo data. Storm, the syndicate horse (50/30/20),
must show charges from imaging orders and three draft invoices on its chart;
when no demo order has charged Storm, a fetlock series is ordered for Storm's
current admission through the imaging service. A few other horses' drafts
are issued, and some of those paid, so the chart and client invoice pages
show every state.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.auth.models import User
from fetlock.billing import fees, service
from fetlock.billing.models import InvoiceStatus
from fetlock.config import Settings
from fetlock.practice.models import Horse

logger = logging.getLogger(__name__)

SYNDICATE_HORSE = "Storm"
# Horses whose drafts the demo issues, and whether it also records payment.
INVOICE_STATES = (
    ("Duke", InvoiceStatus.PAID),
    ("Archie", InvoiceStatus.PAID),
    ("Marcel", InvoiceStatus.ISSUED),
    ("Odin", InvoiceStatus.ISSUED),
)

# The series ordered for Storm when no other demo order charged it; one view
# beyond the standard set shows a per-view line.
STORM_PROCEDURE = "RAD-FET"
STORM_LIMB = "LF"
STORM_EXTRA_VIEW = "LF-D65Pr-PaDiO"
# NOTE: used only when the imaging demo has configured no DX modality, which
# the imaging service needs to place an order.
FALLBACK_STATION = ("DEMODR", "DX", "Demo portable DR plate")


def seed_billing(
    db_session: Session, settings: Settings, users: dict[str, User]
) -> None:
    """Seed the fee schedule and bring the demo's invoices into their states."""
    fees.ensure_fee_schedule(db_session)
    reception = users.get("reception")
    actor = (
        Actor(name=reception.username, user_id=reception.id)
        if reception
        else Actor(name="demo")
    )
    storm = db_session.execute(
        select(Horse).where(Horse.barn_name == SYNDICATE_HORSE)
    ).scalar_one_or_none()
    if storm is not None and not service.list_charges(db_session, horse_id=storm.id):
        _order_for(db_session, settings, users, storm)
    _advance_invoices(db_session, actor)


def _order_for(
    db_session: Session, settings: Settings, users: dict[str, User], horse: Horse
) -> None:
    from fetlock.imaging import service as imaging
    from fetlock.imaging.schemas import OrderCreate, StationIn

    vet = users.get("vet")
    actor = Actor(name=vet.username, user_id=vet.id) if vet else Actor(name="demo")
    imaging.ensure_catalog(db_session)
    procedure = imaging.get_procedure_by_code(db_session, STORM_PROCEDURE)
    if not any(
        s.modality == procedure.modality
        for s in imaging.list_stations(db_session, include_inactive=False)
    ):
        ae_title, modality, description = FALLBACK_STATION
        imaging.save_station(
            db_session,
            actor,
            StationIn(
                ae_title=ae_title,
                host="127.0.0.1",
                port=11113,
                modality=modality,
                description=description,
            ),
        )
    views = [
        f"{STORM_LIMB}-{view.projection}"
        for view in procedure.views
        if view.default_selected
    ]
    imaging.create_order(
        db_session,
        actor,
        settings,
        horse.id,
        OrderCreate(
            procedure_code=STORM_PROCEDURE,
            limb=STORM_LIMB,
            views=[*views, STORM_EXTRA_VIEW],
            clinical_history="Syndicate pre-training check, left fore fetlock.",
        ),
        default_clinician_id=vet.id if vet else None,
    )
    logger.info("demo imaging order placed for %s", horse.barn_name)


def _advance_invoices(db_session: Session, actor: Actor) -> None:
    for barn_name, state in INVOICE_STATES:
        horse = db_session.execute(
            select(Horse).where(Horse.barn_name == barn_name)
        ).scalar_one_or_none()
        if horse is None:
            logger.warning("demo invoices of %s skipped: no such horse", barn_name)
            continue
        drafts = service.list_invoices(
            db_session, horse_id=horse.id, status=InvoiceStatus.DRAFT.value
        )
        for invoice in drafts:
            service.issue_invoice(db_session, actor, invoice)
            if state == InvoiceStatus.PAID:
                service.pay_invoice(db_session, actor, invoice, reference="demo BACS")
