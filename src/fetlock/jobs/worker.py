"""The job worker: claims due jobs and runs them, one at a time, in a thread.

``fetlock serve`` runs one worker beside the web app. On SQLite it is the
only worker, so at start it returns every job left ``running`` by a crash to
the queue. On PostgreSQL other workers may be alive: a starting worker takes
back the jobs of workers on its own host whose process is gone, and any
worker takes back jobs whose lease ran out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid

from sqlalchemy import delete

from fetlock.config import Settings
from fetlock.db.base import utcnow
from fetlock.db.session import Database
from fetlock.jobs import claim, codec_process, foreground
from fetlock.jobs.models import Job, JobState
from fetlock.jobs.registry import (
    JobContext,
    backoff_seconds,
    describe_args,
    get_spec,
    load_job_modules,
)
from fetlock.jobs.service import wakeup
from fetlock.storage import BlobStore, get_blob_store

logger = logging.getLogger(__name__)

# Lease used for the claim itself; the job's own lease replaces it at once.
DEFAULT_LEASE_S = 300.0
# How often an idle worker looks for jobs enqueued by other processes, and for
# delayed jobs that became due.
POLL_INTERVAL_S = 0.5
# Pause after a database error before the worker tries again.
ERROR_PAUSE_S = 5.0
# Maximum length of the error text kept on a job row.
MAX_ERROR_CHARS = 4000


class Worker:
    """Runs durable jobs from the database until stopped."""

    name = "job worker"

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        blobs: BlobStore | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.database = database
        self.settings = settings
        self.blobs = blobs or get_blob_store(settings)
        self.poll_interval_s = poll_interval_s
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        load_job_modules()

    # Life cycle.

    def start(self) -> None:
        self.recover()
        codec_process.start(enabled=self.settings.codec_process)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name="fetlock-job-worker", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning(
                    "job worker %s still running a job after %.0f s; leaving it",
                    self.worker_id,
                    timeout_s,
                )
            self._thread = None

    def recover(self) -> int:
        """Take back jobs a crashed worker left running; return how many."""
        with self.database.session() as db_session:
            now = utcnow()
            if self.database.is_sqlite:
                released = claim.release_all_running(db_session, now)
            else:
                dead = [
                    worker_id
                    for worker_id in claim.running_claimants(db_session)
                    if _dead_on_this_host(worker_id)
                ]
                released = claim.release_claimed_by(db_session, dead, now)
                released += claim.release_expired(db_session, now)
        if released:
            logger.info("returned %d interrupted jobs to the queue", released)
        return released

    def _loop(self) -> None:
        logger.info("job worker %s started", self.worker_id)
        last_sweep = time.monotonic()
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_sweep > DEFAULT_LEASE_S / 10:
                    with self.database.session() as db_session:
                        claim.release_expired(db_session, utcnow())
                    last_sweep = time.monotonic()
                ran = self.run_one(delay_for_foreground=True)
            except Exception:
                logger.exception(
                    "job worker %s could not reach the database; retrying in %.0f s",
                    self.worker_id,
                    ERROR_PAUSE_S,
                )
                self._stop.wait(ERROR_PAUSE_S)
                continue
            if not ran:
                wakeup.wait(self.poll_interval_s)
                wakeup.clear()
        logger.info("job worker %s stopped", self.worker_id)

    def _delay_for_foreground(self, due_at: dt.datetime) -> None:
        """Delay a claimed job while this process is storing received images.

        The delay ends once storing has been quiet for ``QUIET_S``, or once
        the job is ``MAX_DEFER_S`` past its due time. A backlog that built up
        during a long transfer is overdue, so it then runs without delays.
        """
        overdue_s = (utcnow() - due_at).total_seconds()
        deadline = time.monotonic() + foreground.MAX_DEFER_S - overdue_s
        while not self._stop.is_set():
            remaining = foreground.QUIET_S - foreground.seconds_since_foreground_work()
            if remaining <= 0 or time.monotonic() >= deadline:
                return
            self._stop.wait(min(remaining, deadline - time.monotonic()))

    # Running jobs.

    def run_pending(self, max_jobs: int = 10_000) -> int:
        """Run due jobs in the calling thread until none is due; return how many."""
        count = 0
        while count < max_jobs and self.run_one():
            count += 1
        return count

    def run_one(self, *, delay_for_foreground: bool = False) -> bool:
        """Claim and run one due job; False when none is due.

        With ``delay_for_foreground`` (the background loop), the claimed job
        waits while this process is storing received images.
        """
        with self.database.session() as db_session:
            job = claim.claim_due(db_session, self.worker_id, utcnow(), DEFAULT_LEASE_S)
            if job is None:
                return False
            job_id, name, attempt = job.id, job.name, job.attempts
            due_at = job.run_after
            args = json.loads(job.args_json)
            spec = get_spec(name)
            if spec is not None:
                job.lease_until = utcnow() + dt.timedelta(seconds=spec.lease_s)

        if spec is None:
            self._failed(
                job_id,
                f"no job function named {name!r} is registered in this version of "
                "Fetlock; upgrade the worker or retry the job from the jobs page",
                max_attempts=0,
            )
            return True

        if delay_for_foreground:
            self._delay_for_foreground(due_at)
        started = time.monotonic()
        try:
            with self.database.session() as db_session:
                context = JobContext(
                    db_session=db_session,
                    database=self.database,
                    settings=self.settings,
                    blobs=self.blobs,
                    job_id=job_id,
                    attempt=attempt,
                    stopping=self._stop.is_set,
                )
                spec.function(context, **args)
                db_session.execute(
                    delete(Job).where(
                        Job.id == job_id, Job.claimed_by == self.worker_id
                    )
                )
        except Exception as exc:
            logger.warning(
                "job %d %s(%s) failed on attempt %d: %s",
                job_id,
                name,
                describe_args(args),
                attempt,
                exc,
            )
            self._failed(job_id, _error_text(exc), max_attempts=spec.max_attempts)
            return True
        logger.debug(
            "job %d %s(%s) done in %.3f s",
            job_id,
            name,
            describe_args(args),
            time.monotonic() - started,
        )
        return True

    def _failed(self, job_id: int, error: str, *, max_attempts: int) -> None:
        with self.database.session() as db_session:
            job = db_session.get(Job, job_id)
            if job is None or job.claimed_by != self.worker_id:
                return
            now = utcnow()
            job.last_error = error[-MAX_ERROR_CHARS:]
            job.lease_until = None
            job.updated_at = now
            if job.attempts >= max_attempts:
                job.state = JobState.PARKED
                logger.error(
                    "job %d %s parked after %d attempts; see the jobs page",
                    job.id,
                    job.name,
                    job.attempts,
                )
            else:
                job.state = JobState.PENDING
                job.run_after = now + dt.timedelta(
                    seconds=backoff_seconds(job.attempts)
                )


def run_worker(settings: Settings) -> None:
    """Run a worker in the foreground until SIGINT or SIGTERM (``fetlock worker``).

    ``fetlock serve`` already runs one worker. On PostgreSQL more may run, on
    this node or others, and they share the queue. On SQLite a second worker
    would wrongly take back the first one's running jobs at start, so this
    refuses to run there.
    """
    database = Database(settings.effective_database_url)
    if database.is_sqlite:
        database.dispose()
        raise SystemExit(
            "fetlock worker needs PostgreSQL (FETLOCK_DATABASE_URL); on SQLite the "
            "worker inside `fetlock serve` is the only one"
        )
    from fetlock.server import seed_reference_data

    seed_reference_data(database)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    worker = Worker(database, settings)
    worker.start()
    try:
        stop.wait()
    finally:
        worker.stop()
        database.dispose()


def _dead_on_this_host(worker_id: str) -> bool:
    """True if ``worker_id`` names a process on this host that has exited."""
    host, _, rest = worker_id.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another worker of this process, alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
