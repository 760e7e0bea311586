"""Request-scoped dependencies shared by every domain's routes."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from fetlock.config import Settings
from fetlock.db.session import Database


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db_session(request: Request) -> Iterator[Session]:
    """Yield a session for one request; commit if the route returns normally."""
    with get_database(request).session() as db_session:
        yield db_session


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None
