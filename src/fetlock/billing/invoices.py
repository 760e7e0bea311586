"""Owners' invoices: split charges into drafts, issue, pay, void and credit.

Splitting is per charge line: each line's amount and tax are split between the
owners in force on the line's service date by the largest-remainder method, so
the owners' parts of every line add up to the line, and therefore the owners'
invoice totals add up to the visit's charges, tax included. Every function
takes the caller's ``db_session`` and leaves committing to the caller.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import event, exists, inspect, or_, select
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.billing.charges import (
    charges_for_visit,
    clip,
    get_visit,
    local_date,
    resolve_settings,
)
from fetlock.billing.models import (
    Charge,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
)
from fetlock.billing.split import split_amount
from fetlock.config import Settings, get_settings
from fetlock.db.base import utcnow
from fetlock.db.counters import next_value
from fetlock.documents.invoice import InvoiceDocument, InvoiceRow, render_invoice_pdf
from fetlock.documents.report_pdf import LETTERHEAD_LINES_MAX, practice_letterhead
from fetlock.practice.models import FULL_SHARE, Client, Horse, Visit
from fetlock.practice.service import owners_on
from fetlock.web.errors import Conflict, DomainError, NotFound

# Counter names and number formats of issued documents.
INVOICE_COUNTER = "billing.invoice"
CREDIT_NOTE_COUNTER = "billing.credit_note"
INVOICE_NUMBER_FORMAT = "INV-{:06d}"
CREDIT_NOTE_NUMBER_FORMAT = "CN-{:06d}"


def _percent(share: int) -> str:
    whole, frac = divmod(share, 100)
    return f"{whole} %" if frac == 0 else f"{whole}.{frac:02d} %"


# --------------------------------------------------------------------------
# Owners and draft invoices
# --------------------------------------------------------------------------


def billing_owners(
    db_session: Session, horse: Horse, day: dt.date
) -> list[tuple[Client, int]]:
    """Return the owners of ``horse`` on ``day``, checked to add up to 100 %.

    An empty list means no owner is recorded, so the charges wait uninvoiced
    until one is. Shares that do not add up raise a 422 ``DomainError``.
    """
    owners = owners_on(db_session, horse, day)
    if not owners:
        return []
    total = sum(share for _, share in owners)
    if total != FULL_SHARE or any(share <= 0 for _, share in owners):
        listing = ", ".join(
            f"{client.display_name} {_percent(share)}" for client, share in owners
        )
        raise DomainError(
            f"the owners' shares of {horse.barn_name} ({horse.patient_id}) on "
            f"{day.isoformat()} add up to {_percent(total)}, not 100 % "
            f"({listing}); correct the horse's ownership for that date, then "
            "post the charge again",
            field="ownership.share",
            value=_percent(total),
        )
    return owners


@dataclass(frozen=True)
class _Part:
    """One owner's part of one charge."""

    charge: Charge
    share: int
    amount: int
    tax_amount: int


def split_charge(
    charge: Charge, owners: Sequence[tuple[Client, int]]
) -> dict[int, _Part]:
    """Split a charge's amount and tax between owners; keyed by client id."""
    shares = [(client.id, share) for client, share in owners]
    amounts = split_amount(charge.amount, shares)
    taxes = split_amount(charge.tax_amount, shares)
    return {
        client_id: _Part(charge, share, amounts[client_id], taxes[client_id])
        for client_id, share in shares
    }


def _billed_pairs(db_session: Session, visit_id: int) -> set[tuple[int, int]]:
    """``(charge_id, client_id)`` already on an issued or paid invoice."""
    rows = db_session.execute(
        select(InvoiceLine.charge_id, Invoice.client_id)
        .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
        .where(
            Invoice.visit_id == visit_id,
            Invoice.credit_for_id.is_(None),
            Invoice.status.in_([InvoiceStatus.ISSUED, InvoiceStatus.PAID]),
            InvoiceLine.charge_id.is_not(None),
        )
    ).all()
    return {(charge_id, client_id) for charge_id, client_id in rows if charge_id}


