"""Database engine, sessions, shared column types and Alembic migrations."""

from fetlock.db.base import Base, UTCDateTime, utcnow
from fetlock.db.session import Database

__all__ = ["Base", "Database", "UTCDateTime", "utcnow"]
