"""Named job functions, registered in one place.

A job function takes a ``JobContext`` and keyword ids::

    @job("thumbnail")
    def make_thumbnail(ctx: JobContext, *, study_id: int) -> None: ...

It runs in its own transaction (``ctx.db_session``), committed together with
the removal of its job row, so a job that succeeded is never run again. It
must be idempotent: after a crash between its side effects outside the
database (a file written) and the commit, it runs again.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.storage import BlobStore

# Modules whose import registers job functions; the worker imports them all.
JOB_MODULES = ("fetlock.imaging.jobs", "fetlock.reporting.jobs")

# Default retry policy: the n-th failure waits BACKOFF_BASE_S * 2**(n-1)
# seconds, at most BACKOFF_MAX_S; after MAX_ATTEMPTS failures the job is
# parked for staff to see.
MAX_ATTEMPTS = 6
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 600.0


@dataclass(frozen=True)
class JobContext:
    """The arguments a job function receives besides its ids.

    ``db_session`` is the transaction committed with the job's removal; it
    begins at its first statement. On SQLite that takes the database's write
    lock, so a job doing slow work outside the database (rendering) reads
    what it needs through a short ``database.session()`` first and touches
    ``db_session`` only to write its result.
    """

    db_session: Session
    database: Database
    settings: Settings
    blobs: BlobStore
    job_id: int
    attempt: int
    # True once the worker is asked to stop: a long job may put itself back in
    # the queue and return, so that Fetlock stops without waiting for it.
    stopping: Callable[[], bool] = lambda: False


JobFunction = Callable[..., None]


@dataclass(frozen=True)
class JobSpec:
    name: str
    function: JobFunction
    max_attempts: int
    lease_s: float


_REGISTRY: dict[str, JobSpec] = {}


def job(
    name: str, *, max_attempts: int = MAX_ATTEMPTS, lease_s: float = 300.0
) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated function as the job called ``name``.

    ``lease_s`` bounds one run: a worker that has not finished by then is
    presumed dead and another worker may take the job again.
    """

    def register(function: JobFunction) -> JobFunction:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.function is not function:
            raise ValueError(
                f"job name {name!r} is already registered by "
                f"{existing.function.__module__}.{existing.function.__qualname__}; "
                "pick another name"
            )
        _REGISTRY[name] = JobSpec(name, function, max_attempts, lease_s)
        return function

    return register


def load_job_modules(modules: tuple[str, ...] = JOB_MODULES) -> None:
    for module_name in modules:
        importlib.import_module(module_name)


def get_spec(name: str) -> JobSpec | None:
    return _REGISTRY.get(name)


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


def backoff_seconds(failures: int) -> float:
    """Delay before the next attempt after ``failures`` failed ones."""
    return float(min(BACKOFF_BASE_S * 2 ** max(failures - 1, 0), BACKOFF_MAX_S))


def describe_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(args.items()))
