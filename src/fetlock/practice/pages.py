"""Practice pages: client and horse lists, forms and the horse chart.

Forms are validated with the API's schemas. An invalid form is rendered again
with status 422, the message, the field at fault and the values entered, and
its transaction is rolled back so nothing is half-saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from starlette.datastructures import FormData

from fetlock.audit import service as audit
from fetlock.auth.deps import Principal
from fetlock.auth.models import Role, User
from fetlock.db.base import utcnow
from fetlock.practice import service
from fetlock.practice.deps import (
    FRONT_DESK,
    can_read,
    can_register,
    can_write_notes,
    check_author,
    create_visit_from,
    practice_today,
    practice_zone,
    set_initial_owners,
)
from fetlock.practice.models import (
    FULL_SHARE,
    Client,
    ClientKind,
    Horse,
    NoteStatus,
    Sex,
    SoapNote,
    Species,
    Visit,
    VisitKind,
)
from fetlock.practice.schemas import (
    ClientCreate,
    HorseCreate,
    NoteContent,
    OwnershipChange,
    ShareIn,
    VisitCreate,
    format_percent,
    parse_percent,
)
from fetlock.web.deps import get_db_session
from fetlock.web.errors import DomainError
from fetlock.web.templating import render

router = APIRouter()


# Owner rows offered on the change-of-ownership form.
OWNER_FORM_ROWS = 6


async def form_data(request: Request) -> FormData:
    """Read the request's form fields (Starlette caches them for the CSRF check)."""
    return await request.form()


def _model_fields(form: FormData, model: type[BaseModel]) -> dict[str, str]:
    return {
        name: value
        for name, value in form.items()
        if name in model.model_fields and isinstance(value, str)
    }


def _describe(exc: ValidationError | DomainError | ValueError) -> tuple[str, dict]:
    """Return one message for the page and a field -> message map."""
    if isinstance(exc, DomainError):
        return exc.message, ({exc.field: exc.message} if exc.field else {})
    if isinstance(exc, ValidationError):
        messages: list[str] = []
        fields: dict[str, str] = {}
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "form"
            text = error["msg"].removeprefix("Value error, ")
            value = error.get("input")
            if not isinstance(value, dict | list) and value is not None:
                if repr(value) not in text:
                    text += f" (got {value!r})"
            messages.append(f"{field}: {text}")
            fields.setdefault(field, text)
        return "; ".join(messages), fields
    return str(exc), {}


