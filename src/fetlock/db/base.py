"""Declarative base and column types shared by every domain's models."""

from __future__ import annotations

import datetime as dt
import zlib
from typing import Any

from sqlalchemy import DateTime, MetaData, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so that Alembic migrations name the same things on
# SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    """Return the current time, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no time zone type, so values are normalised to UTC before
    storing and tagged as UTC when loaded. Naive values are rejected: they are
    the usual source of off-by-one-hour bugs.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} cannot be stored; "
                "attach a time zone (for example datetime.UTC)"
            )
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# Advisory lock key of reference-data seeding on PostgreSQL.
SEED_LOCK_KEY = zlib.crc32(b"fetlock.seed")


def lock_for_seeding(db_session: Session) -> None:
    """Serialise the transactions that seed reference data.

    Seeding checks that a table is empty, then fills it. On PostgreSQL two
    processes starting on a new database could both see it empty and one
    would fail on a unique key, so the check runs under a transaction-level
    advisory lock. One lock serves every kind of reference data: with one
    lock per kind, two transactions seeding two kinds in opposite orders
    deadlocked. SQLite transactions here begin with BEGIN IMMEDIATE and are
    serialised already.

    NOTE: a transaction that wrote an audit event before it seeds holds the
    audit chain's row lock, and can still deadlock with another seeder. So
    ``seed_reference_data`` runs first thing at start-up, and transactions
    at run time find the data present and never seed.
    """
    if db_session.get_bind().dialect.name == "postgresql":
        db_session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEED_LOCK_KEY}
        )
