"""Billing pages and JSON API: fee schedule, charges, invoices, missed charges.

Who may do what (administrators pass every check):

- every staff role may load the chart's billing section, but only
  veterinarians and reception see its figures;
- veterinarians and reception read charges and invoices, post a charge by
  hand and issue a draft invoice (an ambulatory vet bills at the yard);
- reception alone takes payments, voids, raises credit notes, waives a
  charge, edits the fee schedule and billing settings, and works the
  missed-charge report.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from fetlock.audit import service as audit
from fetlock.auth.deps import ALL_STAFF, Principal, require_roles
from fetlock.auth.models import Role
from fetlock.billing import charges as charging
from fetlock.billing import fees, missed, service
from fetlock.billing import invoices as invoicing
from fetlock.billing.models import Charge, ChargeKind, Invoice, InvoiceStatus
from fetlock.billing.schemas import (
    BillingSettingsOut,
    BillingSettingsUpdate,
    ChargeOut,
    CreditNoteRequest,
    FeeItemCreate,
    FeeItemOut,
    FeeItemUpdate,
    InvoiceOut,
    InvoiceUpdate,
    ManualChargeCreate,
    MissedChargeOut,
    MissedChargeReportOut,
    PayRequest,
    StudyChargeRequest,
    VoidRequest,
    WaiveRequest,
)
from fetlock.config import Settings
from fetlock.db.base import utcnow
from fetlock.imaging.models import ImagingOrder
from fetlock.practice import service as practice
from fetlock.practice.models import Visit
from fetlock.web.deps import get_db_session, get_settings
from fetlock.web.errors import DomainError, NotFound
from fetlock.web.templating import render

router = APIRouter()

BILLING_READERS = (Role.VETERINARIAN, Role.RECEPTION)
ISSUERS = (Role.VETERINARIAN, Role.RECEPTION)
MANAGERS = (Role.RECEPTION,)

can_load_chart = require_roles(*ALL_STAFF)
can_read = require_roles(*BILLING_READERS)
can_issue = require_roles(*ISSUERS)
can_manage = require_roles(*MANAGERS)

# Days the missed-charge report covers when no range is given.
DEFAULT_REPORT_DAYS = 30


async def form_data(request: Request) -> FormData:
    return await request.form()


def _today(settings: Settings) -> dt.date:
    return utcnow().astimezone(settings.zone).date()


def _invoice_out(invoice: Invoice) -> InvoiceOut:
    return InvoiceOut.of(invoice)


# --------------------------------------------------------------------------
# JSON API: fee schedule and settings
# --------------------------------------------------------------------------


@router.get("/api/v1/fees", tags=["billing"])
def api_fees(
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[FeeItemOut]:
    return [FeeItemOut.model_validate(item) for item in fees.list_fees(db_session)]


@router.post("/api/v1/fees", status_code=201, tags=["billing"])
def api_fee_create(
    body: FeeItemCreate,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> FeeItemOut:
    item = fees.create_fee(db_session, principal.actor, **body.model_dump())
    return FeeItemOut.model_validate(item)


@router.get("/api/v1/fees/{code}", tags=["billing"])
def api_fee(
    code: str,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> FeeItemOut:
    return FeeItemOut.model_validate(fees.get_fee(db_session, code))


@router.patch("/api/v1/fees/{code}", tags=["billing"])
def api_fee_update(
    code: str,
    body: FeeItemUpdate,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> FeeItemOut:
    item = fees.update_fee(
        db_session, principal.actor, code, **body.model_dump(exclude_unset=True)
    )
    return FeeItemOut.model_validate(item)


@router.delete("/api/v1/fees/{code}", tags=["billing"])
def api_fee_deactivate(
    code: str,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> FeeItemOut:
    """Make a fee item inactive; posted charges keep naming it."""
    item = fees.update_fee(db_session, principal.actor, code, active=False)
    return FeeItemOut.model_validate(item)


@router.get("/api/v1/billing/settings", tags=["billing"])
def api_settings(
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> BillingSettingsOut:
    return BillingSettingsOut(
        extra_views_policy=fees.extra_views_policy(db_session).value
    )


@router.put("/api/v1/billing/settings", tags=["billing"])
def api_settings_update(
    body: BillingSettingsUpdate,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> BillingSettingsOut:
    policy = fees.set_extra_views_policy(
        db_session, principal.actor, body.extra_views_policy
    )
    return BillingSettingsOut(extra_views_policy=policy.value)


# --------------------------------------------------------------------------
# JSON API: charges
# --------------------------------------------------------------------------


@router.get("/api/v1/charges", tags=["billing"])
def api_charges(
    visit: int | None = Query(default=None, description="Visit id"),
    order: int | None = Query(default=None, description="Imaging order id"),
    client: int | None = Query(default=None, description="Client id"),
    horse: int | None = Query(default=None, description="Horse id"),
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[ChargeOut]:
    _require_filter(visit=visit, order=order, client=client, horse=horse)
    charges = charging.list_charges(
        db_session, visit_id=visit, order_id=order, client_id=client, horse_id=horse
    )
    return [ChargeOut.of(charge) for charge in charges]


@router.post("/api/v1/charges", status_code=201, tags=["billing"])
def api_charge_create(
    body: ManualChargeCreate,
    request: Request,
    principal: Principal = Depends(can_issue),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> ChargeOut:
    """Post a charge by hand, priced from the fee schedule."""
    visit = practice.get_visit(db_session, body.visit_id)
    item = fees.fee_for_charge(db_session, body.fee_code, field="fee_code")
    spec = charging.LineSpec(
        kind=ChargeKind.MANUAL,
        fee_code=item.code,
        description=body.description or item.description,
        quantity=body.quantity,
        unit_price=item.unit_price,
        tax_rate=item.tax_rate,
    )
    charge = charging.post_charge(
        db_session,
        principal.actor,
        visit,
        spec,
        service_date=body.service_date or _today(settings),
    )
    invoicing.sync_visit_invoices(db_session, principal.actor, visit, settings=settings)
    return ChargeOut.of(charge)


@router.post("/api/v1/billing/orders/{order_id}/waive", tags=["billing"])
def api_waive_order(
    order_id: int,
    body: WaiveRequest,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> list[ChargeOut]:
    """Waive an order's charge (reception or administrator, audited)."""
    order = _get_order(db_session, order_id)
    credits = service.waive_order(
        db_session, principal.actor, order, reason=body.reason, settings=settings
    )
    return [ChargeOut.of(charge) for charge in credits]


