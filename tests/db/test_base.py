"""Shared column types and identifier counters."""

import datetime as dt

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from fetlock.db.base import UTCDateTime
from fetlock.db.counters import next_value
from fetlock.db.session import Database


@pytest.fixture
def stamp_table(database: Database):  # type: ignore[no-untyped-def]
    metadata = MetaData()
    table = Table(
        "scratch_stamp",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("at", UTCDateTime),
    )
    metadata.create_all(database.engine)
    yield table
    metadata.drop_all(database.engine)


def test_utc_datetime_round_trips_as_utc(database: Database, stamp_table) -> None:  # type: ignore[no-untyped-def]
    paris = dt.timezone(dt.timedelta(hours=1))
    value = dt.datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=paris)
    with database.engine.begin() as conn:
        conn.execute(insert(stamp_table).values(id=1, at=value))
    with database.engine.connect() as conn:
        loaded = conn.execute(select(stamp_table.c.at)).scalar_one()
    assert loaded.tzinfo is not None
    assert loaded.utcoffset() == dt.timedelta(0)
    assert loaded == value


def test_utc_datetime_rejects_naive(database: Database, stamp_table) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StatementError, match="naive datetime"):
        with database.engine.begin() as conn:
            conn.execute(
                insert(stamp_table).values(id=2, at=dt.datetime(2026, 3, 1, 9, 30))
            )


def test_counter_allocates_increasing_values(db_session: Session) -> None:
    values = [next_value(db_session, "test-counter", start=100) for _ in range(3)]
    assert values == [100, 101, 102]
    assert next_value(db_session, "other-counter") == 1


def test_counter_rollback_does_not_skip(database: Database) -> None:
    with database.session() as session:
        assert next_value(session, "rolled") == 1
    session = database.session_factory()
    try:
        assert next_value(session, "rolled") == 2
        session.rollback()
    finally:
        session.close()
    with database.session() as session:
        assert next_value(session, "rolled") == 2
