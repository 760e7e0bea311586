"""Enqueue jobs in the caller's transaction; list, retry and count them."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from fetlock.db.base import utcnow
from fetlock.jobs.models import Job, JobState

# Set after a transaction that enqueued a job commits, so that a worker in
# this process starts at once instead of at its next poll. Other processes
# find the job at their next poll.
wakeup = threading.Event()
_WAKE_FLAG = "fetlock.jobs.wake"


@event.listens_for(Session, "after_commit")
def _wake_after_commit(db_session: Session) -> None:
    if db_session.info.pop(_WAKE_FLAG, False):
        wakeup.set()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(db_session: Session) -> None:
    db_session.info.pop(_WAKE_FLAG, None)


def _canonical_args(ids: dict[str, Any]) -> str:
    for key, value in ids.items():
        if not isinstance(value, int | str) or isinstance(value, bool):
            raise TypeError(
                f"job argument {key}={value!r} is a {type(value).__name__}; jobs "
                "take ids (int or str), never objects, so pass the row's id"
            )
    return json.dumps(ids, sort_keys=True, separators=(",", ":"))


def enqueue(
    db_session: Session,
    name: str,
    *,
    delay_s: float = 0.0,
    **ids: int | str,
) -> Job:
    """Add job ``name`` with ``ids`` to the caller's transaction.

    A pending job with the same name and ids absorbs this call. With
    ``delay_s``, its start moves to ``delay_s`` from now, so that repeated
    enqueues during a burst (images of one study arriving) run it once, after
    the burst. The job becomes visible to workers when the transaction commits.
    """
    args_json = _canonical_args(ids)
    dedupe_key = f"{name}:{args_json}"[:255]
    now = utcnow()
    run_after = now + dt.timedelta(seconds=delay_s)
    existing = db_session.execute(
        select(Job)
        .where(Job.dedupe_key == dedupe_key, Job.state == JobState.PENDING)
        .limit(1)
    ).scalar_one_or_none()
    if existing is not None:
        if delay_s and existing.run_after < run_after:
            existing.run_after = run_after
            existing.updated_at = now
        db_session.info[_WAKE_FLAG] = True
        return existing
    job = Job(
        name=name,
        args_json=args_json,
        dedupe_key=dedupe_key,
        state=JobState.PENDING,
        attempts=0,
        run_after=run_after,
        created_at=now,
        updated_at=now,
    )
    db_session.add(job)
    db_session.flush()
    db_session.info[_WAKE_FLAG] = True
    return job


def parked_jobs(db_session: Session, *, limit: int = 200) -> list[Job]:
    """Jobs that failed every attempt, newest first."""
    return list(
        db_session.execute(
            select(Job)
            .where(Job.state == JobState.PARKED)
            .order_by(Job.updated_at.desc())
            .limit(limit)
        ).scalars()
    )


def count_by_state(db_session: Session) -> dict[str, int]:
    rows = db_session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
    counts = {state.value: 0 for state in JobState}
    counts.update({state: n for state, n in rows})
    return counts


def retry_parked(db_session: Session, job_id: int) -> Job | None:
    """Put a parked job back in the queue with a fresh set of attempts."""
    job = db_session.get(Job, job_id)
    if job is None or job.state != JobState.PARKED:
        return None
    job.state = JobState.PENDING
    job.attempts = 0
    job.run_after = utcnow()
    job.updated_at = job.run_after
    db_session.info[_WAKE_FLAG] = True
    return job