def unbilled_parts(
    db_session: Session, visit: Visit
) -> tuple[dict[int, list[_Part]], list[Charge]]:
    """Owners' parts of the visit's charges not yet on an issued invoice.

    Return ``(parts by client id, charges with no owner on their date)``.
    """
    horse = db_session.get(Horse, visit.horse_id)
    assert horse is not None
    billed = _billed_pairs(db_session, visit.id)
    owners_by_day: dict[dt.date, list[tuple[Client, int]]] = {}
    parts: dict[int, list[_Part]] = defaultdict(list)
    ownerless: list[Charge] = []
    for charge in charges_for_visit(db_session, visit.id):
        day = charge.service_date
        if day not in owners_by_day:
            owners_by_day[day] = billing_owners(db_session, horse, day)
        owners = owners_by_day[day]
        if not owners:
            ownerless.append(charge)
            continue
        for client_id, part in split_charge(charge, owners).items():
            if (charge.id, client_id) not in billed:
                parts[client_id].append(part)
    return parts, ownerless


# The columns of a draft line that follow from the charge it splits.
LINE_FIELDS = (
    "charge_id",
    "position",
    "fee_code",
    "description",
    "service_date",
    "quantity",
    "unit_price",
    "charge_amount",
    "charge_tax",
    "share",
    "amount",
    "tax_rate",
    "tax_amount",
)


def _line_values(position: int, part: _Part) -> dict[str, object]:
    charge = part.charge
    return {
        "charge_id": charge.id,
        "position": position,
        "fee_code": charge.fee_code,
        "description": charge.description,
        "service_date": charge.service_date,
        "quantity": charge.quantity,
        "unit_price": charge.unit_price,
        "charge_amount": charge.amount,
        "charge_tax": charge.tax_amount,
        "share": part.share,
        "amount": part.amount,
        "tax_rate": charge.tax_rate,
        "tax_amount": part.tax_amount,
    }


def _line_key(line: InvoiceLine) -> dict[str, object]:
    return {name: getattr(line, name) for name in LINE_FIELDS}


def _set_totals(invoice: Invoice) -> None:
    invoice.subtotal = sum(line.amount for line in invoice.lines)
    invoice.tax_total = sum(line.tax_amount for line in invoice.lines)
    invoice.total = invoice.subtotal + invoice.tax_total


def drafts_for_visit(db_session: Session, visit_id: int) -> list[Invoice]:
    return list(
        db_session.execute(
            select(Invoice)
            .where(
                Invoice.visit_id == visit_id,
                Invoice.status == InvoiceStatus.DRAFT,
            )
            .order_by(Invoice.id)
        )
        .unique()
        .scalars()
    )


