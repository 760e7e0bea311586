"""Role checks and request helpers shared by the practice API and pages.

Who may do what:

- every staff role reads clients, horses, the chart, visits and notes;
- reception and veterinarians create and change clients, horses, owners and
  visits;
- only veterinarians write, edit and sign SOAP notes (administrators are not
  admitted: a signature is a clinical act);
- only administrators see a horse's access history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from fastapi import Request
from sqlalchemy.orm import Session

from fetlock.auth.deps import ALL_STAFF, Principal, require_roles
from fetlock.auth.models import Role, User
from fetlock.db.base import utcnow
from fetlock.practice import service
from fetlock.practice.models import Client, Horse, SoapNote, Visit
from fetlock.practice.schemas import (
    HorseOut,
    OwnerOut,
    ShareIn,
    VisitCreate,
    format_percent,
)
from fetlock.web.errors import DomainError

# Roles per kind of act; administrators pass every check but note writing.
READERS = ALL_STAFF
FRONT_DESK = (Role.RECEPTION, Role.VETERINARIAN)
NOTE_WRITERS = (Role.VETERINARIAN,)

can_read = require_roles(*READERS)
can_register = require_roles(*FRONT_DESK)
can_write_notes = require_roles(*NOTE_WRITERS, admins=False)


class NotAuthor(DomainError):
    """A veterinarian tried to change or sign a colleague's draft note."""

    status_code = 403


def practice_zone(request: Request) -> dt.tzinfo:
    zone: dt.tzinfo = request.app.state.settings.zone
    return zone


def practice_today(request: Request) -> dt.date:
    return utcnow().astimezone(practice_zone(request)).date()


def read_in_zone(value: dt.datetime | None, zone: dt.tzinfo) -> dt.datetime | None:
    """Read a time without an offset in the practice time zone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=zone)


def owners_out(owners: Sequence[tuple[Client, int]]) -> list[OwnerOut]:
    return [
        OwnerOut(
            client_id=client.id,
            name=client.display_name,
            share=share,
            percent=format_percent(share),
        )
        for client, share in owners
    ]


def horse_out(db_session: Session, horse: Horse, day: dt.date) -> HorseOut:
    out = HorseOut.model_validate(horse)
    out.owners = owners_out(service.owners_on(db_session, horse, day))
    return out


def check_author(principal: Principal, note: SoapNote) -> None:
    if note.author_id != principal.user.id:
        raise NotAuthor(
            f"SOAP note {note.id} was written by another veterinarian; only its "
            "author may change or sign a draft (add your own note instead)",
            field="note_id",
            value=note.id,
        )


def set_initial_owners(
    db_session: Session,
    principal: Principal,
    horse: Horse,
    owners: Sequence[ShareIn],
    day: dt.date,
) -> None:
    service.set_owners_from(
        db_session,
        principal.actor,
        horse,
        day,
        [service.ShareInput(o.client_id, o.share) for o in owners],
    )


def create_visit_from(
    db_session: Session,
    principal: Principal,
    horse: Horse,
    body: VisitCreate,
    zone: dt.tzinfo,
) -> Visit:
    if body.attending_vet_id is not None:
        vet = db_session.get(User, body.attending_vet_id)
        if vet is None or vet.role != Role.VETERINARIAN.value:
            raise DomainError(
                f"user {body.attending_vet_id} is not a veterinarian; pick the "
                "attending veterinarian from the practice's veterinarians",
                field="attending_vet_id",
                value=body.attending_vet_id,
            )
    started_at = read_in_zone(body.started_at, zone)
    assert started_at is not None
    return service.create_visit(
        db_session,
        principal.actor,
        horse,
        kind=body.kind,
        started_at=started_at,
        discharged_at=read_in_zone(body.discharged_at, zone),
        attending_vet_id=body.attending_vet_id,
        location=body.location,
        reason=body.reason,
    )
