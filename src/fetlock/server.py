"""``fetlock serve``: the web app, the DICOM service and the job worker."""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Protocol

import uvicorn

from fetlock import __version__
from fetlock.config import Settings
from fetlock.db.base import lock_for_seeding
from fetlock.db.session import Database

logger = logging.getLogger(__name__)


class BackgroundService(Protocol):
    """A listener or worker that runs beside the web app in one process."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


def build_background_services(
    settings: Settings, database: Database
) -> list[BackgroundService]:
    """Return the services ``serve`` starts besides the web listener."""
    services: list[BackgroundService] = []
    if settings.dicom_enabled:
        from fetlock.dicom.server import DicomService

        services.append(DicomService(settings, database))
    from fetlock.jobs.worker import Worker

    services.append(Worker(database, settings))
    return services


def _note_signal(signum: int, _frame: FrameType | None) -> None:
    # uvicorn handles SIGINT and SIGTERM while it runs, then raises the signal
    # again after its shutdown. This handler receives that repeat, so that
    # ``run_server`` can stop the background services instead of dying.
    logger.info("received %s", signal.Signals(signum).name)


def seed_reference_data(database: Database) -> None:
    """Fill the fee schedule, procedure catalog and report vocabulary if empty.

    In a transaction of its own, before anything else runs, so that no
    request ever seeds (see ``fetlock.db.base.lock_for_seeding``).
    """
    from fetlock.billing.fees import ensure_fee_schedule
    from fetlock.imaging.service import ensure_catalog
    from fetlock.reporting import vocabulary

    with database.session() as db_session:
        lock_for_seeding(db_session)
        ensure_fee_schedule(db_session)
        ensure_catalog(db_session)
        vocabulary.ensure_loaded(db_session)


def run_server(settings: Settings) -> None:
    """Start every listener and block until SIGINT or SIGTERM, then stop them."""
    from fetlock.web.app import create_app

    logger.info("Fetlock %s starting", __version__)
    logger.info("effective settings: %s", settings.masked())
    database = Database(settings.effective_database_url)
    seed_reference_data(database)
    services = build_background_services(settings, database)
    started: list[BackgroundService] = []
    signal.signal(signal.SIGTERM, _note_signal)
    signal.signal(signal.SIGINT, _note_signal)
    try:
        for service in services:
            service.start()
            started.append(service)
            logger.info("started %s", service.name)

        app = create_app(settings, database)
        logger.info(
            "web listener on http://%s:%d", settings.http_host, settings.http_port
        )
        uvicorn.run(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            access_log=False,
        )
    finally:
        for service in reversed(started):
            service.stop()
            logger.info("stopped %s", service.name)
        database.dispose()
        logger.info("Fetlock stopped")