def sync_visit_invoices(
    db_session: Session,
    actor: audit.Actor,
    visit: Visit,
    *,
    settings: Settings | None = None,
) -> list[Invoice]:
    """Make the visit's draft invoices match its unbilled charges.

    Each owner with an unbilled part gets one draft for the visit; drafts left
    with nothing to bill are removed. Issued invoices are never touched.
    Return the drafts, in client order.
    """
    # Lock the visit so two transactions never draft the same owner twice.
    db_session.execute(select(Visit.id).where(Visit.id == visit.id).with_for_update())
    parts, _ = unbilled_parts(db_session, visit)
    drafts = {
        invoice.client_id: invoice for invoice in drafts_for_visit(db_session, visit.id)
    }
    currency = resolve_settings(settings).currency
    result: list[Invoice] = []

    # Owners in the order of their shares, largest first (``owners_on``).
    for client_id in parts:
        wanted = [_line_values(i, part) for i, part in enumerate(parts[client_id])]
        invoice = drafts.pop(client_id, None)
        if invoice is None:
            invoice = Invoice(
                kind=InvoiceKind.INVOICE.value,
                status=InvoiceStatus.DRAFT.value,
                visit_id=visit.id,
                horse_id=visit.horse_id,
                client_id=client_id,
                currency=currency,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            db_session.add(invoice)
            db_session.flush()
            audit.record(
                db_session,
                actor,
                "invoice.draft",
                "invoice",
                invoice.id,
                horse_id=visit.horse_id,
                detail={"visit_id": visit.id, "client_id": client_id},
            )
        if [_line_key(line) for line in invoice.lines] != wanted:
            invoice.lines.clear()
            db_session.flush()
            invoice.lines.extend(InvoiceLine(**values) for values in wanted)
            _set_totals(invoice)
            invoice.updated_at = utcnow()
            db_session.flush()
        result.append(invoice)

    # Delete the drafts of owners with nothing left to bill (for example after
    # a change of ownership). A draft has no number yet, so no gap appears.
    for invoice in drafts.values():
        audit.record(
            db_session,
            actor,
            "invoice.draft_removed",
            "invoice",
            invoice.id,
            horse_id=visit.horse_id,
            detail={"visit_id": visit.id, "client_id": invoice.client_id},
        )
        db_session.delete(invoice)
    db_session.flush()
    return result


# --------------------------------------------------------------------------
# Issued invoices never change
# --------------------------------------------------------------------------

# Columns fixed once an invoice is issued. Only the payment and void columns
# (status, paid_at, payment_reference, voided_at, void_reason, updated_at)
# change after issue.
FROZEN_INVOICE_FIELDS = (
    "number",
    "kind",
    "visit_id",
    "horse_id",
    "client_id",
    "credit_for_id",
    "currency",
    "subtotal",
    "tax_total",
    "total",
    "notes",
    "issued_at",
    "issued_by_id",
)


def _status_before(invoice: Invoice) -> str:
    history = inspect(invoice).attrs.status.history
    return str(history.deleted[0]) if history.deleted else invoice.status


@event.listens_for(Session, "before_flush")
def _keep_issued_invoices_frozen(
    db_session: Session, _context: object, _instances: object
) -> None:
    """Refuse, at flush, any change to an issued invoice or to its lines.

    The service never makes such a change; this catches code that would.
    """
    for obj in list(db_session.dirty) + list(db_session.deleted):
        if isinstance(obj, Invoice) and _status_before(obj) != InvoiceStatus.DRAFT:
            state = inspect(obj)
            changed = [
                name
                for name in FROZEN_INVOICE_FIELDS
                if state.attrs[name].history.has_changes()
            ]
            if changed or obj in db_session.deleted:
                raise refuse_change(obj, ", ".join(changed) or "delete")
        if isinstance(obj, InvoiceLine):
            invoice = obj.invoice
            if invoice is not None and _status_before(invoice) != InvoiceStatus.DRAFT:
                raise refuse_change(invoice, f"line {obj.id}")
    for obj in db_session.new:
        if isinstance(obj, InvoiceLine):
            invoice = obj.invoice
            if (
                invoice is not None
                and invoice not in db_session.new
                and _status_before(invoice) != InvoiceStatus.DRAFT
            ):
                raise refuse_change(invoice, "new line")


# --------------------------------------------------------------------------
# Invoice life cycle
# --------------------------------------------------------------------------


def get_invoice(db_session: Session, invoice_id: int) -> Invoice:
    invoice = db_session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound(
            f"invoice {invoice_id} does not exist",
            field="invoice_id",
            value=invoice_id,
        )
    return invoice


def _lock(db_session: Session, invoice: Invoice) -> Invoice:
    db_session.execute(
        select(Invoice.id).where(Invoice.id == invoice.id).with_for_update()
    )
    db_session.refresh(invoice)
    return invoice


def refuse_change(invoice: Invoice, what: str) -> Conflict:
    return Conflict(
        f"invoice {invoice.label} is {invoice.status} and cannot be changed "
        f"({what}); issued invoices are corrected by a credit note: POST "
        f"/api/v1/invoices/{invoice.id}/credit-notes",
        field="invoice",
        value=invoice.label,
    )


def update_draft(
    db_session: Session, actor: audit.Actor, invoice: Invoice, *, notes: str | None
) -> Invoice:
    """Change a draft's notes; raise 409 ``Conflict`` for any other invoice."""
    _lock(db_session, invoice)
    if invoice.status != InvoiceStatus.DRAFT:
        raise refuse_change(invoice, "notes")
    invoice.notes = notes
    invoice.updated_at = utcnow()
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "invoice.update",
        "invoice",
        invoice.id,
        horse_id=invoice.horse_id,
        detail={"notes": notes},
    )
    return invoice


