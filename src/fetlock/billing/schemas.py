"""API shapes for the fee schedule, charges, invoices and the missed-charge report.

Money is in integer minor units of the practice currency; tax rates and
shares are in hundredths of a percent (2000 is 20 %). Range checks on prices
and rates happen in the service, so the API and the fee schedule page give the
same messages.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from fetlock.billing.models import Charge, Invoice, InvoiceLine


class FeeItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    description: str
    unit_price: int
    view_price: int
    tax_rate: int
    unscheduled_modalities: str
    active: bool


class FeeItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Capital letters, digits and hyphens: RAD-FET.")
    description: str
    unit_price: int = Field(description="Base fee in minor units, net of tax.")
    view_price: int = Field(
        default=0,
        description="Add-on per view beyond the standard set; 0 defers to the "
        "catalog's per-view fee code.",
    )
    tax_rate: int = Field(default=0, description="Hundredths of a percent.")
    unscheduled_modalities: str = ""
    active: bool = True


class FeeItemUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    unit_price: int | None = None
    view_price: int | None = None
    tax_rate: int | None = None
    unscheduled_modalities: str | None = None
    active: bool | None = None


class BillingSettingsOut(BaseModel):
    extra_views_policy: str = Field(
        description="'charge': views received beyond the order are charged at "
        "once; 'review': they are listed on the missed-charge report."
    )


class BillingSettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    extra_views_policy: str


class ChargeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    visit_id: int
    horse_id: int
    order_id: int | None
    study_id: int | None
    reverses_id: int | None
    kind: str
    fee_code: str
    description: str
    quantity: int
    unit_price: int
    amount: int
    tax_rate: int
    tax_amount: int
    total: int
    service_date: dt.date
    reason: str | None
    created_at: dt.datetime

    @classmethod
    def of(cls, charge: Charge) -> ChargeOut:
        return cls.model_validate(charge)


class ManualChargeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    visit_id: int
    fee_code: str
    quantity: int = 1
    service_date: dt.date | None = Field(
        default=None, description="Defaults to today in the practice time zone."
    )
    description: str | None = None


class WaiveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str


class InvoiceLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    charge_id: int | None
    credited_line_id: int | None
    fee_code: str
    description: str
    service_date: dt.date
    quantity: int
    unit_price: int
    charge_amount: int = Field(description="The whole charge line, all owners.")
    charge_tax: int
    share: int = Field(description="This owner's share, hundredths of a percent.")
    amount: int = Field(description="This owner's part of the charge, net.")
    tax_rate: int
    tax_amount: int
    total: int

    @classmethod
    def of(cls, line: InvoiceLine) -> InvoiceLineOut:
        return cls.model_validate(line)


class InvoiceOut(BaseModel):
    id: int
    number: str | None
    kind: str
    status: str
    visit_id: int
    horse_id: int
    client_id: int
    client_name: str
    credit_for_id: int | None
    currency: str
    subtotal: int
    tax_total: int
    total: int
    notes: str | None
    issued_at: dt.datetime | None
    paid_at: dt.datetime | None
    payment_reference: str | None
    voided_at: dt.datetime | None
    void_reason: str | None
    lines: list[InvoiceLineOut]
    pdf_url: str

    @classmethod
    def of(cls, invoice: Invoice) -> InvoiceOut:
        return cls(
            id=invoice.id,
            number=invoice.number,
            kind=invoice.kind,
            status=invoice.status,
            visit_id=invoice.visit_id,
            horse_id=invoice.horse_id,
            client_id=invoice.client_id,
            client_name=invoice.client.display_name,
            credit_for_id=invoice.credit_for_id,
            currency=invoice.currency,
            subtotal=invoice.subtotal,
            tax_total=invoice.tax_total,
            total=invoice.total,
            notes=invoice.notes,
            issued_at=invoice.issued_at,
            paid_at=invoice.paid_at,
            payment_reference=invoice.payment_reference,
            voided_at=invoice.voided_at,
            void_reason=invoice.void_reason,
            lines=[InvoiceLineOut.of(line) for line in invoice.lines],
            pdf_url=f"/api/v1/invoices/{invoice.id}/pdf",
        )


class InvoiceUpdate(BaseModel):
    """The one thing a draft lets you change; its lines follow the charges."""

    model_config = ConfigDict(extra="forbid")

    notes: str | None = None


class PayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str | None = Field(default=None, max_length=100)


class VoidRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str


class CreditNoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str
    line_ids: list[int] | None = Field(
        default=None, description="Lines to credit in full; all lines when omitted."
    )


class StudyChargeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fee_code: str | None = Field(
        default=None, description="Price with this item instead of the estimate."
    )


class MissedChargeOut(BaseModel):
    category: str
    label: str
    day: dt.date
    description: str
    estimated_value: int
    fee_code: str | None
    horse_id: int | None
    horse_name: str | None
    study_id: int | None
    order_id: int | None
    accession_number: str | None
    action: str
    action_url: str | None
    blocked: str | None


class MissedChargeReportOut(BaseModel):
    start: dt.date
    end: dt.date
    currency: str
    total: int = Field(description="Estimated leakage, net of tax.")
    subtotals: dict[str, int]
    items: list[MissedChargeOut]