@router.post("/api/v1/visits/{visit_id}/invoices/refresh", tags=["billing"])
def api_refresh_drafts(
    visit_id: int,
    principal: Principal = Depends(can_issue),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> list[InvoiceOut]:
    """Re-draft a visit's invoices, for example after a change of owners."""
    visit = practice.get_visit(db_session, visit_id)
    drafts = invoicing.sync_visit_invoices(
        db_session, principal.actor, visit, settings=settings
    )
    return [_invoice_out(invoice) for invoice in drafts]


def _require_filter(**filters: int | None) -> None:
    if all(value is None for value in filters.values()):
        names = ", ".join(f"?{name}=" for name in filters)
        raise DomainError(
            f"give at least one filter ({names}) to list billing records",
            field="query",
            value=None,
        )


def _get_order(db_session: Session, order_id: int) -> ImagingOrder:
    order = db_session.get(ImagingOrder, order_id)
    if order is None:
        raise NotFound(
            f"imaging order {order_id} does not exist",
            field="order_id",
            value=order_id,
        )
    return order


# --------------------------------------------------------------------------
# JSON API: invoices
# --------------------------------------------------------------------------


@router.get("/api/v1/invoices", tags=["billing"])
def api_invoices(
    visit: int | None = Query(default=None, description="Visit id"),
    order: int | None = Query(default=None, description="Imaging order id"),
    client: int | None = Query(default=None, description="Client id"),
    horse: int | None = Query(default=None, description="Horse id"),
    status: InvoiceStatus | None = Query(default=None),
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[InvoiceOut]:
    _require_filter(visit=visit, order=order, client=client, horse=horse)
    invoices = invoicing.list_invoices(
        db_session,
        visit_id=visit,
        order_id=order,
        client_id=client,
        horse_id=horse,
        status=status.value if status else None,
    )
    return [_invoice_out(invoice) for invoice in invoices]


@router.get("/api/v1/invoices/{invoice_id}", tags=["billing"])
def api_invoice(
    invoice_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> InvoiceOut:
    return _invoice_out(invoicing.get_invoice(db_session, invoice_id))


@router.patch("/api/v1/invoices/{invoice_id}", tags=["billing"])
def api_invoice_update(
    invoice_id: int,
    body: dict[str, Any],
    principal: Principal = Depends(can_issue),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> InvoiceOut:
    """Change a draft's notes. An issued invoice gets 409: credit it instead."""
    invoice = invoicing.get_invoice(db_session, invoice_id)
    if invoice.status != InvoiceStatus.DRAFT:
        raise invoicing.refuse_change(invoice, ", ".join(sorted(body)) or "nothing")
    unknown = sorted(set(body) - set(InvoiceUpdate.model_fields))
    if unknown:
        raise DomainError(
            f"{', '.join(unknown)} cannot be set on an invoice; a draft's lines "
            "follow the visit's charges (post, reverse or waive a charge "
            "instead) and only its notes can be edited",
            field=unknown[0],
            value=body[unknown[0]],
        )
    update = InvoiceUpdate.model_validate(body)
    invoicing.update_draft(db_session, principal.actor, invoice, notes=update.notes)
    return _invoice_out(invoice)


@router.post("/api/v1/invoices/{invoice_id}/issue", tags=["billing"])
def api_invoice_issue(
    invoice_id: int,
    principal: Principal = Depends(can_issue),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> InvoiceOut:
    invoice = invoicing.get_invoice(db_session, invoice_id)
    invoicing.issue_invoice(db_session, principal.actor, invoice)
    return _invoice_out(invoice)


@router.post("/api/v1/invoices/{invoice_id}/pay", tags=["billing"])
def api_invoice_pay(
    invoice_id: int,
    body: PayRequest | None = None,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> InvoiceOut:
    invoice = invoicing.get_invoice(db_session, invoice_id)
    reference = body.reference if body else None
    invoicing.pay_invoice(db_session, principal.actor, invoice, reference=reference)
    return _invoice_out(invoice)


@router.post("/api/v1/invoices/{invoice_id}/void", tags=["billing"])
def api_invoice_void(
    invoice_id: int,
    body: VoidRequest,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> InvoiceOut:
    invoice = invoicing.get_invoice(db_session, invoice_id)
    invoicing.void_invoice(
        db_session, principal.actor, invoice, reason=body.reason, settings=settings
    )
    return _invoice_out(invoice)


@router.post(
    "/api/v1/invoices/{invoice_id}/credit-notes", status_code=201, tags=["billing"]
)
def api_credit_note(
    invoice_id: int,
    body: CreditNoteRequest,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> InvoiceOut:
    invoice = invoicing.get_invoice(db_session, invoice_id)
    note = invoicing.credit_note(
        db_session,
        principal.actor,
        invoice,
        reason=body.reason,
        line_ids=body.line_ids,
    )
    return _invoice_out(note)


@router.get("/api/v1/invoices/{invoice_id}/pdf", tags=["billing"])
def api_invoice_pdf(
    invoice_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    invoice = invoicing.get_invoice(db_session, invoice_id)
    data = invoicing.invoice_pdf(db_session, invoice, settings=settings)
    audit.record(
        db_session,
        principal.actor,
        "invoice.pdf",
        "invoice",
        invoice.id,
        horse_id=invoice.horse_id,
        detail={"number": invoice.number},
    )
    filename = f"{invoice.number or f'draft-{invoice.id}'}.pdf"
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{filename}"'},
    )


# --------------------------------------------------------------------------
# JSON API: missed charges
# --------------------------------------------------------------------------


def _report_range(
    start: dt.date | None, end: dt.date | None, settings: Settings
) -> tuple[dt.date, dt.date]:
    end = end or _today(settings)
    start = start or end - dt.timedelta(days=DEFAULT_REPORT_DAYS - 1)
    missed.check_range(start, end)
    return start, end


ACTION_URLS = {
    "charge_study": "/api/v1/billing/missed-charges/studies/{study_id}/charge",
    "recharge_order": "/api/v1/billing/missed-charges/orders/{order_id}/recharge",
    "charge_views": "/api/v1/billing/missed-charges/orders/{order_id}/charge-views",
}


def _action_url(item: missed.MissedCharge) -> str | None:
    if item.blocked:
        return None
    return ACTION_URLS[item.action].format(
        study_id=item.study_id, order_id=item.order_id
    )


@router.get("/api/v1/billing/missed-charges", tags=["billing"])
def api_missed_charges(
    start: dt.date | None = Query(default=None, alias="from"),
    end: dt.date | None = Query(default=None, alias="to"),
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> MissedChargeReportOut:
    """Imaging done but not billed between ``from`` and ``to`` (inclusive)."""
    start, end = _report_range(start, end, settings)
    report = missed.missed_charges(db_session, start, end, settings=settings)
    return MissedChargeReportOut(
        start=report.start,
        end=report.end,
        currency=report.currency,
        total=report.total,
        subtotals=report.subtotals(),
        items=[
            MissedChargeOut(
                category=item.category,
                label=item.label,
                day=item.day,
                description=item.description,
                estimated_value=item.estimated_value,
                fee_code=item.fee_code,
                horse_id=item.horse_id,
                horse_name=item.horse_name,
                study_id=item.study_id,
                order_id=item.order_id,
                accession_number=item.accession_number,
                action=item.action,
                action_url=_action_url(item),
                blocked=item.blocked,
            )
            for item in report.items
        ],
    )


@router.post(
    "/api/v1/billing/missed-charges/studies/{study_id}/charge",
    status_code=201,
    tags=["billing"],
)
def api_charge_study(
    study_id: int,
    body: StudyChargeRequest | None = None,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> list[ChargeOut]:
    charges = missed.charge_study(
        db_session,
        principal.actor,
        study_id,
        fee_code=body.fee_code if body else None,
        settings=settings,
    )
    return [ChargeOut.of(charge) for charge in charges]


@router.post(
    "/api/v1/billing/missed-charges/orders/{order_id}/recharge",
    status_code=201,
    tags=["billing"],
)
def api_recharge_order(
    order_id: int,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> list[ChargeOut]:
    charges = missed.recharge_order(
        db_session, principal.actor, order_id, settings=settings
    )
    return [ChargeOut.of(charge) for charge in charges]


@router.post(
    "/api/v1/billing/missed-charges/orders/{order_id}/charge-views",
    status_code=201,
    tags=["billing"],
)
def api_charge_views(
    order_id: int,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> ChargeOut:
    charge = missed.charge_views(
        db_session, principal.actor, order_id, settings=settings
    )
    return ChargeOut.of(charge)


# --------------------------------------------------------------------------
# Pages: the chart's billing section
# --------------------------------------------------------------------------


@router.get("/horses/{horse_id}/billing-section", include_in_schema=False)
def billing_section(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_load_chart),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    """Render the chart's billing fragment: each visit's charges and invoices.

    The chart polls it every two seconds, so a load is not audited. Opening an
    invoice or its PDF is.
    """
    horse = practice.get_horse(db_session, horse_id)
    allowed = principal.has_role(*BILLING_READERS)
    visits = invoicing.visits_with_billing(db_session, horse.id) if allowed else []
    blocks = [_visit_block(db_session, visit) for visit in visits]
    return render(
        request,
        "billing/_section.html",
        {
            "principal": principal,
            "horse": horse,
            "allowed": allowed,
            "blocks": blocks,
            "can_issue": principal.has_role(*ISSUERS),
            "can_manage": principal.has_role(*MANAGERS),
            "currency": request.app.state.settings.currency,
            "next_url": f"/horses/{horse.id}",
        },
    )


def _visit_block(db_session: Session, visit: Visit) -> dict[str, Any]:
    charges = charging.charges_for_visit(db_session, visit.id)
    credited = {c.reverses_id for c in charges if c.reverses_id is not None}
    invoices = invoicing.list_invoices(db_session, visit_id=visit.id)
    problem = None
    ownerless: list[Charge] = []
    try:
        _, ownerless = invoicing.unbilled_parts(db_session, visit)
    except DomainError as exc:
        problem = exc.message
    waivable: dict[int, str] = {}
    for charge in charges:
        if (
            charge.order_id is not None
            and not charge.is_credit
            and charge.id not in credited
        ):
            order = db_session.get(ImagingOrder, charge.order_id)
            if order is not None:
                waivable[order.id] = order.accession_number
    return {
        "visit": visit,
        "charges": charges,
        "credited": credited,
        "total": sum(c.total for c in charges),
        "invoices": invoices,
        "ownerless": ownerless,
        "problem": problem,
        "waivable": waivable,
    }


# --------------------------------------------------------------------------
# Pages: invoices
# --------------------------------------------------------------------------


def _safe_next(value: object, default: str) -> str:
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
        return value
    return default


def _action_failed(
    request: Request,
    principal: Principal,
    db_session: Session,
    exc: DomainError | ValidationError,
    back: str,
) -> Response:
    db_session.rollback()
    if isinstance(exc, ValidationError):
        message = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        status = 422
    else:
        message, status = exc.message, exc.status_code
    return render(
        request,
        "billing/action_failed.html",
        {"principal": principal, "error": message, "back": back},
        status_code=status,
    )


@router.get("/invoices/{invoice_id}", include_in_schema=False)
def invoice_page(
    request: Request,
    invoice_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    invoice = invoicing.get_invoice(db_session, invoice_id)
    audit.record(
        db_session,
        principal.actor,
        "invoice.view",
        "invoice",
        invoice.id,
        horse_id=invoice.horse_id,
        detail={"number": invoice.number},
    )
    return render(
        request,
        "billing/invoice.html",
        {
            "principal": principal,
            "invoice": invoice,
            "credit_notes": invoicing.credit_notes_for(db_session, invoice.id),
            "can_issue": principal.has_role(*ISSUERS),
            "can_manage": principal.has_role(*MANAGERS),
        },
    )


@router.post("/invoices/{invoice_id}/issue", include_in_schema=False)
def invoice_issue_form(
    request: Request,
    invoice_id: int,
    principal: Principal = Depends(can_issue),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    back = _safe_next(form.get("next"), f"/invoices/{invoice_id}")
    try:
        invoice = invoicing.get_invoice(db_session, invoice_id)
        invoicing.issue_invoice(db_session, principal.actor, invoice)
    except DomainError as exc:
        return _action_failed(request, principal, db_session, exc, back)
    return RedirectResponse(back, status_code=303)


@router.post("/invoices/{invoice_id}/pay", include_in_schema=False)
def invoice_pay_form(
    request: Request,
    invoice_id: int,
    principal: Principal = Depends(can_manage),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    back = f"/invoices/{invoice_id}"
    reference = str(form.get("reference") or "").strip() or None
    try:
        invoice = invoicing.get_invoice(db_session, invoice_id)
        invoicing.pay_invoice(db_session, principal.actor, invoice, reference=reference)
    except DomainError as exc:
        return _action_failed(request, principal, db_session, exc, back)
    return RedirectResponse(back, status_code=303)


@router.post("/invoices/{invoice_id}/void", include_in_schema=False)
def invoice_void_form(
    request: Request,
    invoice_id: int,
    principal: Principal = Depends(can_manage),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    back = f"/invoices/{invoice_id}"
    try:
        invoice = invoicing.get_invoice(db_session, invoice_id)
        invoicing.void_invoice(
            db_session,
            principal.actor,
            invoice,
            reason=str(form.get("reason") or ""),
            settings=settings,
        )
    except DomainError as exc:
        return _action_failed(request, principal, db_session, exc, back)
    return RedirectResponse(back, status_code=303)


@router.post("/invoices/{invoice_id}/credit-note", include_in_schema=False)
def invoice_credit_form(
    request: Request,
    invoice_id: int,
    principal: Principal = Depends(can_manage),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    back = f"/invoices/{invoice_id}"
    try:
        line_ids = [int(str(v)) for v in form.getlist("line_id")]
        invoice = invoicing.get_invoice(db_session, invoice_id)
        note = invoicing.credit_note(
            db_session,
            principal.actor,
            invoice,
            reason=str(form.get("reason") or ""),
            line_ids=line_ids or None,
        )
    except ValueError:
        exc = DomainError("line_id must be a line number", field="line_id")
        return _action_failed(request, principal, db_session, exc, back)
    except DomainError as exc:
        return _action_failed(request, principal, db_session, exc, back)
    return RedirectResponse(f"/invoices/{note.id}", status_code=303)


@router.post("/billing/orders/{order_id}/waive", include_in_schema=False)
def waive_form(
    request: Request,
    order_id: int,
    principal: Principal = Depends(can_manage),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    back = _safe_next(form.get("next"), "/horses")
    try:
        order = _get_order(db_session, order_id)
        service.waive_order(
            db_session,
            principal.actor,
            order,
            reason=str(form.get("reason") or ""),
            settings=settings,
        )
    except DomainError as exc:
        return _action_failed(request, principal, db_session, exc, back)
    return RedirectResponse(back, status_code=303)


@router.get("/clients/{client_id}/invoices", include_in_schema=False)
def client_invoices_page(
    request: Request,
    client_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    client = practice.get_client(db_session, client_id)
    invoices = invoicing.list_invoices(db_session, client_id=client.id)
    outstanding = sum(i.total for i in invoices if i.status == InvoiceStatus.ISSUED)
    audit.record(
        db_session,
        principal.actor,
        "invoice.list",
        "client",
        client.id,
        detail={"invoices": len(invoices)},
    )
    return render(
        request,
        "billing/client_invoices.html",
        {
            "principal": principal,
            "client": client,
            "invoices": invoices,
            "outstanding": outstanding,
            "currency": invoices[0].currency if invoices else None,
        },
    )


# --------------------------------------------------------------------------
# Pages: fee schedule and settings
# --------------------------------------------------------------------------


def _minor_units(text: object, name: str) -> int:
    """``"80"`` or ``"80.00"`` in the form is 8000 minor units."""
    raw = str(text or "").strip()
    try:
        value = Decimal(raw) * 100
    except InvalidOperation:
        raise DomainError(
            f"{name} {raw!r} is not an amount; write it like 80.00",
            field=name,
            value=raw,
        ) from None
    if value != value.to_integral_value():
        raise DomainError(
            f"{name} {raw!r} has more than two decimal places",
            field=name,
            value=raw,
        )
    return int(value)


def _fee_form_fields(form: FormData) -> dict[str, Any]:
    return {
        "description": str(form.get("description") or "").strip(),
        "unit_price": _minor_units(form.get("unit_price"), "unit_price"),
        "view_price": _minor_units(form.get("view_price") or "0", "view_price"),
        "tax_rate": _minor_units(form.get("tax_rate") or "0", "tax_rate"),
        "unscheduled_modalities": " ".join(
            str(form.get("unscheduled_modalities") or "").upper().split()
        ),
        "active": form.get("active") == "on",
    }


def _fees_page(
    request: Request,
    principal: Principal,
    db_session: Session,
    *,
    error: str | None = None,
    message: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "billing/fees.html",
        {
            "principal": principal,
            "items": fees.list_fees(db_session),
            "policy": fees.extra_views_policy(db_session).value,
            "currency": request.app.state.settings.currency,
            "error": error,
            "message": message,
        },
        status_code=status_code,
    )


@router.get("/billing/fees", include_in_schema=False)
def fees_page(
    request: Request,
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    return _fees_page(request, principal, db_session)


@router.post("/billing/fees", include_in_schema=False)
def fee_save_form(
    request: Request,
    principal: Principal = Depends(can_manage),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    """Add a fee item, or change one when the code exists."""
    code = str(form.get("code") or "").strip().upper()
    try:
        fields = _fee_form_fields(form)
        if fees.find_fee(db_session, code) is None:
            fees.create_fee(db_session, principal.actor, code=code, **fields)
        else:
            fees.update_fee(db_session, principal.actor, code, **fields)
    except DomainError as exc:
        db_session.rollback()
        return _fees_page(
            request, principal, db_session, error=exc.message, status_code=422
        )
    return RedirectResponse("/billing/fees", status_code=303)


@router.post("/billing/settings", include_in_schema=False)
def settings_form(
    request: Request,
    principal: Principal = Depends(can_manage),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    try:
        fees.set_extra_views_policy(
            db_session, principal.actor, str(form.get("extra_views_policy") or "")
        )
    except DomainError as exc:
        db_session.rollback()
        return _fees_page(
            request, principal, db_session, error=exc.message, status_code=422
        )
    return RedirectResponse("/billing/fees", status_code=303)


# --------------------------------------------------------------------------
# Pages: missed-charge report
# --------------------------------------------------------------------------


def _parse_day(value: str | None, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise DomainError(
            f"{name} {value!r} is not a date; write it as YYYY-MM-DD",
            field=name,
            value=value,
        ) from None


@router.get("/billing/missed-charges", include_in_schema=False)
def missed_charges_page(
    request: Request,
    start: str | None = Query(default=None, alias="from"),
    end: str | None = Query(default=None, alias="to"),
    principal: Principal = Depends(can_manage),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    try:
        first, last = _report_range(
            _parse_day(start, "from"), _parse_day(end, "to"), settings
        )
    except DomainError as exc:
        return _action_failed(
            request, principal, db_session, exc, "/billing/missed-charges"
        )
    report = missed.missed_charges(db_session, first, last, settings=settings)
    return render(
        request,
        "billing/missed.html",
        {
            "principal": principal,
            "report": report,
            "labels": missed.CATEGORY_LABELS,
            "query": urlencode({"from": first.isoformat(), "to": last.isoformat()}),
        },
    )


@router.post("/billing/missed-charges/charge", include_in_schema=False)
def missed_charge_form(
    request: Request,
    principal: Principal = Depends(can_manage),
    form: FormData = Depends(form_data),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Run the report's one-click action, whichever kind of leak it charges."""
    back = _safe_next(form.get("next"), "/billing/missed-charges")
    action = str(form.get("action") or "")
    try:
        target = int(str(form.get("target") or ""))
        if action == "charge_study":
            missed.charge_study(db_session, principal.actor, target, settings=settings)
        elif action == "recharge_order":
            missed.recharge_order(
                db_session, principal.actor, target, settings=settings
            )
        elif action == "charge_views":
            missed.charge_views(db_session, principal.actor, target, settings=settings)
        else:
            raise DomainError(
                f"action {action!r} is not a missed-charge action",
                field="action",
                value=action,
            )
    except ValueError:
        exc = DomainError("target must be a study or order id", field="target")
        return _action_failed(request, principal, db_session, exc, back)
    except DomainError as exc:
        return _action_failed(request, principal, db_session, exc, back)
    return RedirectResponse(back, status_code=303)
