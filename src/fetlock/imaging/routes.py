"""Imaging pages and JSON API: orders, the procedure catalog, modalities, MPPS.

The horse chart embeds ``GET /horses/{id}/orders-section`` and polls it every
two seconds, so a status change sent by a modality (MPPS) shows without a
reload.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from fetlock.auth.deps import Principal, require_roles
from fetlock.auth.models import Role, User
from fetlock.config import Settings
from fetlock.db.base import utcnow
from fetlock.imaging import service
from fetlock.imaging.models import (
    ImagingOrder,
    Limb,
    OrderStatus,
    Procedure,
    RemoteAE,
    RequestedProcedurePriority,
    SpecificCharacterSet,
)
from fetlock.imaging.schemas import (
    MODALITY_CODES,
    MppsOut,
    OrderCancel,
    OrderCreate,
    OrderEdit,
    OrderOut,
    OrderViewOut,
    ProcedureIn,
    ProcedureOut,
    ProcedureViewIn,
    ScheduledStepOut,
    StationIn,
    StationOut,
)
from fetlock.practice import service as practice
from fetlock.web.deps import get_db_session, get_settings
from fetlock.web.errors import DomainError
from fetlock.web.templating import render

router = APIRouter()

# Roles admitted to each kind of act; administrators pass every check.
READERS = (Role.VETERINARIAN, Role.RADIOLOGIST, Role.TECHNICIAN, Role.RECEPTION)
ORDERERS = (Role.VETERINARIAN, Role.TECHNICIAN, Role.RECEPTION)

can_read = require_roles(*READERS)
can_order = require_roles(*ORDERERS)
admin_only = require_roles()


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def order_out(order: ImagingOrder) -> OrderOut:
    return OrderOut(
        id=order.id,
        horse_id=order.horse_id,
        visit_id=order.visit_id,
        procedure_code=order.procedure.code,
        procedure_name=order.procedure.name,
        modality=order.modality,
        status=order.status,
        accession_number=order.accession_number,
        requested_procedure_id=order.requested_procedure_id,
        study_instance_uid=order.study_instance_uid,
        limb=order.limb,
        requesting_clinician_id=order.requesting_clinician_id,
        station_ae_title=order.station.ae_title if order.station else None,
        scheduled_start=order.scheduled_start,
        priority=order.priority,
        clinical_history=order.clinical_history,
        created_at=order.created_at,
        updated_at=order.updated_at,
        started_at=order.started_at,
        ended_at=order.ended_at,
        cancelled_at=order.cancelled_at,
        cancel_reason=order.cancel_reason,
        views=[OrderViewOut.model_validate(v) for v in order.views],
        scheduled_procedure_steps=[
            ScheduledStepOut.model_validate(s) for s in order.steps
        ],
    )


def procedure_out(procedure: Procedure) -> ProcedureOut:
    return ProcedureOut.model_validate(procedure)


def _default_clinician(principal: Principal) -> int | None:
    if principal.user.role_enum in (Role.VETERINARIAN, Role.RADIOLOGIST):
        return principal.user.id
    return None


def _clinicians(db_session: Session) -> list[User]:
    return list(
        db_session.execute(
            select(User)
            .where(
                User.active.is_(True),
                User.role.in_([Role.VETERINARIAN.value, Role.RADIOLOGIST.value]),
            )
            .order_by(User.full_name)
        ).scalars()
    )


def _describe(exc: ValidationError | DomainError) -> tuple[str, dict[str, str]]:
    """Return one message for the page and a field -> message map."""
    if isinstance(exc, DomainError):
        return exc.message, ({exc.field: exc.message} if exc.field else {})
    messages: list[str] = []
    fields: dict[str, str] = {}
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"]) or "form"
        text = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        if value is not None and not isinstance(value, dict | list):
            if repr(value) not in text:
                text += f" (got {value!r})"
        messages.append(f"{name}: {text}")
        fields.setdefault(name, text)
    return "; ".join(messages), fields


def _local_input(value: dt.datetime | None, settings: Settings) -> str:
    if value is None:
        return ""
    return value.astimezone(settings.zone).strftime("%Y-%m-%dT%H:%M")


# --------------------------------------------------------------------------
# Chart fragment and order pages
# --------------------------------------------------------------------------


@router.get("/horses/{horse_id}/orders-section", response_class=HTMLResponse)
def orders_section(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    """Render the chart's imaging section: orders with status, accession, views."""
    horse = practice.get_horse(db_session, horse_id)
    orders = service.orders_for_horse(db_session, horse.id)
    return render(
        request,
        "imaging/orders_section.html",
        {
            "principal": principal,
            "horse": horse,
            "orders": orders,
            "can_order": principal.has_role(*ORDERERS),
        },
    )


