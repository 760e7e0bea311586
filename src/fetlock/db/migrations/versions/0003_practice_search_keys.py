"""practice: folded search keys on clients and horses

Revision ID: 0003_practice_search
Revises: 0001
Create Date: 2026-12-04 16:24:18.972153

Adds ``search_key`` (names lower-cased, accents removed) to ``client`` and
``horse`` and fills it for existing rows, so searches are accent-insensitive
with a plain LIKE on every database.
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_practice_search"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_UNDECOMPOSED = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
)


def _fold(text: str) -> str:
    # Frozen copy of fetlock.practice.models.fold as of this revision.
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().translate(_UNDECOMPOSED).split())[:400]


def _backfill(table: str, columns: Sequence[str]) -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(f"SELECT id, {', '.join(columns)} FROM {table}")
    ).fetchall()
    for row in rows:
        key = _fold(" ".join(value for value in row[1:] if value))
        bind.execute(
            sa.text(f"UPDATE {table} SET search_key = :key WHERE id = :id"),
            {"key": key, "id": row[0]},
        )


def upgrade() -> None:
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "search_key", sa.String(length=400), nullable=False, server_default=""
            )
        )
        batch_op.create_index(
            batch_op.f("ix_client_search_key"), ["search_key"], unique=False
        )

    with op.batch_alter_table("horse", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "search_key", sa.String(length=400), nullable=False, server_default=""
            )
        )
        batch_op.create_index(
            batch_op.f("ix_horse_search_key"), ["search_key"], unique=False
        )

    _backfill("client", ["given_name", "family_name", "organisation_name"])
    _backfill("horse", ["barn_name", "registered_name"])


def downgrade() -> None:
    with op.batch_alter_table("horse", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_horse_search_key"))
        batch_op.drop_column("search_key")

    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_client_search_key"))
        batch_op.drop_column("search_key")
