"""The practice JSON API under ``/api/v1``: clients, horses, ownership,
visits and SOAP notes. Role rules are in ``fetlock.practice.deps``."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.auth.deps import Principal
from fetlock.practice import service
from fetlock.practice.deps import (
    can_read,
    can_register,
    can_write_notes,
    check_author,
    create_visit_from,
    horse_out,
    owners_out,
    practice_today,
    practice_zone,
    read_in_zone,
    set_initial_owners,
)
from fetlock.practice.models import (
    NoteStatus,
)
from fetlock.practice.schemas import (
    ClientCreate,
    ClientOut,
    ClientUpdate,
    DischargeIn,
    HorseCreate,
    HorseOut,
    HorseUpdate,
    NoteContent,
    NoteCreate,
    NoteOut,
    OwnershipChange,
    OwnershipOut,
    OwnershipRowOut,
    VisitCreate,
    VisitOut,
)
from fetlock.web.deps import get_db_session
from fetlock.web.errors import DomainError

router = APIRouter()


@router.get("/api/v1/clients", tags=["clients"])
def api_list_clients(
    q: str = "",
    limit: int = 50,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[ClientOut]:
    """List clients whose name, e-mail, telephone or postcode match ``q``."""
    clients = service.search_clients(db_session, q, limit=min(max(limit, 1), 500))
    return [ClientOut.model_validate(c) for c in clients]


@router.post("/api/v1/clients", status_code=201, tags=["clients"])
def api_create_client(
    body: ClientCreate,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ClientOut:
    client = service.create_client(db_session, principal.actor, **body.model_dump())
    return ClientOut.model_validate(client)


@router.get("/api/v1/clients/{client_id}", tags=["clients"])
def api_get_client(
    client_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ClientOut:
    return ClientOut.model_validate(service.get_client(db_session, client_id))


@router.patch("/api/v1/clients/{client_id}", tags=["clients"])
def api_update_client(
    client_id: int,
    body: ClientUpdate,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ClientOut:
    client = service.get_client(db_session, client_id)
    service.update_client(
        db_session, principal.actor, client, **body.model_dump(exclude_unset=True)
    )
    return ClientOut.model_validate(client)


@router.get("/api/v1/horses", tags=["horses"])
def api_list_horses(
    request: Request,
    q: str = "",
    limit: int = 50,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[HorseOut]:
    """List horses matching ``q``: name, owner, microchip, UELN or Patient ID."""
    day = practice_today(request)
    horses = service.search_horses(db_session, q, limit=min(max(limit, 1), 500))
    return [horse_out(db_session, h, day) for h in horses]


@router.post("/api/v1/horses", status_code=201, tags=["horses"])
def api_create_horse(
    request: Request,
    body: HorseCreate,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> HorseOut:
    """Register a horse; ``owners`` (shares in hundredths of a percent) apply
    from ``owned_from``, today when left out."""
    fields = body.model_dump(exclude={"owners", "owned_from"})
    horse = service.create_horse(db_session, principal.actor, **fields)
    day = body.owned_from or practice_today(request)
    if body.owners:
        set_initial_owners(db_session, principal, horse, body.owners, day)
    return horse_out(db_session, horse, practice_today(request))


@router.get("/api/v1/horses/{horse_id}", tags=["horses"])
def api_get_horse(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> HorseOut:
    horse = service.get_horse(db_session, horse_id)
    audit.record(
        db_session, principal.actor, "chart.view", "horse", horse.id, horse_id=horse.id
    )
    return horse_out(db_session, horse, practice_today(request))


@router.patch("/api/v1/horses/{horse_id}", tags=["horses"])
def api_update_horse(
    request: Request,
    horse_id: int,
    body: HorseUpdate,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> HorseOut:
    horse = service.get_horse(db_session, horse_id)
    fields = body.model_dump(exclude_unset=True)
    for required in ("barn_name", "species"):
        if required in fields and fields[required] is None:
            raise DomainError(
                f"{required} cannot be emptied; give a value or leave it out",
                field=required,
                value=None,
            )
    service.update_horse(db_session, principal.actor, horse, **fields)
    return horse_out(db_session, horse, practice_today(request))


@router.get("/api/v1/horses/{horse_id}/ownership", tags=["ownership"])
def api_get_ownership(
    request: Request,
    horse_id: int,
    on: dt.date | None = None,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> OwnershipOut:
    """Return the owners on ``on`` (today) and the whole ownership history."""
    horse = service.get_horse(db_session, horse_id)
    day = on or practice_today(request)
    return OwnershipOut(
        horse_id=horse.id,
        on=day,
        owners=owners_out(service.owners_on(db_session, horse, day)),
        history=[
            OwnershipRowOut.model_validate(r)
            for r in service.ownership_history(db_session, horse)
        ],
    )


@router.put("/api/v1/horses/{horse_id}/ownership", tags=["ownership"])
def api_change_ownership(
    request: Request,
    horse_id: int,
    body: OwnershipChange,
    replace_later: bool = False,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> OwnershipOut:
    """Set the owners from ``effective_from`` on, closing the rows in force then.

    Changes dated after ``effective_from`` make this a 409 unless
    ``replace_later=true`` confirms that they are to be replaced.

    Shares must add up to 100 % at every date, or nothing changes.
    """
    horse = service.get_horse(db_session, horse_id)
    service.set_owners_from(
        db_session,
        principal.actor,
        horse,
        body.effective_from,
        [service.ShareInput(o.client_id, o.share) for o in body.owners],
        replace_later=replace_later,
    )
    return api_get_ownership(
        request, horse_id, body.effective_from, principal, db_session
    )


@router.get("/api/v1/horses/{horse_id}/visits", tags=["visits"])
def api_list_visits(
    horse_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[VisitOut]:
    horse = service.get_horse(db_session, horse_id)
    return [
        VisitOut.model_validate(v) for v in service.visits_for_horse(db_session, horse)
    ]


@router.post("/api/v1/horses/{horse_id}/visits", status_code=201, tags=["visits"])
def api_create_visit(
    request: Request,
    horse_id: int,
    body: VisitCreate,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> VisitOut:
    """Start a visit; times without an offset are in the practice time zone."""
    horse = service.get_horse(db_session, horse_id)
    visit = create_visit_from(
        db_session, principal, horse, body, practice_zone(request)
    )
    return VisitOut.model_validate(visit)


@router.get("/api/v1/visits/{visit_id}", tags=["visits"])
def api_get_visit(
    visit_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> VisitOut:
    return VisitOut.model_validate(service.get_visit(db_session, visit_id))


@router.post("/api/v1/visits/{visit_id}/discharge", tags=["visits"])
def api_discharge(
    request: Request,
    visit_id: int,
    body: DischargeIn,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> VisitOut:
    visit = service.get_visit(db_session, visit_id)
    at = read_in_zone(body.discharged_at, practice_zone(request))
    assert at is not None
    service.discharge(db_session, principal.actor, visit, at)
    return VisitOut.model_validate(visit)


@router.get("/api/v1/visits/{visit_id}/notes", tags=["notes"])
def api_list_notes(
    visit_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[NoteOut]:
    visit = service.get_visit(db_session, visit_id)
    return [NoteOut.model_validate(n) for n in visit.notes]


@router.post("/api/v1/visits/{visit_id}/notes", status_code=201, tags=["notes"])
def api_create_note(
    visit_id: int,
    body: NoteCreate,
    principal: Principal = Depends(can_write_notes),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> NoteOut:
    """Write a draft SOAP note; ``sign: true`` signs it at once."""
    visit = service.get_visit(db_session, visit_id)
    note = service.create_note(
        db_session,
        principal.actor,
        visit,
        author_id=principal.user.id,
        **body.model_dump(exclude={"sign"}, exclude_none=True),
    )
    if body.sign:
        service.sign_note(
            db_session, principal.actor, note, signer_id=principal.user.id
        )
    return NoteOut.model_validate(note)


@router.get("/api/v1/notes/{note_id}", tags=["notes"])
def api_get_note(
    note_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> NoteOut:
    return NoteOut.model_validate(service.get_note(db_session, note_id))


@router.patch("/api/v1/notes/{note_id}", tags=["notes"])
def api_update_note(
    note_id: int,
    body: NoteContent,
    principal: Principal = Depends(can_write_notes),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> NoteOut:
    """Change a draft. A signed note gets 409, so add an addendum instead."""
    note = service.get_note(db_session, note_id)
    if note.status != NoteStatus.SIGNED:
        check_author(principal, note)
    service.update_note(db_session, principal.actor, note, **body.model_dump())
    return NoteOut.model_validate(note)


@router.post("/api/v1/notes/{note_id}/sign", tags=["notes"])
def api_sign_note(
    note_id: int,
    principal: Principal = Depends(can_write_notes),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> NoteOut:
    note = service.get_note(db_session, note_id)
    if note.status != NoteStatus.SIGNED:
        check_author(principal, note)
    service.sign_note(db_session, principal.actor, note, signer_id=principal.user.id)
    return NoteOut.model_validate(note)


@router.post("/api/v1/notes/{note_id}/addenda", status_code=201, tags=["notes"])
def api_create_addendum(
    note_id: int,
    body: NoteCreate,
    principal: Principal = Depends(can_write_notes),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> NoteOut:
    """Correct a signed note with an addendum (a new note on the same visit)."""
    original = service.get_note(db_session, note_id)
    note = service.create_note(
        db_session,
        principal.actor,
        original.visit,
        author_id=principal.user.id,
        addendum_to=original,
        **body.model_dump(exclude={"sign"}, exclude_none=True),
    )
    if body.sign:
        service.sign_note(
            db_session, principal.actor, note, signer_id=principal.user.id
        )
    return NoteOut.model_validate(note)
