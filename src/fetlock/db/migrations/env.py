"""Alembic environment: migrates the database named in the Alembic config."""

from alembic import context

import fetlock.db.registry  # noqa: F401  (registers every table)
from fetlock.db.base import Base
from fetlock.db.session import Database

config = context.config


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("sqlalchemy.url is not set in the Alembic config")
    database = Database(url)
    with database.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=database.is_sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    database.dispose()


run_migrations()
