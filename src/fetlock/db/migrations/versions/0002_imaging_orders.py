"""imaging: procedure catalog, remote AEs, orders, worklist steps, MPPS

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 16:22:27.747374
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import fetlock.db.base

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dicom_remote_ae",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("station_name", sa.String(length=16), nullable=True),
        sa.Column("character_set", sa.String(length=32), nullable=False),
        sa.Column("restrict_worklist_to_own_ae", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_remote_ae")),
        sa.UniqueConstraint("ae_title", name=op.f("uq_dicom_remote_ae_ae_title")),
    )
    op.create_table(
        "imaging_procedure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("body_region", sa.String(length=64), nullable=False),
        sa.Column("body_part_examined", sa.String(length=16), nullable=True),
        sa.Column("limb_choice", sa.String(length=16), nullable=False),
        sa.Column("fee_code", sa.String(length=32), nullable=False),
        sa.Column("per_view_fee_code", sa.String(length=32), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_procedure")),
        sa.UniqueConstraint("code", name=op.f("uq_imaging_procedure_code")),
    )
    op.create_table(
        "imaging_procedure_view",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("procedure_id", sa.Integer(), nullable=False),
        sa.Column("projection", sa.String(length=32), nullable=False),
        sa.Column("limb", sa.String(length=2), nullable=True),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("default_selected", sa.Boolean(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["procedure_id"],
            ["imaging_procedure.id"],
            name=op.f("fk_imaging_procedure_view_procedure_id_imaging_procedure"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_procedure_view")),
        sa.UniqueConstraint(
            "procedure_id",
            "limb",
            "projection",
            name=op.f("uq_imaging_procedure_view_procedure_id_limb_projection"),
        ),
    )
    with op.batch_alter_table("imaging_procedure_view", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_imaging_procedure_view_procedure_id"),
            ["procedure_id"],
            unique=False,
        )

    op.create_table(
        "imaging_order",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("horse_id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("procedure_id", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("accession_number", sa.String(length=16), nullable=False),
        sa.Column("requested_procedure_id", sa.String(length=16), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("limb", sa.String(length=2), nullable=True),
        sa.Column("requesting_clinician_id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=True),
        sa.Column(
            "scheduled_start",
            fetlock.db.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("clinical_history", sa.Text(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "started_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "ended_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "cancelled_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_imaging_order_created_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["horse_id"], ["horse.id"], name=op.f("fk_imaging_order_horse_id_horse")
        ),
        sa.ForeignKeyConstraint(
            ["procedure_id"],
            ["imaging_procedure.id"],
            name=op.f("fk_imaging_order_procedure_id_imaging_procedure"),
        ),
        sa.ForeignKeyConstraint(
            ["requesting_clinician_id"],
            ["user_account.id"],
            name=op.f("fk_imaging_order_requesting_clinician_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["station_id"],
            ["dicom_remote_ae.id"],
            name=op.f("fk_imaging_order_station_id_dicom_remote_ae"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit.id"], name=op.f("fk_imaging_order_visit_id_visit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_order")),
        sa.UniqueConstraint(
            "accession_number", name=op.f("uq_imaging_order_accession_number")
        ),
        sa.UniqueConstraint(
            "requested_procedure_id",
            name=op.f("uq_imaging_order_requested_procedure_id"),
        ),
        sa.UniqueConstraint(
            "study_instance_uid", name=op.f("uq_imaging_order_study_instance_uid")
        ),
    )
    with op.batch_alter_table("imaging_order", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_imaging_order_horse_id"), ["horse_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_imaging_order_requesting_clinician_id"),
            ["requesting_clinician_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_imaging_order_station_id"), ["station_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_imaging_order_status"), ["status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_imaging_order_visit_id"), ["visit_id"], unique=False
        )

    op.create_table(
        "imaging_order_view",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=48), nullable=False),
        sa.Column("limb", sa.String(length=2), nullable=True),
        sa.Column("projection", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["imaging_order.id"],
            name=op.f("fk_imaging_order_view_order_id_imaging_order"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_order_view")),
        sa.UniqueConstraint(
            "order_id", "code", name=op.f("uq_imaging_order_view_order_id_code")
        ),
    )
    with op.batch_alter_table("imaging_order_view", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_imaging_order_view_order_id"), ["order_id"], unique=False
        )

    op.create_table(
        "scheduled_procedure_step",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("sps_id", sa.String(length=16), nullable=False),
        sa.Column("station_ae_title", sa.String(length=16), nullable=True),
        sa.Column("station_name", sa.String(length=16), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column(
            "scheduled_start",
            fetlock.db.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.Column("description", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["imaging_order.id"],
            name=op.f("fk_scheduled_procedure_step_order_id_imaging_order"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_procedure_step")),
        sa.UniqueConstraint("sps_id", name=op.f("uq_scheduled_procedure_step_sps_id")),
    )
    with op.batch_alter_table("scheduled_procedure_step", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scheduled_procedure_step_modality"),
            ["modality"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_scheduled_procedure_step_order_id"),
            ["order_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_scheduled_procedure_step_scheduled_start"),
            ["scheduled_start"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_scheduled_procedure_step_station_ae_title"),
            ["station_ae_title"],
            unique=False,
        )
        batch_op.create_index(
            "ix_sps_status_start", ["status", "scheduled_start"], unique=False
        )

    op.create_table(
        "mpps_instance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("step_id", sa.Integer(), nullable=True),
        sa.Column("unmatched", sa.Boolean(), nullable=False),
        sa.Column("calling_ae_title", sa.String(length=16), nullable=False),
        sa.Column("accession_number", sa.String(length=64), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("scheduled_procedure_step_id", sa.String(length=64), nullable=True),
        sa.Column("performed_procedure_step_id", sa.String(length=64), nullable=True),
        sa.Column("performed_station_ae_title", sa.String(length=64), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column(
            "started_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "ended_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("attributes_json", sa.Text(), nullable=False),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["imaging_order.id"],
            name=op.f("fk_mpps_instance_order_id_imaging_order"),
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["scheduled_procedure_step.id"],
            name=op.f("fk_mpps_instance_step_id_scheduled_procedure_step"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mpps_instance")),
        sa.UniqueConstraint(
            "sop_instance_uid", name=op.f("uq_mpps_instance_sop_instance_uid")
        ),
    )
    with op.batch_alter_table("mpps_instance", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mpps_instance_order_id"), ["order_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_mpps_instance_step_id"), ["step_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_mpps_instance_unmatched"), ["unmatched"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("mpps_instance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mpps_instance_unmatched"))
        batch_op.drop_index(batch_op.f("ix_mpps_instance_step_id"))
        batch_op.drop_index(batch_op.f("ix_mpps_instance_order_id"))

    op.drop_table("mpps_instance")
    with op.batch_alter_table("scheduled_procedure_step", schema=None) as batch_op:
        batch_op.drop_index("ix_sps_status_start")
        batch_op.drop_index(batch_op.f("ix_scheduled_procedure_step_station_ae_title"))
        batch_op.drop_index(batch_op.f("ix_scheduled_procedure_step_scheduled_start"))
        batch_op.drop_index(batch_op.f("ix_scheduled_procedure_step_order_id"))
        batch_op.drop_index(batch_op.f("ix_scheduled_procedure_step_modality"))

    op.drop_table("scheduled_procedure_step")
    with op.batch_alter_table("imaging_order_view", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_imaging_order_view_order_id"))

    op.drop_table("imaging_order_view")
    with op.batch_alter_table("imaging_order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_imaging_order_visit_id"))
        batch_op.drop_index(batch_op.f("ix_imaging_order_status"))
        batch_op.drop_index(batch_op.f("ix_imaging_order_station_id"))
        batch_op.drop_index(batch_op.f("ix_imaging_order_requesting_clinician_id"))
        batch_op.drop_index(batch_op.f("ix_imaging_order_horse_id"))

    op.drop_table("imaging_order")
    with op.batch_alter_table("imaging_procedure_view", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_imaging_procedure_view_procedure_id"))

    op.drop_table("imaging_procedure_view")
    op.drop_table("imaging_procedure")
    op.drop_table("dicom_remote_ae")