def issue_invoice(
    db_session: Session,
    actor: audit.Actor,
    invoice: Invoice,
) -> Invoice:
    """Number a draft and freeze it. A draft with a negative total issues as a
    credit note."""
    # Only a draft with lines can be issued.
    _lock(db_session, invoice)
    if invoice.status != InvoiceStatus.DRAFT:
        raise Conflict(
            f"invoice {invoice.label} is {invoice.status}; only a draft can be issued",
            field="invoice",
            value=invoice.label,
        )
    if not invoice.lines:
        raise Conflict(
            f"invoice {invoice.label} has no lines to issue",
            field="invoice",
            value=invoice.label,
        )

    # Allocate the number; a rolled-back issue never uses it.
    if invoice.total < 0:
        invoice.kind = InvoiceKind.CREDIT_NOTE.value
        number = CREDIT_NOTE_NUMBER_FORMAT.format(
            next_value(db_session, CREDIT_NOTE_COUNTER)
        )
    else:
        number = INVOICE_NUMBER_FORMAT.format(next_value(db_session, INVOICE_COUNTER))

    # Freeze it: from here on the flush guard rejects any change but payment.
    now = utcnow()
    invoice.number = number
    invoice.status = InvoiceStatus.ISSUED.value
    invoice.issued_at = now
    invoice.issued_by_id = actor.user_id
    invoice.updated_at = now
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "invoice.issue",
        "invoice",
        invoice.id,
        horse_id=invoice.horse_id,
        detail={
            "number": number,
            "client_id": invoice.client_id,
            "visit_id": invoice.visit_id,
            "total": invoice.total,
            "currency": invoice.currency,
        },
    )
    return invoice


def pay_invoice(
    db_session: Session,
    actor: audit.Actor,
    invoice: Invoice,
    *,
    reference: str | None = None,
) -> Invoice:
    """Record that an issued invoice (or credit note, refunded) was settled."""
    _lock(db_session, invoice)
    if invoice.status != InvoiceStatus.ISSUED:
        raise Conflict(
            f"invoice {invoice.label} is {invoice.status}; only an issued invoice "
            "can be marked paid",
            field="invoice",
            value=invoice.label,
        )
    now = utcnow()
    invoice.status = InvoiceStatus.PAID.value
    invoice.paid_at = now
    invoice.payment_reference = reference
    invoice.updated_at = now
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "invoice.pay",
        "invoice",
        invoice.id,
        horse_id=invoice.horse_id,
        detail={"number": invoice.number, "reference": reference},
    )
    return invoice


def credit_notes_for(db_session: Session, invoice_id: int) -> list[Invoice]:
    return list(
        db_session.execute(
            select(Invoice)
            .where(Invoice.credit_for_id == invoice_id)
            .order_by(Invoice.id)
        )
        .unique()
        .scalars()
    )


def void_invoice(
    db_session: Session,
    actor: audit.Actor,
    invoice: Invoice,
    *,
    reason: str,
    settings: Settings | None = None,
) -> Invoice:
    """Void an issued, unpaid invoice; its charges go back on a draft."""
    # Only an issued, unpaid invoice without credit notes can be voided.
    _lock(db_session, invoice)
    reason = reason.strip()
    if not reason:
        raise DomainError(
            f"voiding invoice {invoice.label} needs a reason",
            field="reason",
            value=reason,
        )
    if invoice.status != InvoiceStatus.ISSUED:
        raise Conflict(
            f"invoice {invoice.label} is {invoice.status}; only an issued, unpaid "
            "invoice can be voided (a paid one is corrected by a credit note)",
            field="invoice",
            value=invoice.label,
        )
    if credit_notes_for(db_session, invoice.id):
        raise Conflict(
            f"invoice {invoice.label} has credit notes against it; it cannot also "
            "be voided",
            field="invoice",
            value=invoice.label,
        )

    # Void it, then put its charges back on a draft for the owner.
    now = utcnow()
    invoice.status = InvoiceStatus.VOID.value
    invoice.voided_at = now
    invoice.void_reason = reason
    invoice.updated_at = now
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "invoice.void",
        "invoice",
        invoice.id,
        horse_id=invoice.horse_id,
        detail={"number": invoice.number, "reason": reason},
    )
    if invoice.credit_for_id is None:
        sync_visit_invoices(
            db_session,
            actor,
            get_visit(db_session, invoice.visit_id),
            settings=settings,
        )
    return invoice


