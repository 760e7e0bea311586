"""The durable job table: work that must follow a committed change.

A job row is written in the same transaction as the change that needs it, so
the job exists exactly when the change does. Workers claim due rows, run them
and delete them on success. A failed job is retried with backoff, and a job
that keeps failing is parked (kept and shown) rather than dropped.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fetlock.db.base import Base, UTCDateTime, utcnow


class JobState(enum.StrEnum):
    """``pending`` -> ``running`` -> deleted on success, or back to ``pending``
    with a later ``run_after`` on failure, or ``parked`` after the last attempt.
    """

    PENDING = "pending"
    RUNNING = "running"
    PARKED = "parked"


class Job(Base):
    """One named job with its arguments (ids only), as JSON.

    ``dedupe_key`` is the name and arguments in canonical form; a pending job
    with the same key absorbs a second enqueue. A running job holds a lease
    until ``lease_until``; a worker that died leaves the lease to expire and
    another worker takes the job again.
    """

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_state_run_after", "state", "run_after"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    args_json: Mapped[str] = mapped_column(Text, default="{}")
    dedupe_key: Mapped[str] = mapped_column(String(255), index=True)
    state: Mapped[str] = mapped_column(String(16), default=JobState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