def _form_context(
    db_session: Session,
    settings: Settings,
    procedure: Procedure,
    values: dict[str, Any],
) -> dict[str, Any]:
    limb = values.get("limb") or (procedure.limbs[0] if procedure.limbs else None)
    chosen = values.get("views")
    standard = {v.code for v in service.standard_views(procedure, limb)}
    rows = []
    for view in procedure.views:
        code = service.view_code(view.limb, view.projection)
        full_code = service.view_code(view.limb or limb, view.projection)
        checked = full_code in chosen if chosen is not None else full_code in standard
        rows.append(
            {"value": code, "label": full_code, "view": view, "checked": checked}
        )
    return {
        "procedures": service.list_procedures(db_session),
        "procedure": procedure,
        "limb": limb,
        "view_rows": rows,
        "stations": service.list_stations(db_session, include_inactive=False),
        "clinicians": _clinicians(db_session),
        "priorities": [p.value for p in RequestedProcedurePriority],
        "modalities": sorted(MODALITY_CODES),
        "values": values,
    }


@router.get("/horses/{horse_id}/orders/new", response_class=HTMLResponse)
def order_form(
    request: Request,
    horse_id: int,
    procedure: str | None = None,
    limb: str | None = None,
    principal: Principal = Depends(can_order),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Render the "Order study" form with the chosen procedure's views ticked."""
    horse = practice.get_horse(db_session, horse_id)
    procedures = service.list_procedures(db_session)
    chosen = (
        service.get_procedure_by_code(db_session, procedure, field_name="procedure")
        if procedure
        else procedures[0]
    )
    station = next(
        (
            s
            for s in service.list_stations(db_session, include_inactive=False)
            if s.modality == chosen.modality
        ),
        None,
    )
    values: dict[str, Any] = {
        "procedure_code": chosen.code,
        "limb": limb if limb in chosen.limbs else None,
        "modality": chosen.modality,
        "requesting_clinician_id": _default_clinician(principal),
        "station_ae_title": station.ae_title if station else "",
        "scheduled_start": _local_input(utcnow(), settings),
        "priority": RequestedProcedurePriority.ROUTINE.value,
    }
    context = _form_context(db_session, settings, chosen, values)
    context.update({"principal": principal, "horse": horse, "order": None})
    return render(request, "imaging/order_form.html", context)


def _views_from_form(
    form: FormData, procedure: Procedure, limb: str | None
) -> list[str]:
    """Read ticked views and typed extras; limb-less codes get the order's limb."""
    codes = [str(v) for v in form.getlist("views") if str(v).strip()]
    extra = str(form.get("extra_views") or "")
    codes += [part for part in extra.replace(",", " ").split() if part]
    limbs = set(Limb.__members__)
    resolved = []
    for code in codes:
        head = code.split("-", 1)[0].upper()
        if procedure.limbs and limb and head not in limbs:
            code = f"{limb}-{code}"
        resolved.append(code)
    return resolved


def _order_fields(form: FormData) -> dict[str, Any]:
    names = (
        "procedure_code",
        "limb",
        "modality",
        "requesting_clinician_id",
        "station_ae_title",
        "scheduled_start",
        "priority",
        "clinical_history",
    )
    values: dict[str, Any] = {n: form.get(n) for n in names if form.get(n) is not None}
    if values.get("requesting_clinician_id") == "":
        values["requesting_clinician_id"] = None
    return values


@router.post("/horses/{horse_id}/orders", response_class=HTMLResponse)
async def order_submit(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_order),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Save the order form; on an error, show the form again with the message."""
    form = await request.form()
    horse = practice.get_horse(db_session, horse_id)
    values = _order_fields(form)
    procedure = None
    try:
        procedure = service.get_procedure_by_code(
            db_session, str(values.get("procedure_code") or "")
        )
        values["views"] = _views_from_form(form, procedure, values.get("limb") or None)
        data = OrderCreate.model_validate(values)
        with db_session.begin_nested():
            order = service.create_order(
                db_session,
                principal.actor,
                settings,
                horse.id,
                data,
                default_clinician_id=_default_clinician(principal),
            )
    except (ValidationError, DomainError) as exc:
        message, field_errors = _describe(exc)
        chosen = procedure or service.list_procedures(db_session)[0]
        context = _form_context(db_session, settings, chosen, values)
        context.update(
            {
                "principal": principal,
                "horse": horse,
                "order": None,
                "error": message,
                "field_errors": field_errors,
            }
        )
        return render(request, "imaging/order_form.html", context, status_code=422)
    return RedirectResponse(
        f"/horses/{horse.id}?ordered={order.accession_number}#orders-heading",
        status_code=303,
    )


@router.get("/orders/{order_id}", response_class=HTMLResponse)
def order_page(
    request: Request,
    order_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Render one order (identifiers, views, step, MPPS) with edit and cancel."""
    order = service.get_order(db_session, order_id)
    service.record_view(db_session, principal.actor, order)
    context = _order_context(db_session, settings, principal, order)
    return render(request, "imaging/order.html", context)


def _order_context(
    db_session: Session, settings: Settings, principal: Principal, order: Any
) -> dict[str, Any]:
    from fetlock.billing.service import order_has_images

    horse = practice.get_horse(db_session, order.horse_id)
    values: dict[str, Any] = {
        "procedure_code": order.procedure.code,
        "limb": order.limb,
        "modality": order.modality,
        "requesting_clinician_id": order.requesting_clinician_id,
        "station_ae_title": order.station.ae_title if order.station else "",
        "scheduled_start": _local_input(order.scheduled_start, settings),
        "priority": order.priority,
        "clinical_history": order.clinical_history or "",
        "views": [v.code for v in order.views],
    }
    context = _form_context(db_session, settings, order.procedure, values)
    context.update(
        {
            "principal": principal,
            "horse": horse,
            "order": order,
            "can_order": principal.has_role(*ORDERERS),
            "mpps": service.mpps_for_order(db_session, order.id),
            "has_images": order_has_images(db_session, order.id),
        }
    )
    return context


@router.post("/orders/{order_id}/edit", response_class=HTMLResponse)
async def order_edit_submit(
    request: Request,
    order_id: int,
    principal: Principal = Depends(can_order),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    form = await request.form()
    order = service.get_order(db_session, order_id)
    values = _order_fields(form)
    try:
        procedure = service.get_procedure_by_code(
            db_session, str(values.get("procedure_code") or order.procedure.code)
        )
        values["views"] = _views_from_form(form, procedure, values.get("limb") or None)
        data = OrderEdit.model_validate(values)
        with db_session.begin_nested():
            service.edit_order(db_session, principal.actor, settings, order, data)
    except (ValidationError, DomainError) as exc:
        message, field_errors = _describe(exc)
        db_session.refresh(order)
        context = _form_context(db_session, settings, order.procedure, values)
        context.update(
            {
                "principal": principal,
                "horse": practice.get_horse(db_session, order.horse_id),
                "order": order,
                "can_order": True,
                "mpps": service.mpps_for_order(db_session, order.id),
                "error": message,
                "field_errors": field_errors,
            }
        )
        return render(request, "imaging/order.html", context, status_code=422)
    return RedirectResponse(f"/orders/{order.id}?saved=1", status_code=303)


@router.post("/orders/{order_id}/cancel", response_class=HTMLResponse)
async def order_cancel_submit(
    request: Request,
    order_id: int,
    principal: Principal = Depends(can_order),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    form = await request.form()
    order = service.get_order(db_session, order_id)
    reason = str(form.get("reason") or "")
    try:
        with db_session.begin_nested():
            service.cancel_order(db_session, principal.actor, order, reason or None)
    except DomainError as exc:
        db_session.refresh(order)
        context = _order_context(db_session, settings, principal, order)
        context["error"] = exc.message
        context["cancel_reason"] = reason
        return render(
            request, "imaging/order.html", context, status_code=exc.status_code
        )
    return RedirectResponse(f"/horses/{order.horse_id}#orders-heading", status_code=303)


# --------------------------------------------------------------------------
# JSON API: orders
# --------------------------------------------------------------------------


@router.post("/api/v1/horses/{horse_id}/orders", status_code=201, tags=["imaging"])
def api_create_order(
    horse_id: int,
    data: OrderCreate,
    principal: Principal = Depends(can_order),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> OrderOut:
    """Order a study; the response carries the allocated identifiers."""
    order = service.create_order(
        db_session,
        principal.actor,
        settings,
        horse_id,
        data,
        default_clinician_id=_default_clinician(principal),
    )
    return order_out(order)


@router.get("/api/v1/orders", tags=["imaging"])
def api_find_orders(
    accession: str | None = Query(default=None, max_length=16),
    horse_id: int | None = None,
    status: OrderStatus | None = None,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[OrderOut]:
    orders = service.find_orders(
        db_session,
        accession_number=accession,
        horse_id=horse_id,
        status=status.value if status else None,
    )
    return [order_out(o) for o in orders]


@router.get("/api/v1/orders/{order_id}", tags=["imaging"])
def api_get_order(
    order_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> OrderOut:
    order = service.get_order(db_session, order_id)
    service.record_view(db_session, principal.actor, order)
    return order_out(order)


@router.patch("/api/v1/orders/{order_id}", tags=["imaging"])
def api_edit_order(
    order_id: int,
    data: OrderEdit,
    principal: Principal = Depends(can_order),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> OrderOut:
    """Change a scheduled order; identifiers never change."""
    order = service.get_order(db_session, order_id)
    return order_out(
        service.edit_order(db_session, principal.actor, settings, order, data)
    )


@router.post("/api/v1/orders/{order_id}/cancel", tags=["imaging"])
def api_cancel_order(
    order_id: int,
    data: OrderCancel | None = None,
    principal: Principal = Depends(can_order),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> OrderOut:
    order = service.get_order(db_session, order_id)
    reason = data.reason if data else None
    return order_out(service.cancel_order(db_session, principal.actor, order, reason))


@router.get("/api/v1/mpps", tags=["imaging"])
def api_list_mpps(
    unmatched: bool = True,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[MppsOut]:
    """MPPS instances that name no known order, for reconciliation."""
    return [MppsOut.model_validate(row) for row in service.unmatched_mpps(db_session)]


# --------------------------------------------------------------------------
# Procedure catalog
# --------------------------------------------------------------------------


@router.get("/api/v1/procedures", tags=["imaging"])
def api_list_procedures(
    include_inactive: bool = False,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[ProcedureOut]:
    procedures = service.list_procedures(db_session, include_inactive=include_inactive)
    return [procedure_out(p) for p in procedures]


@router.get("/api/v1/fee-codes", tags=["imaging"])
def api_fee_codes(principal: Principal = Depends(can_read)) -> dict[str, str]:
    """Fee codes the seed catalog uses, for building the fee schedule."""
    return service.fee_codes()


@router.post("/api/v1/procedures", status_code=201, tags=["imaging"])
def api_create_procedure(
    data: ProcedureIn,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ProcedureOut:
    return procedure_out(service.save_procedure(db_session, principal.actor, data))


@router.put("/api/v1/procedures/{procedure_id}", tags=["imaging"])
def api_replace_procedure(
    procedure_id: int,
    data: ProcedureIn,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ProcedureOut:
    procedure = service.get_procedure(db_session, procedure_id)
    saved = service.save_procedure(
        db_session, principal.actor, data, procedure=procedure
    )
    return procedure_out(saved)


def _procedure_form_values(procedure: Procedure | None) -> dict[str, Any]:
    if procedure is None:
        return {"views_text": "", "limb_choice": [], "active": True}
    lines = []
    for view in procedure.views:
        line = f"{service.view_code(view.limb, view.projection)} | {view.description}"
        lines.append(line if view.default_selected else line + " | optional")
    return {
        "code": procedure.code,
        "name": procedure.name,
        "modality": procedure.modality,
        "body_region": procedure.body_region,
        "body_part_examined": procedure.body_part_examined or "",
        "limb_choice": procedure.limbs,
        "fee_code": procedure.fee_code,
        "per_view_fee_code": procedure.per_view_fee_code or "",
        "description": procedure.description or "",
        "active": procedure.active,
        "views_text": "\n".join(lines),
    }


def parse_views_text(text: str) -> list[ProcedureViewIn]:
    """Parse one view per line: ``[LIMB-]PROJECTION | description [| optional]``."""
    views = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        parts = [p.strip() for p in raw.split("|")]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise DomainError(
                f"views line {number} {raw.strip()!r} is incomplete; write "
                "'PROJECTION | description' or 'LF-PROJECTION | description', "
                "adding '| optional' for a view not ticked by default",
                field="views",
                value=raw.strip(),
            )
        limb, projection = service.parse_view_code(parts[0])
        try:
            views.append(
                ProcedureViewIn(
                    projection=projection,
                    limb=limb,
                    description=parts[1],
                    default_selected=not (
                        len(parts) > 2 and parts[2].lower() == "optional"
                    ),
                )
            )
        except ValidationError as exc:
            raise DomainError(
                f"views line {number} {raw.strip()!r}: {_describe(exc)[0]}",
                field="views",
                value=raw.strip(),
            ) from None
    return views


@router.get("/procedures", response_class=HTMLResponse)
def procedures_page(
    request: Request,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    return render(
        request,
        "imaging/procedures.html",
        {
            "principal": principal,
            "procedures": service.list_procedures(db_session, include_inactive=True),
            "fee_codes": service.fee_codes(),
        },
    )


@router.get("/procedures/new", response_class=HTMLResponse)
@router.get("/procedures/{procedure_id}/edit", response_class=HTMLResponse)
def procedure_form(
    request: Request,
    procedure_id: int | None = None,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    procedure = (
        service.get_procedure(db_session, procedure_id) if procedure_id else None
    )
    return render(
        request,
        "imaging/procedure_form.html",
        {
            "principal": principal,
            "procedure": procedure,
            "values": _procedure_form_values(procedure),
            "modalities": sorted(MODALITY_CODES),
            "limbs": [limb.value for limb in Limb],
        },
    )


@router.post("/procedures", response_class=HTMLResponse)
@router.post("/procedures/{procedure_id}/edit", response_class=HTMLResponse)
async def procedure_submit(
    request: Request,
    procedure_id: int | None = None,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    form = await request.form()
    procedure = (
        service.get_procedure(db_session, procedure_id) if procedure_id else None
    )
    values: dict[str, Any] = {
        name: str(form.get(name) or "")
        for name in (
            "code",
            "name",
            "modality",
            "body_region",
            "body_part_examined",
            "fee_code",
            "per_view_fee_code",
            "description",
        )
    }
    values["limb_choice"] = [str(v) for v in form.getlist("limb_choice")]
    values["active"] = form.get("active") == "on"
    views_text = str(form.get("views_text") or "")
    try:
        data = ProcedureIn.model_validate(
            {**values, "views": parse_views_text(views_text)}
        )
        with db_session.begin_nested():
            saved = service.save_procedure(
                db_session, principal.actor, data, procedure=procedure
            )
    except (ValidationError, DomainError) as exc:
        message, field_errors = _describe(exc)
        return render(
            request,
            "imaging/procedure_form.html",
            {
                "principal": principal,
                "procedure": procedure,
                "values": {**values, "views_text": views_text},
                "modalities": sorted(MODALITY_CODES),
                "limbs": [limb.value for limb in Limb],
                "error": message,
                "field_errors": field_errors,
            },
            status_code=422,
        )
    return RedirectResponse(f"/procedures?saved={saved.code}", status_code=303)


# --------------------------------------------------------------------------
# Remote modalities
# --------------------------------------------------------------------------


@router.get("/api/v1/modalities", tags=["dicom"])
def api_list_modalities(
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[StationOut]:
    return [StationOut.model_validate(s) for s in service.list_stations(db_session)]


@router.post("/api/v1/modalities", status_code=201, tags=["dicom"])
def api_create_modality(
    data: StationIn,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> StationOut:
    return StationOut.model_validate(
        service.save_station(db_session, principal.actor, data)
    )


@router.put("/api/v1/modalities/{station_id}", tags=["dicom"])
def api_replace_modality(
    station_id: int,
    data: StationIn,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> StationOut:
    station = service.get_station(db_session, station_id)
    saved = service.save_station(db_session, principal.actor, data, station=station)
    return StationOut.model_validate(saved)


def _station_values(station: RemoteAE | None) -> dict[str, Any]:
    if station is None:
        return {
            "port": "104",
            "character_set": SpecificCharacterSet.UTF8.value,
            "active": True,
        }
    return StationOut.model_validate(station).model_dump()


@router.get("/modalities", response_class=HTMLResponse)
def modalities_page(
    request: Request,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    return render(
        request,
        "imaging/modalities.html",
        {
            "principal": principal,
            "stations": service.list_stations(db_session),
            "settings": settings,
            "unmatched": service.unmatched_mpps(db_session),
        },
    )


@router.get("/modalities/new", response_class=HTMLResponse)
@router.get("/modalities/{station_id}/edit", response_class=HTMLResponse)
def modality_form(
    request: Request,
    station_id: int | None = None,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    station = service.get_station(db_session, station_id) if station_id else None
    return render(
        request,
        "imaging/modality_form.html",
        {
            "principal": principal,
            "station": station,
            "values": _station_values(station),
            "modalities": sorted(MODALITY_CODES),
            "character_sets": [c.value for c in SpecificCharacterSet],
        },
    )


@router.post("/modalities", response_class=HTMLResponse)
@router.post("/modalities/{station_id}/edit", response_class=HTMLResponse)
async def modality_submit(
    request: Request,
    station_id: int | None = None,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    form = await request.form()
    station = service.get_station(db_session, station_id) if station_id else None
    values: dict[str, Any] = {
        name: str(form.get(name) or "")
        for name in (
            "ae_title",
            "host",
            "port",
            "modality",
            "description",
            "station_name",
            "character_set",
        )
    }
    values["restrict_worklist_to_own_ae"] = (
        form.get("restrict_worklist_to_own_ae") == "on"
    )
    values["active"] = form.get("active") == "on"
    try:
        data = StationIn.model_validate(values)
        with db_session.begin_nested():
            service.save_station(db_session, principal.actor, data, station=station)
    except (ValidationError, DomainError) as exc:
        message, field_errors = _describe(exc)
        return render(
            request,
            "imaging/modality_form.html",
            {
                "principal": principal,
                "station": station,
                "values": values,
                "modalities": sorted(MODALITY_CODES),
                "character_sets": [c.value for c in SpecificCharacterSet],
                "error": message,
                "field_errors": field_errors,
            },
            status_code=422,
        )
    return RedirectResponse("/modalities", status_code=303)
