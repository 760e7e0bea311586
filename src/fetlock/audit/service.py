"""Record audit events on a SHA-256 hash chain and verify the chain."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fetlock.audit.models import AuditEvent, AuditHead
from fetlock.db.base import utcnow

# The hash that the first event of a chain follows.
GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who caused an event: a user, or a system component such as a DICOM peer."""

    name: str
    user_id: int | None = None
    source_address: str | None = None
    source_ae_title: str | None = None


SYSTEM = Actor(name="system")


def _event_digest(prev_hash: str, fields: Mapping[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def _hashed_fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": event.occurred_at.astimezone(dt.UTC).isoformat(),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "horse_id": event.horse_id,
        "source_address": event.source_address,
        "source_ae_title": event.source_ae_title,
        "detail": event.detail,
    }


def _locked_head(db_session: Session) -> AuditHead:
    """Return the chain head row, locked, creating it on the first event.

    Two first events may race to create the row; the loser's insert fails
    inside a savepoint and it then waits for the winner's row like any writer.
    """
    query = select(AuditHead).where(AuditHead.id == 1).with_for_update()
    head = db_session.execute(query).scalar_one_or_none()
    if head is not None:
        return head
    try:
        with db_session.begin_nested():
            db_session.add(AuditHead(id=1, last_seq=0, last_hash=GENESIS_HASH))
    except IntegrityError:
        pass
    return db_session.execute(query).scalar_one()


def record(
    db_session: Session,
    actor: Actor,
    action: str,
    object_type: str,
    object_id: object,
    *,
    horse_id: int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append an audit event in the caller's transaction.

    The chain head row is locked until the transaction ends, so concurrent
    writers on PostgreSQL queue behind each other. SQLite serialises writers by
    starting every transaction with BEGIN IMMEDIATE.
    """
    head = _locked_head(db_session)

    # Microsecond precision survives both databases unchanged.
    event = AuditEvent(
        seq=head.last_seq + 1,
        occurred_at=utcnow(),
        actor_id=actor.user_id,
        actor_name=actor.name,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        horse_id=horse_id,
        source_address=actor.source_address,
        source_ae_title=actor.source_ae_title,
        detail=json.dumps(dict(detail or {}), sort_keys=True, default=str),
        prev_hash=head.last_hash,
        hash="",
    )
    event.hash = _event_digest(event.prev_hash, _hashed_fields(event))
    db_session.add(event)
    head.last_seq = event.seq
    head.last_hash = event.hash
    db_session.flush()
    return event


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain check: ``ok``, the events checked, the first problem."""

    ok: bool
    checked: int
    problem: str | None = None
    seq: int | None = None


def _iter_events(db_session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = (
            db_session.execute(
                select(AuditEvent)
                .where(AuditEvent.seq > last)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(db_session: Session) -> VerifyResult:
    """Check every event's hash and link; name the first broken or missing row."""
    expected_seq = 1
    prev_hash = GENESIS_HASH
    checked = 0
    for event in _iter_events(db_session):
        if event.seq != expected_seq:
            return VerifyResult(
                False,
                checked,
                f"audit event {expected_seq} is missing (next present is "
                f"{event.seq}); rows were deleted",
                expected_seq,
            )
        if event.prev_hash != prev_hash:
            return VerifyResult(
                False,
                checked,
                f"audit event {event.seq} does not follow event {event.seq - 1}: "
                "its previous-hash link is broken",
                event.seq,
            )
        if _event_digest(prev_hash, _hashed_fields(event)) != event.hash:
            return VerifyResult(
                False,
                checked,
                f"audit event {event.seq} was changed after it was written: "
                "its hash does not match its contents",
                event.seq,
            )
        prev_hash = event.hash
        expected_seq += 1
        checked += 1

    head = db_session.get(AuditHead, 1)
    if head is not None and head.last_seq != checked:
        return VerifyResult(
            False,
            checked,
            f"the chain head records {head.last_seq} events but {checked} are "
            f"present; event {checked + 1} onwards was deleted",
            checked + 1,
        )
    if head is not None and head.last_hash != prev_hash:
        return VerifyResult(
            False,
            checked,
            f"the last audit event {checked} does not match the chain head",
            checked,
        )
    return VerifyResult(True, checked)


def events_for_horse(
    db_session: Session, horse_id: int, *, limit: int = 200
) -> list[AuditEvent]:
    """Return the newest audit events about one horse, newest first."""
    return list(
        db_session.execute(
            select(AuditEvent)
            .where(AuditEvent.horse_id == horse_id)
            .order_by(AuditEvent.seq.desc())
            .limit(limit)
        ).scalars()
    )


def count_events(db_session: Session) -> int:
    return db_session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