def _form_values(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _veterinarians(db_session: Session) -> list[User]:
    return list(
        db_session.execute(
            select(User)
            .where(User.role == Role.VETERINARIAN.value, User.active.is_(True))
            .order_by(User.full_name)
        ).scalars()
    )


def _all_clients(db_session: Session) -> list[Client]:
    # NOTE: a plain list suits a practice of a few thousand owners; a larger
    # one needs a search-as-you-type picker here.
    return list(
        db_session.execute(select(Client).order_by(Client.search_key)).scalars()
    )


def _client_form_context(
    principal: Principal,
    *,
    client: Client | None,
    values: Mapping[str, Any],
    error: str | None = None,
    field_errors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "principal": principal,
        "client": client,
        "values": values,
        "error": error,
        "field_errors": field_errors or {},
        "kinds": list(ClientKind),
    }


@router.get("/clients", include_in_schema=False)
def clients_page(
    request: Request,
    q: str = "",
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    clients = service.search_clients(db_session, q, limit=200)
    return render(
        request,
        "practice/clients.html",
        {"principal": principal, "clients": clients, "q": q},
    )


@router.get("/clients/new", include_in_schema=False)
def client_new_page(
    request: Request, principal: Principal = Depends(can_register)
) -> Response:
    return render(
        request,
        "practice/client_form.html",
        _client_form_context(principal, client=None, values={"kind": "person"}),
    )


@router.post("/clients", include_in_schema=False)
def client_create_form(
    request: Request,
    principal: Principal = Depends(can_register),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    try:
        body = ClientCreate.model_validate(_model_fields(form, ClientCreate))
        client = service.create_client(db_session, principal.actor, **body.model_dump())
    except (ValidationError, DomainError) as exc:
        db_session.rollback()
        message, fields = _describe(exc)
        return render(
            request,
            "practice/client_form.html",
            _client_form_context(
                principal,
                client=None,
                values=_form_values(form),
                error=message,
                field_errors=fields,
            ),
            status_code=422,
        )
    return RedirectResponse(f"/clients/{client.id}", status_code=303)


@router.get("/clients/{client_id}", include_in_schema=False)
def client_page(
    request: Request,
    client_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    client = service.get_client(db_session, client_id)
    horses = service.horses_of_client(db_session, client, practice_today(request))
    return render(
        request,
        "practice/client.html",
        {"principal": principal, "client": client, "horses": horses},
    )


@router.get("/clients/{client_id}/edit", include_in_schema=False)
def client_edit_page(
    request: Request,
    client_id: int,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    client = service.get_client(db_session, client_id)
    values = {
        name: getattr(client, name) or ""
        for name in ClientCreate.model_fields
        if hasattr(client, name)
    }
    return render(
        request,
        "practice/client_form.html",
        _client_form_context(principal, client=client, values=values),
    )


@router.post("/clients/{client_id}", include_in_schema=False)
def client_update_form(
    request: Request,
    client_id: int,
    principal: Principal = Depends(can_register),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    client = service.get_client(db_session, client_id)
    try:
        # A form sends every field: an empty one clears the value.
        body = ClientCreate.model_validate(_model_fields(form, ClientCreate))
        service.update_client(db_session, principal.actor, client, **body.model_dump())
    except (ValidationError, DomainError) as exc:
        db_session.rollback()
        message, fields = _describe(exc)
        return render(
            request,
            "practice/client_form.html",
            _client_form_context(
                principal,
                client=client,
                values=_form_values(form),
                error=message,
                field_errors=fields,
            ),
            status_code=422,
        )
    return RedirectResponse(f"/clients/{client.id}", status_code=303)


def _horse_form_context(
    db_session: Session,
    principal: Principal,
    *,
    horse: Horse | None,
    values: Mapping[str, Any],
    error: str | None = None,
    field_errors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "principal": principal,
        "horse": horse,
        "values": values,
        "error": error,
        "field_errors": field_errors or {},
        "species": list(Species),
        "sexes": list(Sex),
        "clients": _all_clients(db_session) if horse is None else [],
    }


@router.get("/horses", include_in_schema=False)
def horses_page(
    request: Request,
    q: str = "",
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    day = practice_today(request)
    horses = service.search_horses(db_session, q, limit=200)
    rows = [(h, service.owners_on(db_session, h, day)) for h in horses]
    return render(
        request,
        "practice/horses.html",
        {"principal": principal, "rows": rows, "q": q},
    )


@router.get("/horses/new", include_in_schema=False)
def horse_new_page(
    request: Request,
    client_id: int | None = None,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    values: dict[str, Any] = {"species": "horse", "owner_percent": "100"}
    if client_id is not None:
        values["owner_id"] = str(client_id)
    return render(
        request,
        "practice/horse_form.html",
        _horse_form_context(db_session, principal, horse=None, values=values),
    )


@router.post("/horses", include_in_schema=False)
def horse_create_form(
    request: Request,
    principal: Principal = Depends(can_register),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    try:
        body = HorseCreate.model_validate(_model_fields(form, HorseCreate))
        owners = _owner_rows_from_form(form, prefix="owner")
        if not owners:
            raise DomainError(
                "a horse needs an owner; pick the owner (create the client first "
                "if they are new)",
                field="owner_id",
                value="",
            )
        fields = body.model_dump(exclude={"owners", "owned_from"})
        horse = service.create_horse(db_session, principal.actor, **fields)
        day = body.owned_from or practice_today(request)
        set_initial_owners(db_session, principal, horse, owners, day)
    except (ValidationError, DomainError, ValueError) as exc:
        db_session.rollback()
        message, field_errors = _describe(exc)
        return render(
            request,
            "practice/horse_form.html",
            _horse_form_context(
                db_session,
                principal,
                horse=None,
                values=_form_values(form),
                error=message,
                field_errors=field_errors,
            ),
            status_code=422,
        )
    return RedirectResponse(f"/horses/{horse.id}", status_code=303)


def _owner_rows_from_form(form: FormData, *, prefix: str) -> list[ShareIn]:
    """Read ``<prefix>_id`` / ``<prefix>_percent`` pairs (repeated fields)."""
    ids = [v for v in form.getlist(f"{prefix}_id") if isinstance(v, str)]
    percents = [v for v in form.getlist(f"{prefix}_percent") if isinstance(v, str)]
    rows: list[ShareIn] = []
    for index, client_text in enumerate(ids):
        percent_text = percents[index] if index < len(percents) else ""
        if not client_text.strip() and not percent_text.strip():
            continue
        if not client_text.strip():
            raise DomainError(
                f"owner row {index + 1} has a share of {percent_text!r} but no "
                "owner; pick the owner or clear the share",
                field=f"{prefix}_id",
                value="",
            )
        try:
            client_id = int(client_text)
        except ValueError:
            raise DomainError(
                f"owner row {index + 1}: {client_text!r} is not a client id; pick "
                "the owner from the list",
                field=f"{prefix}_id",
                value=client_text,
            ) from None
        try:
            share = parse_percent(percent_text, field=f"owner row {index + 1}")
        except ValueError as exc:
            raise DomainError(
                str(exc), field=f"{prefix}_percent", value=percent_text
            ) from None
        if not 0 < share <= FULL_SHARE:
            raise DomainError(
                f"owner row {index + 1}: a share of {percent_text}% is out of "
                "range; enter a share above 0 and at most 100",
                field=f"{prefix}_percent",
                value=percent_text,
            )
        rows.append(ShareIn(client_id=client_id, share=share))
    return rows


def _chart_context(
    request: Request, db_session: Session, principal: Principal, horse: Horse
) -> dict[str, Any]:
    day = practice_today(request)
    visits = list(
        db_session.execute(
            select(Visit)
            .where(Visit.horse_id == horse.id)
            .options(selectinload(Visit.notes))
            .order_by(Visit.started_at.desc(), Visit.id.desc())
        ).scalars()
    )
    user_ids = {v.attending_vet_id for v in visits if v.attending_vet_id} | {
        uid for v in visits for n in v.notes for uid in (n.author_id, n.signed_by_id)
    }
    user_ids.discard(None)
    users = {
        u.id: u
        for u in db_session.execute(select(User).where(User.id.in_(user_ids))).scalars()
    }
    at = utcnow()
    current = service.current_visit(db_session, horse, at, zone=practice_zone(request))
    history = (
        audit.events_for_horse(db_session, horse.id, limit=50)
        if principal.has_role()
        else []
    )
    return {
        "principal": principal,
        "horse": horse,
        "owners": service.owners_on(db_session, horse, day),
        "visits": visits,
        "current_visit": current,
        "users": users,
        "history": history,
        "can_register": principal.has_role(*FRONT_DESK),
        "can_write_notes": principal.user.role == Role.VETERINARIAN.value,
        "visit_kinds": list(VisitKind),
        "veterinarians": _veterinarians(db_session),
        "today": day,
        "now_local": at.astimezone(practice_zone(request)).strftime("%Y-%m-%dT%H:%M"),
        "visit_values": None,
        "field_errors": {},
    }


@router.get("/horses/{horse_id}", include_in_schema=False)
def chart_page(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    """Show the chart: identity, owners, visits and notes, imaging, billing."""
    horse = service.get_horse(db_session, horse_id)
    audit.record(
        db_session, principal.actor, "chart.view", "horse", horse.id, horse_id=horse.id
    )
    return render(
        request,
        "practice/chart.html",
        _chart_context(request, db_session, principal, horse),
    )


@router.get("/horses/{horse_id}/edit", include_in_schema=False)
def horse_edit_page(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    horse = service.get_horse(db_session, horse_id)
    values = {
        name: "" if getattr(horse, name) is None else str(getattr(horse, name))
        for name in HorseCreate.model_fields
        if hasattr(horse, name)
    }
    return render(
        request,
        "practice/horse_form.html",
        _horse_form_context(db_session, principal, horse=horse, values=values),
    )


@router.post("/horses/{horse_id}", include_in_schema=False)
def horse_update_form(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_register),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    horse = service.get_horse(db_session, horse_id)
    try:
        body = HorseCreate.model_validate(_model_fields(form, HorseCreate))
        fields = body.model_dump(exclude={"owners", "owned_from"})
        service.update_horse(db_session, principal.actor, horse, **fields)
    except (ValidationError, DomainError) as exc:
        db_session.rollback()
        message, field_errors = _describe(exc)
        return render(
            request,
            "practice/horse_form.html",
            _horse_form_context(
                db_session,
                principal,
                horse=horse,
                values=_form_values(form),
                error=message,
                field_errors=field_errors,
            ),
            status_code=422,
        )
    return RedirectResponse(f"/horses/{horse.id}", status_code=303)


def _ownership_form_context(
    request: Request,
    db_session: Session,
    principal: Principal,
    horse: Horse,
    *,
    values: Mapping[str, Any] | None = None,
    rows: Sequence[tuple[str, str]] | None = None,
    error: str | None = None,
    field_errors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    day = practice_today(request)
    owners = service.owners_on(db_session, horse, day)
    if rows is None:
        rows = [(str(c.id), format_percent(s)) for c, s in owners]
    padded = list(rows) + [("", "")] * max(0, OWNER_FORM_ROWS - len(rows))
    return {
        "principal": principal,
        "horse": horse,
        "owners": owners,
        "history": service.ownership_history(db_session, horse),
        "clients": _all_clients(db_session),
        "rows": padded,
        "values": values or {"effective_from": day.isoformat()},
        "error": error,
        "field_errors": field_errors or {},
    }


@router.get("/horses/{horse_id}/owners", include_in_schema=False)
def ownership_page(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    horse = service.get_horse(db_session, horse_id)
    return render(
        request,
        "practice/ownership_form.html",
        _ownership_form_context(request, db_session, principal, horse),
    )


@router.post("/horses/{horse_id}/owners", include_in_schema=False)
def ownership_form(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_register),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    horse = service.get_horse(db_session, horse_id)
    try:
        owners = _owner_rows_from_form(form, prefix="owner")
        change = OwnershipChange.model_validate(
            {
                "effective_from": form.get("effective_from", ""),
                "owners": [o.model_dump() for o in owners],
            }
        )
        service.set_owners_from(
            db_session,
            principal.actor,
            horse,
            change.effective_from,
            [service.ShareInput(o.client_id, o.share) for o in change.owners],
            replace_later=form.get("replace_later") == "on",
        )
    except (ValidationError, DomainError) as exc:
        db_session.rollback()
        message, field_errors = _describe(exc)
        ids = [v for v in form.getlist("owner_id") if isinstance(v, str)]
        percents = [v for v in form.getlist("owner_percent") if isinstance(v, str)]
        rows = list(
            zip(ids, percents + [""] * (len(ids) - len(percents)), strict=False)
        )
        return render(
            request,
            "practice/ownership_form.html",
            _ownership_form_context(
                request,
                db_session,
                principal,
                horse,
                values=_form_values(form),
                rows=rows,
                error=message,
                field_errors=field_errors,
            ),
            status_code=422,
        )
    return RedirectResponse(f"/horses/{horse.id}", status_code=303)


@router.post("/horses/{horse_id}/visits", include_in_schema=False)
def visit_create_form(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_register),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    horse = service.get_horse(db_session, horse_id)
    try:
        body = VisitCreate.model_validate(_model_fields(form, VisitCreate))
        visit = create_visit_from(
            db_session, principal, horse, body, practice_zone(request)
        )
    except (ValidationError, DomainError) as exc:
        db_session.rollback()
        message, field_errors = _describe(exc)
        context = _chart_context(request, db_session, principal, horse)
        context.update(
            error=message,
            field_errors=field_errors,
            visit_values=_form_values(form),
        )
        return render(request, "practice/chart.html", context, status_code=422)
    return RedirectResponse(f"/horses/{horse.id}#visit-{visit.id}", status_code=303)


@router.post("/visits/{visit_id}/discharge", include_in_schema=False)
def discharge_form(
    request: Request,
    visit_id: int,
    principal: Principal = Depends(can_register),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    visit = service.get_visit(db_session, visit_id)
    service.discharge(db_session, principal.actor, visit, utcnow())
    return RedirectResponse(f"/horses/{visit.horse_id}#visit-{visit.id}", 303)


def _note_form_context(
    principal: Principal,
    visit: Visit,
    *,
    note: SoapNote | None,
    addendum_to: SoapNote | None,
    values: Mapping[str, Any],
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "principal": principal,
        "visit": visit,
        "horse": visit.horse,
        "note": note,
        "addendum_to": addendum_to,
        "values": values,
        "error": error,
        "field_errors": {},
    }


@router.get("/visits/{visit_id}/notes/new", include_in_schema=False)
def note_new_page(
    request: Request,
    visit_id: int,
    addendum_to: int | None = None,
    principal: Principal = Depends(can_write_notes),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    visit = service.get_visit(db_session, visit_id)
    original = service.get_note(db_session, addendum_to) if addendum_to else None
    return render(
        request,
        "practice/note_form.html",
        _note_form_context(
            principal, visit, note=None, addendum_to=original, values={}
        ),
    )


@router.post("/visits/{visit_id}/notes", include_in_schema=False)
def note_create_form(
    request: Request,
    visit_id: int,
    principal: Principal = Depends(can_write_notes),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    visit = service.get_visit(db_session, visit_id)
    original_text = form.get("addendum_to_id")
    original = (
        service.get_note(db_session, int(original_text))
        if isinstance(original_text, str) and original_text.isdigit()
        else None
    )
    content = _model_fields(form, NoteContent)
    try:
        note = service.create_note(
            db_session,
            principal.actor,
            visit,
            author_id=principal.user.id,
            addendum_to=original,
            **content,
        )
        if form.get("action") == "sign":
            service.sign_note(
                db_session, principal.actor, note, signer_id=principal.user.id
            )
    except DomainError as exc:
        db_session.rollback()
        return render(
            request,
            "practice/note_form.html",
            _note_form_context(
                principal,
                visit,
                note=None,
                addendum_to=original,
                values=_form_values(form),
                error=exc.message,
            ),
            status_code=exc.status_code,
        )
    return RedirectResponse(f"/horses/{visit.horse_id}#note-{note.id}", status_code=303)


@router.get("/notes/{note_id}/edit", include_in_schema=False)
def note_edit_page(
    request: Request,
    note_id: int,
    principal: Principal = Depends(can_write_notes),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    note = service.get_note(db_session, note_id)
    if note.status == NoteStatus.SIGNED:
        return RedirectResponse(f"/horses/{note.visit.horse_id}#note-{note.id}", 303)
    check_author(principal, note)
    values = {name: getattr(note, name) for name in service.SOAP_FIELDS}
    return render(
        request,
        "practice/note_form.html",
        _note_form_context(
            principal, note.visit, note=note, addendum_to=None, values=values
        ),
    )


@router.post("/notes/{note_id}", include_in_schema=False)
def note_update_form(
    request: Request,
    note_id: int,
    principal: Principal = Depends(can_write_notes),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    """Save a draft (``action=save``) or save and sign it (``action=sign``)."""
    note = service.get_note(db_session, note_id)
    try:
        if note.status != NoteStatus.SIGNED:
            check_author(principal, note)
        service.update_note(
            db_session, principal.actor, note, **_model_fields(form, NoteContent)
        )
        if form.get("action") == "sign":
            service.sign_note(
                db_session, principal.actor, note, signer_id=principal.user.id
            )
    except DomainError as exc:
        db_session.rollback()
        return render(
            request,
            "practice/note_form.html",
            _note_form_context(
                principal,
                note.visit,
                note=note,
                addendum_to=None,
                values=_form_values(form),
                error=exc.message,
            ),
            status_code=exc.status_code,
        )
    return RedirectResponse(
        f"/horses/{note.visit.horse_id}#note-{note.id}", status_code=303
    )


@router.post("/notes/{note_id}/sign", include_in_schema=False)
def note_sign_form(
    request: Request,
    note_id: int,
    principal: Principal = Depends(can_write_notes),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    note = service.get_note(db_session, note_id)
    if note.status != NoteStatus.SIGNED:
        check_author(principal, note)
    service.sign_note(db_session, principal.actor, note, signer_id=principal.user.id)
    return RedirectResponse(
        f"/horses/{note.visit.horse_id}#note-{note.id}", status_code=303
    )
