"""The reconciliation queue pages and JSON API.

Technicians, veterinarians and radiologists attach queued studies (and may
move a study that was linked to the wrong horse); every staff role may look.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from fetlock.auth.deps import ALL_STAFF, Principal, require_roles
from fetlock.auth.models import Role
from fetlock.imaging import reconcile, study_service
from fetlock.imaging.study_schemas import StudyLinkIn, StudyOut
from fetlock.practice import service as practice_service
from fetlock.web.deps import get_db_session
from fetlock.web.errors import DomainError
from fetlock.web.templating import render

router = APIRouter()

can_read = require_roles(*ALL_STAFF)
can_link = require_roles(Role.TECHNICIAN, Role.VETERINARIAN, Role.RADIOLOGIST)


@router.get("/imaging/reconcile", include_in_schema=False)
def queue_page(
    request: Request,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    """Studies waiting for a horse and order, oldest first."""
    studies = study_service.reconciliation_queue(db_session)
    return render(
        request,
        "imaging/reconcile.html",
        {
            "principal": principal,
            "summaries": study_service.summarise(db_session, studies),
        },
    )


def _study_page(
    request: Request,
    principal: Principal,
    db_session: Session,
    study_id: int,
    *,
    q: str = "",
    horse_id: int | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    study = reconcile.get_study(db_session, study_id)
    summary = study_service.summarise(db_session, [study])[0]
    chosen = practice_service.get_horse(db_session, horse_id) if horse_id else None
    return render(
        request,
        "imaging/reconcile_study.html",
        {
            "principal": principal,
            "s": summary,
            "study": study,
            "suggestions": reconcile.suggestions(db_session, study),
            "q": q,
            "results": practice_service.search_horses(db_session, q, limit=20)
            if q.strip()
            else [],
            "chosen": chosen,
            "orders": reconcile.open_orders(db_session, chosen.id) if chosen else [],
            "can_link": principal.has_role(
                Role.TECHNICIAN, Role.VETERINARIAN, Role.RADIOLOGIST
            ),
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/imaging/reconcile/{study_id}", include_in_schema=False)
def study_page(
    request: Request,
    study_id: int,
    q: str = "",
    horse_id: int | None = None,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    """Show one queued study, the horses it may belong to and a horse search."""
    return _study_page(request, principal, db_session, study_id, q=q, horse_id=horse_id)


@router.post("/imaging/reconcile/{study_id}", include_in_schema=False)
def attach_form(
    request: Request,
    study_id: int,
    horse_id: int = Form(...),
    order_id: str = Form(""),
    principal: Principal = Depends(can_link),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    study = reconcile.get_study(db_session, study_id)
    chosen_order: int | None = None
    try:
        if order_id.strip():
            if not order_id.strip().isdigit():
                raise DomainError(
                    f"order {order_id!r} is not an order number; pick an order from "
                    "the list or 'no order'",
                    field="order_id",
                    value=order_id,
                )
            chosen_order = int(order_id)
        reconcile.attach(
            db_session,
            study,
            horse_id=horse_id,
            order_id=chosen_order,
            actor=principal.actor,
        )
    except DomainError as exc:
        db_session.rollback()
        return _study_page(
            request,
            principal,
            db_session,
            study_id,
            horse_id=horse_id,
            error=exc.message,
            status_code=exc.status_code,
        )
    return RedirectResponse(f"/horses/{horse_id}", status_code=303)


@router.get("/api/v1/imaging/reconciliation", tags=["studies"])
def list_queue(
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[StudyOut]:
    """Studies waiting in the reconciliation queue, oldest first."""
    studies = study_service.reconciliation_queue(db_session)
    return [StudyOut.of(s) for s in study_service.summarise(db_session, studies)]


@router.post("/api/v1/imaging/studies/{study_id}/link", tags=["studies"])
def link_study(
    study_id: int,
    body: StudyLinkIn,
    principal: Principal = Depends(can_link),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> StudyOut:
    """Attach a study to a horse and optionally an order (audited)."""
    study = reconcile.get_study(db_session, study_id)
    reconcile.attach(
        db_session,
        study,
        horse_id=body.horse_id,
        order_id=body.order_id,
        actor=principal.actor,
    )
    return StudyOut.of(study_service.summarise(db_session, [study])[0])
