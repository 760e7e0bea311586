"""``fetlock serve``: the web app, the DICOM service and the job worker."""

from __future__ import annotations

import logging
import signal
import socket
from types import FrameType
from typing import Protocol

import uvicorn

from fetlock import __version__
from fetlock.config import Settings
from fetlock.db.base import lock_for_seeding
from fetlock.db.session import Database
from fetlock.jobs import codec_process

logger = logging.getLogger(__name__)

# Seconds the web listener waits for requests in progress when it stops.
HTTP_STOP_GRACE_S = 10


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


class SetupError(RuntimeError):
    """A setting or database that stops Fetlock from starting, with the fix."""


def open_database(settings: Settings) -> Database:
    """Return the configured database once it has this Fetlock's tables.

    Raises ``SetupError`` naming the fix for a URL that cannot be used, a
    server that cannot be reached, or a schema that is missing or out of date.
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        database = Database(settings.effective_database_url)
    except SQLAlchemyError as exc:
        raise SetupError(
            f"FETLOCK_DATABASE_URL is not a database URL Fetlock can use ({exc}); "
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/NAME"
        ) from exc
    try:
        check_database(database)
    except SetupError:
        database.dispose()
        raise
    return database


def check_database(database: Database) -> None:
    """Raise ``SetupError`` unless the database has this Fetlock's tables."""
    from sqlalchemy.exc import SQLAlchemyError

    from fetlock.db.migrate import schema_problem

    where = database.url.render_as_string(hide_password=True)
    try:
        problem = schema_problem(database)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise SetupError(
            f"cannot open the database {where} ({reason}); check "
            "FETLOCK_DATABASE_URL and that the database server is running"
        ) from exc
    if problem is not None:
        raise SetupError(f"the database {where} {problem}")


def check_listeners(settings: Settings) -> None:
    """Raise ``SetupError`` if ``serve`` could not listen where configured."""
    ports = [("FETLOCK_HTTP_PORT", settings.http_host, settings.http_port)]
    if settings.dicom_enabled:
        ports.append(("FETLOCK_DICOM_PORT", settings.dicom_host, settings.dicom_port))
    for setting, _host, port in ports:
        if not 0 <= port <= 65535:
            raise SetupError(f"{setting} {port} is not a TCP port; use 1 to 65535")
    if len(ports) == 2 and ports[0][2] == ports[1][2] != 0:
        raise SetupError(
            f"FETLOCK_HTTP_PORT and FETLOCK_DICOM_PORT are both {ports[0][2]}; "
            "give each listener its own port"
        )
    for setting, host, port in ports:
        check_port_free(host, port, setting)


def check_port_free(host: str, port: int, setting: str) -> None:
    """Raise ``SetupError`` if ``host``:``port`` cannot be listened on."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
    except socket.gaierror as exc:
        raise SetupError(
            f"cannot listen on {host}:{port} ({exc.strerror}); set the host to an "
            "address of this machine, such as 127.0.0.1"
        ) from exc
    with socket.socket(family, kind, proto) as probe:
        # As the listeners do, so that a port left in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise SetupError(
                f"cannot listen on {host}:{port} ({exc.strerror}); stop the program "
                f"using that port, or set {setting} to a free port"
            ) from exc


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
    database = open_database(settings)
    try:
        check_listeners(settings)
    except SetupError:
        database.dispose()
        raise
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
        host = settings.http_host
        logger.info(
            "web listener on http://%s:%d",
            f"[{host}]" if ":" in host else host,
            settings.http_port,
        )
        uvicorn.run(
            app,
            host=host,
            port=settings.http_port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=HTTP_STOP_GRACE_S,
        )
    finally:
        # In start order: the DICOM service first, so that no more images
        # arrive while the job worker finishes its job.
        for service in started:
            service.stop()
            logger.info("stopped %s", service.name)
        # Ends a codec call still running for a request that uvicorn gave up on.
        codec_process.stop()
        database.dispose()
        logger.info("Fetlock stopped")