def credit_note(
    db_session: Session,
    actor: audit.Actor,
    invoice: Invoice,
    *,
    reason: str,
    line_ids: Sequence[int] | None = None,
) -> Invoice:
    """Issue a credit note against an issued or paid invoice.

    Each chosen line (all by default) is credited in full; a line already
    credited cannot be credited again.
    """
    _lock(db_session, invoice)
    reason = reason.strip()
    if not reason:
        raise DomainError(
            f"a credit note against {invoice.label} needs a reason",
            field="reason",
            value=reason,
        )
    if invoice.kind != InvoiceKind.INVOICE or invoice.status not in (
        InvoiceStatus.ISSUED,
        InvoiceStatus.PAID,
    ):
        raise Conflict(
            f"invoice {invoice.label} is a {invoice.status} {invoice.kind}; credit "
            "notes are raised against issued or paid invoices only",
            field="invoice",
            value=invoice.label,
        )
    by_id = {line.id: line for line in invoice.lines}
    chosen_ids = list(line_ids) if line_ids else list(by_id)
    for line_id in chosen_ids:
        if line_id not in by_id:
            raise DomainError(
                f"line {line_id} is not on invoice {invoice.label}; its lines are "
                f"{sorted(by_id)}",
                field="line_ids",
                value=line_id,
            )
    credited = set(
        db_session.execute(
            select(InvoiceLine.credited_line_id)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(Invoice.credit_for_id == invoice.id)
        ).scalars()
    )
    again = sorted(set(chosen_ids) & credited)
    if again:
        raise Conflict(
            f"line(s) {again} of invoice {invoice.label} are already credited",
            field="line_ids",
            value=again,
        )

    now = utcnow()
    note = Invoice(
        kind=InvoiceKind.CREDIT_NOTE.value,
        status=InvoiceStatus.ISSUED.value,
        visit_id=invoice.visit_id,
        horse_id=invoice.horse_id,
        client_id=invoice.client_id,
        credit_for_id=invoice.id,
        currency=invoice.currency,
        notes=reason,
        number=CREDIT_NOTE_NUMBER_FORMAT.format(
            next_value(db_session, CREDIT_NOTE_COUNTER)
        ),
        created_at=now,
        updated_at=now,
        issued_at=now,
        issued_by_id=actor.user_id,
    )
    for position, line_id in enumerate(chosen_ids):
        line = by_id[line_id]
        note.lines.append(
            InvoiceLine(
                charge_id=line.charge_id,
                credited_line_id=line.id,
                position=position,
                fee_code=line.fee_code,
                description=clip(f"Credit: {line.description}"),
                service_date=line.service_date,
                quantity=line.quantity,
                unit_price=-line.unit_price,
                charge_amount=-line.charge_amount,
                charge_tax=-line.charge_tax,
                share=line.share,
                amount=-line.amount,
                tax_rate=line.tax_rate,
                tax_amount=-line.tax_amount,
            )
        )
    _set_totals(note)
    db_session.add(note)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "invoice.credit_note",
        "invoice",
        note.id,
        horse_id=invoice.horse_id,
        detail={
            "number": note.number,
            "credits": invoice.number,
            "lines": chosen_ids,
            "total": note.total,
            "reason": reason,
        },
    )
    return note


# --------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------


def list_invoices(
    db_session: Session,
    *,
    visit_id: int | None = None,
    client_id: int | None = None,
    order_id: int | None = None,
    horse_id: int | None = None,
    status: str | None = None,
) -> list[Invoice]:
    """Invoices and credit notes matching every filter given, oldest first."""
    query = select(Invoice)
    if visit_id is not None:
        query = query.where(Invoice.visit_id == visit_id)
    if client_id is not None:
        query = query.where(Invoice.client_id == client_id)
    if horse_id is not None:
        query = query.where(Invoice.horse_id == horse_id)
    if status is not None:
        query = query.where(Invoice.status == status)
    if order_id is not None:
        query = query.where(
            exists()
            .where(InvoiceLine.invoice_id == Invoice.id)
            .where(InvoiceLine.charge_id == Charge.id)
            .where(Charge.order_id == order_id)
        )
    return list(db_session.execute(query.order_by(Invoice.id)).unique().scalars())


