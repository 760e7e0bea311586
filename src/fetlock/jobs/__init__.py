"""Durable background jobs: rows in the main database, run by workers.

``enqueue(db_session, name, **ids)`` adds a job in the caller's transaction;
``@job(name)`` registers the function that runs it (modules listed in
``registry.JOB_MODULES``); ``Worker`` runs them. See ``models`` for the life
cycle of a job row.
"""

from fetlock.jobs.registry import JobContext, job
from fetlock.jobs.service import enqueue

__all__ = ["JobContext", "enqueue", "job"]
