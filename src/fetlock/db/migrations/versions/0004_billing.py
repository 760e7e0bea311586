"""billing: fee schedule, charges, invoices and their lines, settings

Revision ID: 0004
Revises: 0001
Depends on: 0002 (imaging orders) and 0003 (studies), which charges link to
Create Date: 2026-12-04 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import fetlock.db.base

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0002", "0003")


def upgrade() -> None:
    op.create_table(
        "billing_fee_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("unit_price", sa.Integer(), nullable=False),
        sa.Column("view_price", sa.Integer(), nullable=False),
        sa.Column("tax_rate", sa.Integer(), nullable=False),
        sa.Column("unscheduled_modalities", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_fee_item")),
        sa.UniqueConstraint("code", name=op.f("uq_billing_fee_item_code")),
    )
    op.create_table(
        "billing_setting",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column(
            "updated_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["user_account.id"],
            name=op.f("fk_billing_setting_updated_by_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_billing_setting")),
    )
    op.create_table(
        "billing_invoice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("horse_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("credit_for_id", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", sa.Integer(), nullable=False),
        sa.Column("tax_total", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "issued_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("issued_by_id", sa.Integer(), nullable=True),
        sa.Column("paid_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("payment_reference", sa.String(length=100), nullable=True),
        sa.Column(
            "voided_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["client.id"],
            name=op.f("fk_billing_invoice_client_id_client"),
        ),
        sa.ForeignKeyConstraint(
            ["credit_for_id"],
            ["billing_invoice.id"],
            name=op.f("fk_billing_invoice_credit_for_id_billing_invoice"),
        ),
        sa.ForeignKeyConstraint(
            ["horse_id"], ["horse.id"], name=op.f("fk_billing_invoice_horse_id_horse")
        ),
        sa.ForeignKeyConstraint(
            ["issued_by_id"],
            ["user_account.id"],
            name=op.f("fk_billing_invoice_issued_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit.id"], name=op.f("fk_billing_invoice_visit_id_visit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_invoice")),
        sa.UniqueConstraint("number", name=op.f("uq_billing_invoice_number")),
    )
    with op.batch_alter_table("billing_invoice", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_invoice_client_id"), ["client_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_invoice_credit_for_id"),
            ["credit_for_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_billing_invoice_horse_id"), ["horse_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_invoice_status"), ["status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_invoice_visit_id"), ["visit_id"], unique=False
        )

    op.create_table(
        "billing_charge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("horse_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("reverses_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("fee_code", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("tax_rate", sa.Integer(), nullable=False),
        sa.Column("tax_amount", sa.Integer(), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_billing_charge_created_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["horse_id"], ["horse.id"], name=op.f("fk_billing_charge_horse_id_horse")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["imaging_order.id"],
            name=op.f("fk_billing_charge_order_id_imaging_order"),
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["billing_charge.id"],
            name=op.f("fk_billing_charge_reverses_id_billing_charge"),
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["imaging_study.id"],
            name=op.f("fk_billing_charge_study_id_imaging_study"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit.id"], name=op.f("fk_billing_charge_visit_id_visit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_charge")),
    )
    with op.batch_alter_table("billing_charge", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_charge_horse_id"), ["horse_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_charge_order_id"), ["order_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_charge_reverses_id"), ["reverses_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_charge_study_id"), ["study_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_charge_visit_id"), ["visit_id"], unique=False
        )

    op.create_table(
        "billing_invoice_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("charge_id", sa.Integer(), nullable=True),
        sa.Column("credited_line_id", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("fee_code", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Integer(), nullable=False),
        sa.Column("charge_amount", sa.Integer(), nullable=False),
        sa.Column("charge_tax", sa.Integer(), nullable=False),
        sa.Column("share", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("tax_rate", sa.Integer(), nullable=False),
        sa.Column("tax_amount", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_id"],
            ["billing_charge.id"],
            name=op.f("fk_billing_invoice_line_charge_id_billing_charge"),
        ),
        sa.ForeignKeyConstraint(
            ["credited_line_id"],
            ["billing_invoice_line.id"],
            name=op.f("fk_billing_invoice_line_credited_line_id_billing_invoice_line"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoice.id"],
            name=op.f("fk_billing_invoice_line_invoice_id_billing_invoice"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_invoice_line")),
    )
    with op.batch_alter_table("billing_invoice_line", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_invoice_line_charge_id"), ["charge_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_invoice_line_invoice_id"),
            ["invoice_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_invoice_line", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_invoice_line_invoice_id"))
        batch_op.drop_index(batch_op.f("ix_billing_invoice_line_charge_id"))

    op.drop_table("billing_invoice_line")
    with op.batch_alter_table("billing_charge", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_charge_visit_id"))
        batch_op.drop_index(batch_op.f("ix_billing_charge_study_id"))
        batch_op.drop_index(batch_op.f("ix_billing_charge_reverses_id"))
        batch_op.drop_index(batch_op.f("ix_billing_charge_order_id"))
        batch_op.drop_index(batch_op.f("ix_billing_charge_horse_id"))

    op.drop_table("billing_charge")
    with op.batch_alter_table("billing_invoice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_invoice_visit_id"))
        batch_op.drop_index(batch_op.f("ix_billing_invoice_status"))
        batch_op.drop_index(batch_op.f("ix_billing_invoice_horse_id"))
        batch_op.drop_index(batch_op.f("ix_billing_invoice_credit_for_id"))
        batch_op.drop_index(batch_op.f("ix_billing_invoice_client_id"))

    op.drop_table("billing_invoice")
    op.drop_table("billing_setting")
    op.drop_table("billing_fee_item")
