"""foundation: accounts, audit, practice

Revision ID: 0001
Revises:
Create Date: 2026-12-04 16:15:38.867054
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import fetlock.db.base

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column(
            "occurred_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("horse_id", sa.Integer(), nullable=True),
        sa.Column("source_address", sa.String(length=64), nullable=True),
        sa.Column("source_ae_title", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_event_action"), ["action"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_event_horse_id"), ["horse_id"], unique=False
        )

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "client",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=32), nullable=True),
        sa.Column("given_name", sa.String(length=100), nullable=True),
        sa.Column("family_name", sa.String(length=100), nullable=True),
        sa.Column("organisation_name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=200), nullable=True),
        sa.Column("phone", sa.String(length=50), nullable=True),
        sa.Column("address_line1", sa.String(length=200), nullable=True),
        sa.Column("address_line2", sa.String(length=200), nullable=True),
        sa.Column("town", sa.String(length=100), nullable=True),
        sa.Column("county", sa.String(length=100), nullable=True),
        sa.Column("postcode", sa.String(length=20), nullable=True),
        sa.Column("country", sa.String(length=100), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client")),
    )
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_client_family_name"), ["family_name"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_client_organisation_name"),
            ["organisation_name"],
            unique=False,
        )

    op.create_table(
        "counter",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("next_value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counter")),
    )
    op.create_table(
        "horse",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("barn_name", sa.String(length=100), nullable=False),
        sa.Column("registered_name", sa.String(length=200), nullable=True),
        sa.Column("species", sa.String(length=16), nullable=False),
        sa.Column("breed", sa.String(length=100), nullable=True),
        sa.Column("sex", sa.String(length=16), nullable=True),
        sa.Column("colour", sa.String(length=64), nullable=True),
        sa.Column("markings", sa.Text(), nullable=True),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("foaling_year", sa.Integer(), nullable=True),
        sa.Column("microchip", sa.String(length=32), nullable=True),
        sa.Column("ueln", sa.String(length=32), nullable=True),
        sa.Column("passport_number", sa.String(length=64), nullable=True),
        sa.Column("registry_name", sa.String(length=100), nullable=True),
        sa.Column("registry_number", sa.String(length=64), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_horse")),
        sa.UniqueConstraint("patient_id", name=op.f("uq_horse_patient_id")),
    )
    with op.batch_alter_table("horse", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_horse_barn_name"), ["barn_name"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_horse_microchip"), ["microchip"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_horse_registered_name"), ["registered_name"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_horse_ueln"), ["ueln"], unique=False)

    op.create_table(
        "login_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("source_address", sa.String(length=64), nullable=True),
        sa.Column(
            "occurred_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failure")),
    )
    with op.batch_alter_table("login_failure", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_failure_username"), ["username"], unique=False
        )

    op.create_table(
        "user_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_account")),
        sa.UniqueConstraint("username", name=op.f("uq_user_account_username")),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "revoked_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_api_token_user_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_token_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "login_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("source_address", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_login_session_user_id_user_account"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_login_session")),
    )
    with op.batch_alter_table("login_session", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_session_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "ownership",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("horse_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("share", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["client.id"], name=op.f("fk_ownership_client_id_client")
        ),
        sa.ForeignKeyConstraint(
            ["horse_id"], ["horse.id"], name=op.f("fk_ownership_horse_id_horse")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ownership")),
    )
    with op.batch_alter_table("ownership", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ownership_client_id"), ["client_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ownership_horse_id"), ["horse_id"], unique=False
        )

    op.create_table(
        "visit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("horse_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "started_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "discharged_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("location", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attending_vet_id", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["attending_vet_id"],
            ["user_account.id"],
            name=op.f("fk_visit_attending_vet_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["horse_id"], ["horse.id"], name=op.f("fk_visit_horse_id_horse")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit")),
    )
    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_visit_attending_vet_id"), ["attending_vet_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_visit_horse_id"), ["horse_id"], unique=False
        )

    op.create_table(
        "soap_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("addendum_to_id", sa.Integer(), nullable=True),
        sa.Column("subjective", sa.Text(), nullable=False),
        sa.Column("objective", sa.Text(), nullable=False),
        sa.Column("assessment", sa.Text(), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "signed_at", fetlock.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("signed_by_id", sa.Integer(), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["addendum_to_id"],
            ["soap_note.id"],
            name=op.f("fk_soap_note_addendum_to_id_soap_note"),
        ),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["user_account.id"],
            name=op.f("fk_soap_note_author_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["signed_by_id"],
            ["user_account.id"],
            name=op.f("fk_soap_note_signed_by_id_user_account"),
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visit.id"], name=op.f("fk_soap_note_visit_id_visit")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_soap_note")),
    )
    with op.batch_alter_table("soap_note", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_soap_note_visit_id"), ["visit_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("soap_note", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_soap_note_visit_id"))

    op.drop_table("soap_note")
    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visit_horse_id"))
        batch_op.drop_index(batch_op.f("ix_visit_attending_vet_id"))

    op.drop_table("visit")
    with op.batch_alter_table("ownership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ownership_horse_id"))
        batch_op.drop_index(batch_op.f("ix_ownership_client_id"))

    op.drop_table("ownership")
    with op.batch_alter_table("login_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_session_user_id"))

    op.drop_table("login_session")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_token_user_id"))

    op.drop_table("api_token")
    op.drop_table("user_account")
    with op.batch_alter_table("login_failure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_failure_username"))

    op.drop_table("login_failure")
    with op.batch_alter_table("horse", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_horse_ueln"))
        batch_op.drop_index(batch_op.f("ix_horse_registered_name"))
        batch_op.drop_index(batch_op.f("ix_horse_microchip"))
        batch_op.drop_index(batch_op.f("ix_horse_barn_name"))

    op.drop_table("horse")
    op.drop_table("counter")
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_client_organisation_name"))
        batch_op.drop_index(batch_op.f("ix_client_family_name"))

    op.drop_table("client")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_horse_id"))
        batch_op.drop_index(batch_op.f("ix_audit_event_action"))

    op.drop_table("audit_event")
