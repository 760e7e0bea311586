"""Run Alembic migrations from code (``fetlock db upgrade`` and tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from fetlock.db.session import Database

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """Return an Alembic configuration for the database at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would read '%' in a password as a reference.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    """Upgrade the database at ``url`` to ``revision`` (all heads by default)."""
    command.upgrade(alembic_config(url), revision)


def schema_problem(database: Database) -> str | None:
    """Describe why ``database`` is not at this Fetlock's schema, with the fix.

    Returns None when it is current.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    url = database.url.render_as_string(hide_password=False)
    script = ScriptDirectory.from_config(alembic_config(url))
    with database.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if not current:
        return (
            "has no Fetlock tables; run `fetlock db upgrade` to create them, or "
            "`fetlock demo` for the demo practice"
        )
    revisions = ", ".join(sorted(current))
    known = {revision.revision for revision in script.walk_revisions()}
    if current - known:
        return (
            f"was set up by a newer Fetlock (revision {revisions}); upgrade "
            "Fetlock, or point FETLOCK_DATABASE_URL at another database"
        )
    # The version table lists only revisions that no applied one depends on.
    applied = {
        revision.revision
        for revision in script.revision_map.iterate_revisions(
            tuple(current), "base", inclusive=True, implicit_base=True
        )
        if revision is not None
    }
    if applied != known:
        return (
            f"is at revision {revisions}, older than this Fetlock; run "
            "`fetlock db upgrade`"
        )
    return None
