"""The ``fetlock`` command line."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from fetlock import __version__
from fetlock.config import Settings, get_settings
from fetlock.db.session import Database
from fetlock.logs import configure_logging

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="Fetlock: equine practice management with imaging built in.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
user_app = typer.Typer(help="Staff accounts.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for integrations.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")


def _database(settings: Settings) -> Database:
    from fetlock.server import SetupError, open_database

    try:
        return open_database(settings)
    except SetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.callback()
def _main(
    log_level: Annotated[
        str, typer.Option(help="Log level: DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    configure_logging(log_level)


@app.command()
def version() -> None:
    """Print the Fetlock version."""
    typer.echo(__version__)


def _upgrade(settings: Settings) -> None:
    """Apply pending migrations, or exit 1 naming why they cannot be."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from fetlock.db.migrate import upgrade

    url = settings.effective_database_url
    try:
        upgrade(url)
    except (CommandError, SQLAlchemyError) as exc:
        where = _mask(url)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        typer.echo(
            f"error: cannot upgrade the database {where} ({reason}); check "
            "FETLOCK_DATABASE_URL, and that the database was not set up by a "
            "newer Fetlock",
            err=True,
        )
        raise typer.Exit(1) from exc


def _mask(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to the configured database."""
    _upgrade(get_settings())
    typer.echo("database is up to date")


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Web listener address (default FETLOCK_HTTP_HOST)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Web listener TCP port (default FETLOCK_HTTP_PORT)."),
    ] = None,
    dicom_port: Annotated[
        int | None,
        typer.Option(help="DICOM listener TCP port (default FETLOCK_DICOM_PORT)."),
    ] = None,
    no_dicom: Annotated[
        bool, typer.Option("--no-dicom", help="Do not start the DICOM service.")
    ] = False,
) -> None:
    """Run the web application, the DICOM service and the job worker."""
    from fetlock.server import SetupError, run_server

    settings = get_settings()
    updates: dict[str, object] = {}
    if host is not None:
        updates["http_host"] = host
    if port is not None:
        updates["http_port"] = port
    if dicom_port is not None:
        updates["dicom_port"] = dicom_port
    if no_dicom:
        updates["dicom_enabled"] = False
    if updates:
        settings = settings.model_copy(update=updates)
    try:
        run_server(settings)
    except SetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def demo(
    password: Annotated[
        str, typer.Option(help="Password given to every demo account.")
    ] = "fetlock-demo",
) -> None:
    """Seed the demo practice (staff, owners, 40 horses); skip if already seeded."""
    from fetlock.demo import seed_demo
    from fetlock.server import seed_reference_data

    settings = get_settings()
    _upgrade(settings)
    database = _database(settings)
    seed_reference_data(database)
    with database.session() as db_session:
        created = seed_demo(db_session, settings, password=password)
    if created:
        typer.echo(f"demo practice created; log in as 'vet' with password '{password}'")
    else:
        typer.echo("demo practice already present; nothing changed")


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[
        str,
        typer.Option(
            help="One of admin, veterinarian, radiologist, technician, reception."
        ),
    ],
    full_name: Annotated[str, typer.Option(help="Name shown in the app.")] = "",
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="Password, at least 10 characters (prompted when omitted).",
        ),
    ] = "",
) -> None:
    """Create a staff account."""
    from fetlock.auth.models import Role
    from fetlock.auth.service import create_user

    if role not in {r.value for r in Role}:
        typer.echo(
            f"error: role {role!r} is unknown; use one of "
            + ", ".join(r.value for r in Role),
            err=True,
        )
        raise typer.Exit(2)
    database = _database(get_settings())
    try:
        with database.session() as db_session:
            user = create_user(
                db_session,
                username=username,
                full_name=full_name or username,
                role=role,
                password=password,
            )
            typer.echo(f"created user {user.username!r} with role {user.role}")
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@token_app.command("create")
def token_create(
    username: Annotated[str, typer.Argument(help="Account the token acts as.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "integration",
    days: Annotated[
        int, typer.Option(help="Lifetime in days; 0 means no expiry.")
    ] = 365,
) -> None:
    """Create an API token and print it once."""
    from sqlalchemy import select

    from fetlock.auth.models import User
    from fetlock.auth.service import create_api_token

    database = _database(get_settings())
    with database.session() as db_session:
        user = db_session.execute(
            select(User).where(User.username == username)
        ).scalar_one_or_none()
        if user is None:
            typer.echo(
                f"error: user {username!r} not found; create it with "
                "`fetlock user add`",
                err=True,
            )
            raise typer.Exit(2)
        lifetime = dt.timedelta(days=days) if days > 0 else None
        token, _row = create_api_token(db_session, user, name, lifetime=lifetime)
    typer.echo(token)


@app.command()
def worker() -> None:
    """Run background jobs only, until interrupted (extra workers on PostgreSQL)."""
    from fetlock.jobs.worker import run_worker

    run_worker(get_settings())


@app.command("import")
def import_files(
    path: Annotated[Path, typer.Argument(help="A folder, a DICOMDIR or a DICOM file.")],
) -> None:
    """Import DICOM files (a folder, a DICOMDIR, a USB export); exit 1 on failures."""
    from fetlock.imaging.import_command import run_import

    raise typer.Exit(run_import(get_settings(), path))


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit hash chain; exit 1 naming the first broken or missing row."""
    from fetlock.audit.service import verify

    database = _database(get_settings())
    with database.session() as db_session:
        result = verify(db_session)
    if result.ok:
        typer.echo(f"audit trail intact: {result.checked} events verified")
        return
    typer.echo(f"audit trail BROKEN: {result.problem}", err=True)
    raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
