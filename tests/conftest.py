"""Shared fixtures: a migrated database per test run, wiped between tests.

The database is SQLite unless ``FETLOCK_TEST_DATABASE`` is ``postgresql``; then
a fresh PostgreSQL database is created for this run on the server named by
``FETLOCK_TEST_POSTGRES_URL`` (default: the local server, database ``test``)
and dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

import fetlock.db.registry  # noqa: F401  (registers every table)
from fetlock.auth import service as auth_service
from fetlock.auth.models import Role, User
from fetlock.auth.service import create_user
from fetlock.config import Settings
from fetlock.db.base import Base
from fetlock.db.migrate import upgrade
from fetlock.db.session import Database

TEST_PASSWORD = "correct-horse-battery"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _quick_password_hashes(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hash test passwords with the cheapest Argon2 parameters.

    The production parameters cost about a second per hash on a busy 2-core
    machine, and most tests log users in. Tests marked
    ``real_password_hashes`` keep the production parameters.
    """
    if request.node.get_closest_marker("real_password_hashes"):
        return
    monkeypatch.setattr(
        auth_service,
        "_hasher",
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )


def _backend() -> str:
    return os.environ.get("FETLOCK_TEST_DATABASE", "sqlite")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a migrated, empty database private to this test run."""
    if _backend() == "postgresql":
        admin_url = make_url(
            os.environ.get("FETLOCK_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
        )
        name = f"fetlock_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = admin_url.set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        yield url
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("db") / "fetlock.sqlite3"
        url = f"sqlite:///{path}"
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def _session_database(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _wipe(database: Database) -> None:
    with database.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def database(_session_database: Database) -> Iterator[Database]:
    """The test database, emptied after each test."""
    yield _session_database
    _wipe(_session_database)


@pytest.fixture
def db_session(database: Database) -> Iterator[Session]:
    """A session on the empty test database; committed at the end of the test."""
    with database.session() as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key="test-secret-key-not-for-production",
        dicom_enabled=False,
    )


@pytest.fixture
def app(settings: Settings, database: Database):  # type: ignore[no-untyped-def]
    from fetlock.web.app import create_app

    return create_app(settings, database)


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """An anonymous HTTP client of the app."""
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


def make_user(database: Database, username: str, role: Role) -> User:
    with database.session() as session:
        return create_user(
            session,
            username=username,
            full_name=username.title(),
            role=role,
            password=TEST_PASSWORD,
        )


class LoggedInClient:
    """A TestClient logged in through the login form, with its CSRF token."""

    def __init__(self, client: TestClient, user: User) -> None:
        self.http = client
        self.user = user
        response = client.post(
            "/login",
            data={"username": user.username, "password": TEST_PASSWORD},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        from fetlock.auth.models import LoginSession

        self.csrf_token = ""
        database: Database = client.app.state.database  # type: ignore[attr-defined]
        with database.session() as session:
            login = (
                session.query(LoginSession)
                .filter(LoginSession.user_id == user.id)
                .order_by(LoginSession.created_at.desc())
                .first()
            )
            assert login is not None
            self.csrf_token = login.csrf_token

    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf_token}

    def get(self, url: str, **kwargs):  # type: ignore[no-untyped-def]
        return self.http.get(url, **kwargs)

    def post(self, url: str, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("headers", {}).update(self.headers())
        return self.http.post(url, **kwargs)

    def put(self, url: str, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("headers", {}).update(self.headers())
        return self.http.put(url, **kwargs)

    def patch(self, url: str, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("headers", {}).update(self.headers())
        return self.http.patch(url, **kwargs)

    def delete(self, url: str, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("headers", {}).update(self.headers())
        return self.http.delete(url, **kwargs)


@pytest.fixture
def login_as(app, database: Database):  # type: ignore[no-untyped-def]
    """Return a function that logs a new user of a role in, in its own client."""
    clients: list[TestClient] = []

    def _login(role: Role, username: str | None = None) -> LoggedInClient:
        user = make_user(database, username or f"{role.value}{len(clients)}", role)
        http = TestClient(app, base_url="http://127.0.0.1")
        clients.append(http)
        return LoggedInClient(http, user)

    yield _login
    for http in clients:
        http.close()
