"""The ``fetlock`` command line: help, accounts, tokens, audit and the demo."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from fetlock.audit.models import AuditEvent
from fetlock.auth import service as auth_service
from fetlock.auth.models import User
from fetlock.cli import app as cli_app
from fetlock.config import Settings, get_settings
from fetlock.db.session import Database
from fetlock.practice.models import Client, Horse, Ownership, SoapNote, Visit

PASSWORD = "cli-password-123"


def _fetlock() -> list[str]:
    script = Path(sys.executable).with_name("fetlock")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fetlock.cli"]


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, database: Database, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """Point the CLI at the test database; settings are re-read per test."""
    env = {
        "FETLOCK_DATABASE_URL": database.url.render_as_string(hide_password=False),
        "FETLOCK_DATA_DIR": str(tmp_path / "data"),
        "FETLOCK_SECRET_KEY": "cli-test-secret",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Cheap Argon2 parameters: the demo creates seven accounts.
    monkeypatch.setattr(
        auth_service,
        "_hasher",
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    get_settings.cache_clear()
    yield {**os.environ, **env}
    get_settings.cache_clear()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _command_paths() -> list[list[str]]:
    """Every command and group of the CLI, as argument lists."""
    paths: list[list[str]] = []

    def walk(command: object, prefix: list[str]) -> None:
        paths.append(prefix)
        # Typer bundles its own click, so test for subcommands, not a class.
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(cli_app), [])
    return paths


def test_fetlock_help_runs_as_a_program() -> None:
    result = subprocess.run(
        [*_fetlock(), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for command in ("serve", "demo", "db", "user", "token", "audit"):
        assert command in result.stdout


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "-")
def test_every_command_has_help(runner: CliRunner, path: list[str]) -> None:
    result = runner.invoke(cli_app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "--help" in result.output


def test_known_subcommands_are_present() -> None:
    paths = {" ".join(p) for p in _command_paths()}
    assert {
        "serve",
        "demo",
        "version",
        "db upgrade",
        "user add",
        "token create",
        "audit verify",
    } <= paths


class TestUserAndToken:
    def test_user_add_then_token_works_on_the_api(
        self,
        runner: CliRunner,
        cli_env: dict[str, str],
        database: Database,
        settings: Settings,
    ) -> None:
        result = runner.invoke(
            cli_app,
            [
                "user",
                "add",
                "lucy",
                "--role",
                "reception",
                "--full-name",
                "Lucy Front",
                "--password",
                PASSWORD,
            ],
        )
        assert result.exit_code == 0, result.output
        assert "created user 'lucy' with role reception" in result.output

        result = runner.invoke(cli_app, ["token", "create", "lucy", "--name", "lab"])
        assert result.exit_code == 0, result.output
        token = result.output.strip().splitlines()[-1]
        assert token.startswith("flk_")

        from fetlock.web.app import create_app

        with TestClient(create_app(settings, database)) as http:
            headers = {"Authorization": f"Bearer {token}"}
            created = http.post(
                "/api/v1/clients", json={"family_name": "Token"}, headers=headers
            )
            assert created.status_code == 201, created.text
            assert (
                http.get("/api/v1/clients", headers=headers).json()[0]["id"]
                == (created.json()["id"])
            )

    def test_user_add_unknown_role_names_the_choices(
        self, runner: CliRunner, cli_env: dict[str, str], database: Database
    ) -> None:
        result = runner.invoke(
            cli_app, ["user", "add", "x", "--role", "farrier", "--password", PASSWORD]
        )
        assert result.exit_code == 2
        assert "'farrier' is unknown" in result.output
        assert "veterinarian" in result.output
        with database.session() as session:
            assert session.execute(select(func.count(User.id))).scalar_one() == 0

    def test_user_add_short_password_is_refused(
        self, runner: CliRunner, cli_env: dict[str, str]
    ) -> None:
        result = runner.invoke(
            cli_app, ["user", "add", "x", "--role", "reception", "--password", "short"]
        )
        assert result.exit_code == 2
        assert "at least 10" in result.output

    def test_token_for_unknown_user(
        self, runner: CliRunner, cli_env: dict[str, str]
    ) -> None:
        result = runner.invoke(cli_app, ["token", "create", "ghost"])
        assert result.exit_code == 2
        assert "'ghost' not found" in result.output


class TestAuditVerify:
    def test_ok_then_broken_names_the_row(
        self, runner: CliRunner, cli_env: dict[str, str], database: Database
    ) -> None:
        for name in ("amy", "ben", "cat"):
            assert (
                runner.invoke(
                    cli_app,
                    [
                        "user",
                        "add",
                        name,
                        "--role",
                        "technician",
                        "--password",
                        PASSWORD,
                    ],
                ).exit_code
                == 0
            )
        ok = subprocess.run(
            [*_fetlock(), "audit", "verify"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ok.returncode == 0, ok.stderr
        assert "intact: 3 events verified" in ok.stdout

        with database.engine.begin() as conn:
            conn.execute(
                text("UPDATE audit_event SET actor_name = 'mallory' WHERE seq = 2")
            )
        broken = subprocess.run(
            [*_fetlock(), "audit", "verify"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert broken.returncode == 1
        assert "audit event 2 was changed" in broken.stderr


class TestDemo:
    def test_demo_twice_changes_nothing_the_second_time(
        self, runner: CliRunner, cli_env: dict[str, str], database: Database
    ) -> None:
        first = runner.invoke(cli_app, ["demo", "--password", PASSWORD])
        assert first.exit_code == 0, first.output
        assert "demo practice created" in first.output
        before = _counts(database)
        assert before["horse"] == 40

        second = runner.invoke(cli_app, ["demo", "--password", PASSWORD])
        assert second.exit_code == 0, second.output
        assert "nothing changed" in second.output
        assert _counts(database) == before


def _counts(database: Database) -> dict[str, int]:
    models = {
        "user": User,
        "client": Client,
        "horse": Horse,
        "ownership": Ownership,
        "visit": Visit,
        "note": SoapNote,
        "audit": AuditEvent,
    }
    with database.session() as session:
        return {
            name: session.execute(select(func.count()).select_from(model)).scalar_one()
            for name, model in models.items()
        }


class TestSetupErrors:
    """Commands that cannot run as configured print the fix, not a traceback."""

    def _env(self, tmp_path: Path, **extra: str) -> dict[str, str]:
        data = tmp_path / "fresh"
        data.mkdir(exist_ok=True)
        return {
            **os.environ,
            "FETLOCK_DATA_DIR": str(data),
            "FETLOCK_DATABASE_URL": f"sqlite:///{data / 'fetlock.sqlite3'}",
            "FETLOCK_SECRET_KEY": "cli-test-secret",
            **extra,
        }

    def _run(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_fetlock(), *args], env=env, capture_output=True, text=True, timeout=60
        )

    def test_serve_on_empty_database_says_to_upgrade(self, tmp_path: Path) -> None:
        result = self._run(self._env(tmp_path), "serve", "--port", "0")

        assert result.returncode == 1
        assert "has no Fetlock tables" in result.stderr
        assert "fetlock db upgrade" in result.stderr
        assert "Traceback" not in result.stderr

    def test_audit_verify_on_empty_database(self, tmp_path: Path) -> None:
        result = self._run(self._env(tmp_path), "audit", "verify")

        assert result.returncode == 1
        assert "has no Fetlock tables" in result.stderr
        assert "Traceback" not in result.stderr

    def test_older_schema_is_named(self, tmp_path: Path) -> None:
        from fetlock.db.migrate import schema_problem, upgrade

        url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
        upgrade(url, "0001")
        database = Database(url)
        try:
            problem = schema_problem(database)
            assert problem is not None
            assert "older than this Fetlock" in problem
            upgrade(url)
            assert schema_problem(database) is None
        finally:
            database.dispose()

    @pytest.mark.parametrize(
        ("option", "setting"),
        [("--dicom-port", "FETLOCK_DICOM_PORT"), ("--port", "FETLOCK_HTTP_PORT")],
    )
    def test_serve_on_taken_port_names_setting(
        self, tmp_path: Path, option: str, setting: str
    ) -> None:
        env = self._env(tmp_path)
        assert self._run(env, "db", "upgrade").returncode == 0
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            # The other listener on port 0, which is always free.
            other = "--port" if option == "--dicom-port" else "--dicom-port"
            result = self._run(env, "serve", option, str(port), other, "0")

        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
        assert setting in result.stderr
        assert "Traceback" not in result.stderr

    @pytest.mark.parametrize(
        ("extra", "expected"),
        [
            (
                {"FETLOCK_HTTP_PORT": "70000"},
                "FETLOCK_HTTP_PORT 70000 is not a TCP port",
            ),
            (
                {"FETLOCK_HTTP_PORT": "18555", "FETLOCK_DICOM_PORT": "18555"},
                "are both 18555",
            ),
            ({"FETLOCK_DATABASE_URL": "bogus://x"}, "is not a database URL"),
            (
                {"FETLOCK_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/x"},
                "cannot open the database",
            ),
        ],
    )
    def test_serve_with_unusable_setting(
        self, tmp_path: Path, extra: dict[str, str], expected: str
    ) -> None:
        env = self._env(tmp_path)
        assert self._run(env, "db", "upgrade").returncode == 0

        result = self._run({**env, **extra}, "serve")

        assert result.returncode == 1
        assert expected in result.stderr
        assert "Traceback" not in result.stderr

    def test_import_on_empty_database(self, tmp_path: Path) -> None:
        result = self._run(self._env(tmp_path), "import", str(tmp_path))

        assert result.returncode == 2
        assert "has no Fetlock tables" in result.stderr
        assert "Traceback" not in result.stderr

    def test_upgrade_of_newer_database_names_the_cause(self, tmp_path: Path) -> None:
        env = self._env(tmp_path)
        assert self._run(env, "db", "upgrade").returncode == 0
        engine = create_engine(env["FETLOCK_DATABASE_URL"])
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE alembic_version SET version_num = '9999_future' "
                    "WHERE version_num = '0005'"
                )
            )
        engine.dispose()

        result = self._run(env, "db", "upgrade")

        assert result.returncode == 1
        assert "9999_future" in result.stderr
        assert "newer Fetlock" in result.stderr
        assert "Traceback" not in result.stderr
