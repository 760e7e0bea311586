"""ingest: studies, series, instances, quarantine and the job table

Revision ID: 0003
Revises: 0001
Depends on: 0002 (imaging orders, which studies link to)
Create Date: 2026-12-04 16:25:52.417851
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import fetlock.db.base

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0002",)


def upgrade() -> None:
    op.create_table(
        "imaging_quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("blob_key", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source_ae_title", sa.String(length=16), nullable=True),
        sa.Column(
            "received_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_quarantine")),
    )
    with op.batch_alter_table("imaging_quarantine", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_imaging_quarantine_sop_instance_uid"),
            ["sop_instance_uid"],
            unique=False,
        )

    op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("args_json", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "run_after", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "lease_until", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_dedupe_key"), ["dedupe_key"], unique=False
        )
        batch_op.create_index(
            "ix_job_state_run_after", ["state", "run_after"], unique=False
        )

    op.create_table(
        "imaging_study",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("horse_id", sa.Integer(), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("dicom_patient_id", sa.String(length=64), nullable=True),
        sa.Column("dicom_patient_name", sa.String(length=200), nullable=True),
        sa.Column("dicom_accession_number", sa.String(length=64), nullable=True),
        sa.Column("study_date", sa.String(length=8), nullable=True),
        sa.Column("study_time", sa.String(length=16), nullable=True),
        sa.Column("study_description", sa.String(length=64), nullable=True),
        sa.Column("study_id", sa.String(length=16), nullable=True),
        sa.Column("institution_name", sa.String(length=64), nullable=True),
        sa.Column("source_ae_title", sa.String(length=16), nullable=True),
        sa.Column("link_method", sa.String(length=32), nullable=True),
        sa.Column(
            "linked_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("linked_by_id", sa.Integer(), nullable=True),
        sa.Column("unmatched_reason", sa.Text(), nullable=True),
        sa.Column("thumbnail_blob_key", sa.String(length=255), nullable=True),
        sa.Column("thumbnail_sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column(
            "received_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "last_received_at",
            fetlock.db.base.UTCDateTime(timezone=True),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["horse_id"], ["horse.id"], name=op.f("fk_imaging_study_horse_id_horse")
        ),
        sa.ForeignKeyConstraint(
            ["linked_by_id"],
            ["user_account.id"],
            name=op.f("fk_imaging_study_linked_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["imaging_order.id"],
            name=op.f("fk_imaging_study_order_id_imaging_order"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_study")),
        sa.UniqueConstraint(
            "study_instance_uid", name=op.f("uq_imaging_study_study_instance_uid")
        ),
    )
    with op.batch_alter_table("imaging_study", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_imaging_study_dicom_accession_number"),
            ["dicom_accession_number"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_imaging_study_horse_id"), ["horse_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_imaging_study_order_id"), ["order_id"], unique=False
        )

    op.create_table(
        "imaging_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("body_part_examined", sa.String(length=16), nullable=True),
        sa.Column("laterality", sa.String(length=16), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.String(length=64), nullable=True),
        sa.Column("protocol_name", sa.String(length=64), nullable=True),
        sa.Column("station_name", sa.String(length=16), nullable=True),
        sa.Column("manufacturer", sa.String(length=64), nullable=True),
        sa.Column(
            "received_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["imaging_study.id"],
            name=op.f("fk_imaging_series_study_id_imaging_study"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_series")),
        sa.UniqueConstraint(
            "series_instance_uid", name=op.f("uq_imaging_series_series_instance_uid")
        ),
    )
    with op.batch_alter_table("imaging_series", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_imaging_series_study_id"), ["study_id"], unique=False
        )

    op.create_table(
        "imaging_instance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(length=64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("view_position", sa.String(length=16), nullable=True),
        sa.Column("image_laterality", sa.String(length=16), nullable=True),
        sa.Column("view_label", sa.String(length=64), nullable=True),
        sa.Column("number_of_frames", sa.Integer(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("pixel_spacing", sa.String(length=64), nullable=True),
        sa.Column("imager_pixel_spacing", sa.String(length=64), nullable=True),
        sa.Column("photometric_interpretation", sa.String(length=16), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=255), nullable=False),
        sa.Column("source_ae_title", sa.String(length=16), nullable=True),
        sa.Column(
            "received_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["series_id"],
            ["imaging_series.id"],
            name=op.f("fk_imaging_instance_series_id_imaging_series"),
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["imaging_study.id"],
            name=op.f("fk_imaging_instance_study_id_imaging_study"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging_instance")),
        sa.UniqueConstraint(
            "sop_instance_uid", name=op.f("uq_imaging_instance_sop_instance_uid")
        ),
    )
    with op.batch_alter_table("imaging_instance", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_imaging_instance_series_id"), ["series_id"], unique=False
        )
        batch_op.create_index(
            "ix_imaging_instance_study_received", ["study_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("imaging_instance", schema=None) as batch_op:
        batch_op.drop_index("ix_imaging_instance_study_received")
        batch_op.drop_index(batch_op.f("ix_imaging_instance_series_id"))

    op.drop_table("imaging_instance")
    with op.batch_alter_table("imaging_series", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_imaging_series_study_id"))

    op.drop_table("imaging_series")
    with op.batch_alter_table("imaging_study", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_imaging_study_order_id"))
        batch_op.drop_index(batch_op.f("ix_imaging_study_horse_id"))
        batch_op.drop_index(batch_op.f("ix_imaging_study_dicom_accession_number"))

    op.drop_table("imaging_study")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_state_run_after")
        batch_op.drop_index(batch_op.f("ix_job_dedupe_key"))

    op.drop_table("job")
    with op.batch_alter_table("imaging_quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_imaging_quarantine_sop_instance_uid"))

    op.drop_table("imaging_quarantine")