def visits_with_billing(db_session: Session, horse_id: int) -> list[Visit]:
    """Return the horse's visits that have charges or invoices, newest first."""
    return list(
        db_session.execute(
            select(Visit)
            .where(
                Visit.horse_id == horse_id,
                or_(
                    exists().where(Charge.visit_id == Visit.id),
                    exists().where(Invoice.visit_id == Visit.id),
                ),
            )
            .order_by(Visit.started_at.desc(), Visit.id.desc())
        ).scalars()
    )


# --------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------

TITLES = {
    (InvoiceKind.INVOICE, InvoiceStatus.DRAFT): "Draft invoice",
    (InvoiceKind.CREDIT_NOTE, InvoiceStatus.DRAFT): "Draft credit note",
}


def invoice_document(
    db_session: Session, invoice: Invoice, *, settings: Settings | None = None
) -> InvoiceDocument:
    """Collect the plain values printed on ``invoice``'s PDF."""
    settings = resolve_settings(settings)
    client = invoice.client
    horse = invoice.horse
    visit = invoice.visit
    kind = InvoiceKind(invoice.kind)
    title = TITLES.get(
        (kind, InvoiceStatus(invoice.status)),
        "Credit note" if kind == InvoiceKind.CREDIT_NOTE else "Invoice",
    )

    # The client's postal address, skipping empty parts.
    address = [
        line
        for line in (
            client.address_line1,
            client.address_line2,
            " ".join(p for p in (client.town, client.postcode) if p),
            client.county,
            client.country,
        )
        if line
    ]

    remarks = _remarks(db_session, invoice, settings)
    letterhead = practice_letterhead(settings or get_settings())
    return InvoiceDocument(
        issuer=letterhead.name,
        issuer_lines=[
            line for line in (*letterhead.address_lines, letterhead.contact) if line
        ][:LETTERHEAD_LINES_MAX],
        title=title,
        number=invoice.number,
        status=invoice.status,
        currency=invoice.currency,
        client_name=client.display_name,
        client_address=address,
        horse_name=horse.barn_name,
        patient_id=horse.patient_id,
        visit_date=local_date(visit.started_at, settings),
        issued_on=local_date(invoice.issued_at, settings)
        if invoice.issued_at
        else None,
        rows=[
            InvoiceRow(
                service_date=line.service_date,
                fee_code=line.fee_code,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                charge_amount=line.charge_amount,
                share=line.share,
                amount=line.amount,
                tax_rate=line.tax_rate,
                tax_amount=line.tax_amount,
            )
            for line in invoice.lines
        ],
        subtotal=invoice.subtotal,
        tax_total=invoice.tax_total,
        total=invoice.total,
        remarks=remarks,
    )


def _remarks(db_session: Session, invoice: Invoice, settings: Settings) -> list[str]:
    remarks = []
    if invoice.status == InvoiceStatus.DRAFT:
        remarks.append("Draft: not yet issued, and not a request for payment.")
    if invoice.credit_for_id is not None:
        original = db_session.get(Invoice, invoice.credit_for_id)
        if original is not None:
            remarks.append(f"Credits invoice {original.label}.")
    if invoice.status == InvoiceStatus.PAID and invoice.paid_at is not None:
        paid = local_date(invoice.paid_at, settings).isoformat()
        reference = (
            f" (reference {invoice.payment_reference})"
            if invoice.payment_reference
            else ""
        )
        remarks.append(f"Paid on {paid}{reference}. Thank you.")
    if invoice.status == InvoiceStatus.VOID:
        remarks.append(f"Void: {invoice.void_reason or 'no reason given'}.")
    shares = {line.share for line in invoice.lines}
    if shares and shares != {FULL_SHARE}:
        remarks.append(
            "The horse has several owners: each line shows the whole charge, your "
            "share of it, and your part. The owners' parts add up to the charge."
        )
    if invoice.notes:
        remarks.append(invoice.notes)
    return remarks


def invoice_pdf(
    db_session: Session, invoice: Invoice, *, settings: Settings | None = None
) -> bytes:
    """Render the PDF of ``invoice`` (afresh each time; an issued one is fixed)."""
    return render_invoice_pdf(invoice_document(db_session, invoice, settings=settings))
