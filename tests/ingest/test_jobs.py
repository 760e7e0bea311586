"""Durable jobs: written with the change, run once, retried, parked, recovered."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from fetlock.config import Settings
from fetlock.db.base import utcnow
from fetlock.db.session import Database
from fetlock.jobs import JobContext, claim, enqueue, foreground, job
from fetlock.jobs.models import Job, JobState
from fetlock.jobs.registry import backoff_seconds
from fetlock.jobs.worker import Worker
from fetlock.practice.models import Client

# What test jobs did, by job name.
CALLS: list[tuple[str, dict[str, object]]] = []


@job("test.record")
def record_call(ctx: JobContext, *, client_id: int) -> None:
    CALLS.append(("test.record", {"client_id": client_id, "attempt": ctx.attempt}))
    client = ctx.db_session.get(Client, client_id)
    assert client is not None
    client.notes = "touched by a job"


@job("test.fail", max_attempts=3)
def always_fail(ctx: JobContext, *, n: int) -> None:
    CALLS.append(("test.fail", {"n": n}))
    raise RuntimeError(f"the disk for item {n} is unplugged")


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


def _jobs(database: Database) -> list[Job]:
    with database.session() as db_session:
        return list(db_session.execute(select(Job).order_by(Job.id)).scalars())


def _make_client(database: Database) -> int:
    with database.session() as db_session:
        client = Client(kind="person", family_name="Jobtest")
        db_session.add(client)
        db_session.flush()
        return client.id


def test_job_exists_only_if_its_transaction_commits(database: Database) -> None:
    with pytest.raises(RuntimeError), database.session() as db_session:
        enqueue(db_session, "test.record", client_id=1)
        raise RuntimeError("the change that needed the job failed")

    assert _jobs(database) == []


def test_worker_runs_a_job_and_removes_it(database: Database, worker: Worker) -> None:
    client_id = _make_client(database)
    with database.session() as db_session:
        enqueue(db_session, "test.record", client_id=client_id)

    assert worker.run_pending() == 1

    assert CALLS == [("test.record", {"client_id": client_id, "attempt": 1})]
    assert _jobs(database) == []
    with database.session() as db_session:
        client = db_session.get(Client, client_id)
        assert client is not None
        assert client.notes == "touched by a job"


def test_a_pending_job_absorbs_the_same_enqueue(database: Database) -> None:
    with database.session() as db_session:
        first = enqueue(db_session, "test.record", client_id=7)
        second = enqueue(db_session, "test.record", client_id=7)
        other = enqueue(db_session, "test.record", client_id=8)

    assert first.id == second.id
    assert other.id != first.id
    assert len(_jobs(database)) == 2


def test_a_delayed_enqueue_moves_the_start_later(database: Database) -> None:
    with database.session() as db_session:
        first = enqueue(db_session, "test.record", delay_s=5, client_id=7)
        first_start = first.run_after
    with database.session() as db_session:
        enqueue(db_session, "test.record", delay_s=60, client_id=7)

    (row,) = _jobs(database)
    assert row.run_after > first_start + dt.timedelta(seconds=50)


def test_a_delayed_job_waits(database: Database, worker: Worker) -> None:
    with database.session() as db_session:
        enqueue(db_session, "test.record", delay_s=3600, client_id=1)

    assert worker.run_pending() == 0
    assert CALLS == []


def test_failed_job_is_retried_later_with_backoff(
    database: Database, worker: Worker
) -> None:
    with database.session() as db_session:
        enqueue(db_session, "test.fail", n=1)
    before = utcnow()

    assert worker.run_pending() == 1

    (row,) = _jobs(database)
    assert row.state == JobState.PENDING
    assert row.attempts == 1
    assert "the disk for item 1 is unplugged" in (row.last_error or "")
    assert row.run_after >= before + dt.timedelta(seconds=backoff_seconds(1))


def test_job_failing_every_attempt_is_parked_and_shown(
    database: Database, worker: Worker, login_as
) -> None:  # type: ignore[no-untyped-def]
    from fetlock.auth.models import Role

    with database.session() as db_session:
        enqueue(db_session, "test.fail", n=2)
    for _ in range(3):
        with database.session() as db_session:
            for row in db_session.execute(select(Job)).scalars():
                row.run_after = utcnow()
        worker.run_pending()

    (row,) = _jobs(database)
    assert row.state == JobState.PARKED
    assert row.attempts == 3
    assert len(CALLS) == 3

    admin = login_as(Role.ADMIN)
    page = admin.get("/admin/jobs")
    assert page.status_code == 200
    assert "test.fail" in page.text
    assert "the disk for item 2 is unplugged" in page.text
    api = admin.get("/api/v1/jobs").json()
    assert api["counts"]["parked"] == 1
    assert api["parked"][0]["args"] == {"n": 2}


def test_parked_job_can_be_retried_by_an_administrator(
    database: Database, worker: Worker, login_as
) -> None:  # type: ignore[no-untyped-def]
    from fetlock.auth.models import Role

    with database.session() as db_session:
        db_session.add(
            Job(
                name="test.record",
                args_json=json.dumps({"client_id": _make_client(database)}),
                dedupe_key="test.record:x",
                state=JobState.PARKED,
                attempts=6,
                run_after=utcnow(),
            )
        )
    (parked,) = _jobs(database)
    vet = login_as(Role.VETERINARIAN)
    assert vet.post(f"/api/v1/jobs/{parked.id}/retry").status_code == 403

    admin = login_as(Role.ADMIN)
    response = admin.post(f"/api/v1/jobs/{parked.id}/retry")

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "pending"
    assert worker.run_pending() == 1
    assert _jobs(database) == []
    again = admin.post(f"/api/v1/jobs/{parked.id}/retry")
    assert again.status_code == 409
    assert f"job {parked.id} is not parked" in again.json()["detail"]


def test_unknown_job_name_is_parked_with_the_reason(
    database: Database, worker: Worker
) -> None:
    with database.session() as db_session:
        enqueue(db_session, "test.not-registered", item=1)

    worker.run_pending()

    (row,) = _jobs(database)
    assert row.state == JobState.PARKED
    assert "no job function named 'test.not-registered'" in (row.last_error or "")


def test_job_arguments_must_be_ids(database: Database) -> None:
    with database.session() as db_session:
        with pytest.raises(
            TypeError, match=r"job argument client=.* pass the row's id"
        ):
            enqueue(db_session, "test.record", client=Client())  # type: ignore[arg-type]


def test_job_left_running_by_a_crash_runs_again_after_restart(
    database: Database, settings: Settings
) -> None:
    client_id = _make_client(database)
    with database.session() as db_session:
        enqueue(db_session, "test.record", client_id=client_id)
    # A worker claims the job and dies before finishing it.
    with database.session() as db_session:
        assert claim.claim_due(db_session, "dead-worker", utcnow(), 300) is not None
    (row,) = _jobs(database)
    assert row.state == JobState.RUNNING

    restarted = Worker(database, settings)
    restarted.recover() if database.is_sqlite else _expire_leases(database)
    assert restarted.run_pending() == 1

    assert [name for name, _ in CALLS] == ["test.record"]
    assert _jobs(database) == []


def test_job_of_a_dead_worker_on_this_host_is_taken_back_at_start(
    database: Database, settings: Settings
) -> None:
    import socket
    import subprocess

    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    client_id = _make_client(database)
    with database.session() as db_session:
        enqueue(db_session, "test.record", client_id=client_id)
    with database.session() as db_session:
        dead_worker = f"{socket.gethostname()}:{dead_pid.pid}:0dead000"
        assert claim.claim_due(db_session, dead_worker, utcnow(), 3600) is not None

    restarted = Worker(database, settings)

    assert restarted.recover() == 1
    assert restarted.run_pending() == 1
    assert _jobs(database) == []


def test_job_of_a_live_worker_elsewhere_is_left_alone(
    database: Database, settings: Settings
) -> None:
    with database.session() as db_session:
        enqueue(db_session, "test.record", client_id=1)
    with database.session() as db_session:
        claim.claim_due(db_session, "other-host:1:abcdef00", utcnow(), 3600)

    released = Worker(database, settings).recover()

    (row,) = _jobs(database)
    if database.is_sqlite:
        # One worker per SQLite database: every running job is an orphan.
        assert (released, row.state) == (1, JobState.PENDING)
    else:
        assert (released, row.state) == (0, JobState.RUNNING)


def _expire_leases(database: Database) -> None:
    with database.session() as db_session:
        for row in db_session.execute(select(Job)).scalars():
            row.lease_until = utcnow() - dt.timedelta(seconds=1)
        db_session.flush()
        claim.release_expired(db_session, utcnow())


def test_expired_lease_returns_a_job_to_the_queue(database: Database) -> None:
    with database.session() as db_session:
        enqueue(db_session, "test.record", client_id=1)
    with database.session() as db_session:
        claim.claim_due(db_session, "dead-worker", utcnow(), 0.0)

    with database.session() as db_session:
        released = claim.release_expired(db_session, utcnow() + dt.timedelta(seconds=1))

    assert released == 1
    (row,) = _jobs(database)
    assert row.state == JobState.PENDING


def test_started_worker_picks_up_a_job_without_polling_delay(
    database: Database, settings: Settings
) -> None:
    import time

    client_id = _make_client(database)
    worker = Worker(database, settings, poll_interval_s=30)
    worker.start()
    try:
        with database.session() as db_session:
            enqueue(db_session, "test.record", client_id=client_id)
        deadline = time.monotonic() + 10
        while _jobs(database) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()

    assert _jobs(database) == []
    assert [name for name, _ in CALLS] == ["test.record"]


def test_worker_command_runs_queued_jobs_on_postgresql(
    database: Database, settings: Settings
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    command = [str(Path(sys.executable).with_name("fetlock")), "worker"]
    env = dict(os.environ)
    env.update(
        FETLOCK_DATA_DIR=str(settings.data_dir),
        FETLOCK_DATABASE_URL=settings.effective_database_url,
    )
    if database.is_sqlite:
        refused = subprocess.run(command, env=env, capture_output=True, text=True)
        assert refused.returncode == 1
        assert "fetlock worker needs PostgreSQL" in refused.stderr
        return

    # study_settled for a study that does not exist is a job that succeeds.
    with database.session() as db_session:
        enqueue(db_session, "study_settled", study_id=987654)
    process = subprocess.Popen(command, env=env)
    try:
        deadline = time.monotonic() + 60
        while _jobs(database) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _jobs(database) == []
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


class _ImagesArriving:
    """A thread that stores nothing but notes foreground work every 20 ms."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            foreground.note_foreground_work()
            self._stop.wait(0.02)

    def __enter__(self) -> _ImagesArriving:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def _running_worker(database: Database, settings: Settings) -> Iterator[Worker]:
    """A worker running in its own thread, as ``fetlock serve`` starts it."""
    worker = Worker(database, settings, poll_interval_s=0.05)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def _wait_for_calls(count: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(CALLS) < count:
        time.sleep(0.02)
    return len(CALLS) >= count


def test_worker_delays_jobs_during_transfer(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(foreground, "QUIET_S", 0.5)
    monkeypatch.setattr(foreground, "MAX_DEFER_S", 60.0)
    client_id = _make_client(database)
    with _running_worker(database, settings):
        with _ImagesArriving():
            with database.session() as db_session:
                enqueue(db_session, "test.record", client_id=client_id)
            time.sleep(1.0)
            calls_during_transfer = list(CALLS)

        assert calls_during_transfer == []
        # The images stopped: the job runs once the process has been quiet.
        assert _wait_for_calls(1)


def test_worker_runs_delayed_job_after_max_defer(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(foreground, "QUIET_S", 60.0)
    monkeypatch.setattr(foreground, "MAX_DEFER_S", 0.3)
    client_id = _make_client(database)
    with _running_worker(database, settings):
        with _ImagesArriving():
            with database.session() as db_session:
                enqueue(db_session, "test.record", client_id=client_id)

            # Images never stop, yet the job is delayed only MAX_DEFER_S.
            assert _wait_for_calls(1)


def test_storing_an_instance_notes_foreground_work(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom.data import get_testdata_file
    from tests.ingest.conftest import MODALITY

    from fetlock.imaging.ingest import store_instance
    from fetlock.storage import LocalBlobStore

    monkeypatch.setattr(foreground, "_last_work_at", float("-inf"))
    assert foreground.seconds_since_foreground_work() == float("inf")

    result = store_instance(
        database,
        get_testdata_file("CT_small.dcm"),
        blobs=LocalBlobStore(settings.data_dir / "blobs"),
        actor=MODALITY,
    )

    assert result.ok
    assert foreground.seconds_since_foreground_work() < 60


def test_worker_runs_overdue_backlog_at_once(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(foreground, "QUIET_S", 60.0)
    monkeypatch.setattr(foreground, "MAX_DEFER_S", 5.0)
    client_ids = [_make_client(database) for _ in range(5)]
    with database.session() as db_session:
        for client_id in client_ids:
            enqueue(db_session, "test.record", client_id=client_id)
        # The jobs became due long ago, during a transfer that goes on.
        for job in db_session.execute(select(Job)).scalars():
            job.run_after = utcnow() - dt.timedelta(seconds=30)
    with _ImagesArriving(), _running_worker(database, settings):
        # Delaying each job MAX_DEFER_S would take 25 s, but overdue jobs run
        # back to back.
        assert _wait_for_calls(5, timeout_s=4.0)
