"""The audit hash chain: recording, verification and detection of tampering."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from fetlock.audit import service as audit
from fetlock.audit.models import AuditEvent
from fetlock.db.session import Database

ACTOR = audit.Actor(name="dr-test", user_id=7, source_address="127.0.0.1")


@pytest.fixture
def five_events(database: Database) -> None:
    """Events 1-5; events 2 and 4 concern horse 11, event 3 horse 12."""
    with database.session() as session:
        audit.record(session, ACTOR, "login", "user", 7)
        audit.record(session, ACTOR, "chart.view", "horse", 11, horse_id=11)
        audit.record(
            session, ACTOR, "note.sign", "soap_note", 3, horse_id=12, detail={"a": 1}
        )
        audit.record(session, ACTOR, "chart.view", "horse", 11, horse_id=11)
        audit.record(session, ACTOR, "logout", "user", 7)


def _verify(database: Database) -> audit.VerifyResult:
    with database.session() as session:
        return audit.verify(session)


def _sql(database: Database, statement: str, **params: object) -> None:
    with database.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_intact_chain_verifies(database: Database, five_events: None) -> None:
    result = _verify(database)
    assert result.ok
    assert result.checked == 5
    assert result.problem is None


def test_empty_chain_verifies(database: Database) -> None:
    assert _verify(database) == audit.VerifyResult(True, 0)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("action", "chart.print"),
        ("actor_name", "someone-else"),
        ("horse_id", 99),
        ("detail", '{"a": 2}'),
        ("source_address", "10.0.0.9"),
    ],
)
def test_changed_field_is_named_by_its_row(
    database: Database, five_events: None, column: str, value: object
) -> None:
    _sql(
        database, f"UPDATE audit_event SET {column} = :value WHERE seq = 3", value=value
    )
    result = _verify(database)
    assert not result.ok
    assert result.seq == 3
    assert result.problem is not None
    assert "audit event 3 was changed" in result.problem


def test_changed_row_with_recomputed_hash_breaks_the_next_link(
    database: Database, five_events: None
) -> None:
    # Someone who edits a row and recomputes its own hash still breaks the
    # link from the event that follows it.
    with database.session() as session:
        event = session.get(AuditEvent, 2)
        assert event is not None
        event.action = "chart.print"
        event.hash = audit._event_digest(event.prev_hash, audit._hashed_fields(event))
    result = _verify(database)
    assert not result.ok
    assert result.seq == 3
    assert result.problem is not None
    assert "does not follow event 2" in result.problem


def test_deleted_middle_row_is_named(database: Database, five_events: None) -> None:
    _sql(database, "DELETE FROM audit_event WHERE seq = 3")
    result = _verify(database)
    assert not result.ok
    assert result.seq == 3
    assert result.problem is not None
    assert "audit event 3 is missing" in result.problem
    assert "next present is 4" in result.problem


def test_deleted_last_row_is_named(database: Database, five_events: None) -> None:
    _sql(database, "DELETE FROM audit_event WHERE seq = 5")
    result = _verify(database)
    assert not result.ok
    assert result.seq == 5
    assert result.problem is not None
    assert "records 5 events but 4 are present" in result.problem


def test_deleted_first_row_is_named(database: Database, five_events: None) -> None:
    _sql(database, "DELETE FROM audit_event WHERE seq = 1")
    result = _verify(database)
    assert not result.ok
    assert result.seq == 1


def test_new_events_continue_the_chain(database: Database, five_events: None) -> None:
    with database.session() as session:
        event = audit.record(session, ACTOR, "login", "user", 7)
        assert event.seq == 6
        previous = session.get(AuditEvent, 5)
        assert previous is not None
        assert event.prev_hash == previous.hash
    assert _verify(database).checked == 6


def test_rolled_back_event_leaves_no_gap(database: Database, five_events: None) -> None:
    with pytest.raises(RuntimeError), database.session() as session:
        audit.record(session, ACTOR, "horse.create", "horse", 13, horse_id=13)
        raise RuntimeError("the change that this event described failed")
    with database.session() as session:
        assert audit.record(session, ACTOR, "login", "user", 7).seq == 6
    assert _verify(database).ok


def test_concurrent_writers_keep_the_chain_gapless(database: Database) -> None:
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            for n in range(5):
                with database.session() as session:
                    audit.record(session, audit.Actor(name=name), "login", "user", n)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    result = _verify(database)
    assert result.ok and result.checked == 10


def test_events_for_horse_newest_first(database: Database, five_events: None) -> None:
    with database.session() as session:
        events = audit.events_for_horse(session, 11)
        assert [(e.seq, e.action) for e in events] == [
            (4, "chart.view"),
            (2, "chart.view"),
        ]
        assert audit.events_for_horse(session, 12, limit=5)[0].action == "note.sign"
        assert audit.events_for_horse(session, 404) == []
