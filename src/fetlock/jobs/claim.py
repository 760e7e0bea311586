"""Claiming due jobs: the one place where job SQL differs by database.

DIALECT-SPECIFIC: on PostgreSQL the claim query is ``SELECT ... FOR UPDATE
SKIP LOCKED``, so any number of workers on any number of nodes each take a
different row without waiting for one another. SQLite has no row locks;
SQLAlchemy leaves the clause out there, and every Fetlock transaction on
SQLite starts with BEGIN IMMEDIATE (``fetlock.db.session``), which serialises
claims, and only one worker runs per SQLite database anyway.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fetlock.jobs.models import Job, JobState


def claim_due(
    db_session: Session, worker_id: str, now: dt.datetime, lease_s: float
) -> Job | None:
    """Mark the oldest due pending job as running for ``worker_id``."""
    job = db_session.execute(
        select(Job)
        .where(Job.state == JobState.PENDING, Job.run_after <= now)
        .order_by(Job.run_after, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()
    if job is None:
        return None
    job.state = JobState.RUNNING
    job.claimed_by = worker_id
    job.attempts += 1
    job.lease_until = now + dt.timedelta(seconds=lease_s)
    job.updated_at = now
    db_session.flush()
    return job


def release_expired(db_session: Session, now: dt.datetime) -> int:
    """Return running jobs whose lease ran out to the queue; return how many.

    Such a job's worker died or hung; its attempt still counts.
    """
    result = db_session.execute(
        update(Job)
        .where(Job.state == JobState.RUNNING, Job.lease_until < now)
        .values(state=JobState.PENDING, lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def running_claimants(db_session: Session) -> list[str]:
    """Worker ids that hold running jobs."""
    return [
        claimed_by
        for claimed_by in db_session.execute(
            select(Job.claimed_by).where(Job.state == JobState.RUNNING).distinct()
        ).scalars()
        if claimed_by
    ]


def release_claimed_by(
    db_session: Session, worker_ids: list[str], now: dt.datetime
) -> int:
    """Return the running jobs of workers known to be dead to the queue."""
    if not worker_ids:
        return 0
    result = db_session.execute(
        update(Job)
        .where(Job.state == JobState.RUNNING, Job.claimed_by.in_(worker_ids))
        .values(state=JobState.PENDING, lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def release_all_running(db_session: Session, now: dt.datetime) -> int:
    """Return every running job to the queue (single-worker SQLite start-up)."""
    result = db_session.execute(
        update(Job)
        .where(Job.state == JobState.RUNNING)
        .values(state=JobState.PENDING, lease_until=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
