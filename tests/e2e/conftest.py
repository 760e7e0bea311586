"""Browser fixtures: a real ``fetlock serve`` process and Debian's Chromium.

``live_server`` starts ``fetlock demo`` and then ``fetlock serve --no-dicom`` as
subprocesses on a free loopback port, with their own data directory and their
own database (a SQLite file, or a fresh PostgreSQL database when
``FETLOCK_TEST_DATABASE=postgresql``), so the per-test wipe of the shared test
database never touches the server's demo practice. ``page`` and ``phone_page``
are Playwright pages in Chromium; ``login`` logs a page in as a demo account.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]
DEMO_PASSWORD = "fetlock-demo-e2e"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
STARTUP_SECONDS = 60.0
PHONE_VIEWPORT = {"width": 390, "height": 844}


@dataclass(frozen=True)
class LiveServer:
    """A running Fetlock process: where it listens and how it was configured."""

    base_url: str
    data_dir: Path
    database_url: str
    env: dict[str, str]
    password: str
    log_path: Path

    def url(self, path: str) -> str:
        return self.base_url + path

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no server log)"
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _fetlock_command() -> list[str]:
    script = Path(sys.executable).with_name("fetlock")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "fetlock.cli"]


@pytest.fixture(scope="session")
def live_server_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an empty database of the live server's own."""
    if os.environ.get("FETLOCK_TEST_DATABASE", "sqlite") != "postgresql":
        path = tmp_path_factory.mktemp("live-db") / "fetlock.sqlite3"
        yield f"sqlite:///{path}"
        return
    admin_url = make_url(
        os.environ.get("FETLOCK_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    name = f"fetlock_e2e_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield admin_url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _wait_until_healthy(
    url: str, process: subprocess.Popen[bytes], server: LiveServer
) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"fetlock serve exited with status {process.returncode} before "
                f"answering {url}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(
        f"fetlock serve did not answer {url} within {STARTUP_SECONDS:.0f} s:\n"
        f"{server.log_tail()}"
    )


@pytest.fixture(scope="session")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, live_server_database: str
) -> Iterator[LiveServer]:
    """A ``fetlock serve --no-dicom`` subprocess seeded with the demo practice."""
    data_dir = tmp_path_factory.mktemp("live-data")
    port = free_port()
    env = {
        **os.environ,
        "FETLOCK_DATA_DIR": str(data_dir),
        "FETLOCK_DATABASE_URL": live_server_database,
        "FETLOCK_SECRET_KEY": "e2e-secret-key-not-for-production",
        "FETLOCK_HTTP_HOST": "127.0.0.1",
        "FETLOCK_HTTP_PORT": str(port),
        "FETLOCK_DICOM_ENABLED": "false",
    }
    log_path = data_dir / "server.log"
    server = LiveServer(
        base_url=f"http://127.0.0.1:{port}",
        data_dir=data_dir,
        database_url=live_server_database,
        env=env,
        password=DEMO_PASSWORD,
        log_path=log_path,
    )

    seeded = subprocess.run(
        [*_fetlock_command(), "demo", "--password", DEMO_PASSWORD],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert seeded.returncode == 0, f"fetlock demo failed:\n{seeded.stderr}"

    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *_fetlock_command(),
                "serve",
                "--no-dicom",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_healthy(server.url("/healthz"), process, server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, reaching nothing but loopback."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is not installed; install Debian's chromium package")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def _new_page(browser: Browser, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh Chromium page (own cookies) with a desktop viewport."""
    yield from _new_page(browser, {"width": 1280, "height": 900})


@pytest.fixture
def phone_page(browser: Browser) -> Iterator[Page]:
    """A fresh Chromium page with a 390x844 phone viewport."""
    yield from _new_page(browser, PHONE_VIEWPORT)


@pytest.fixture
def login(live_server: LiveServer) -> Callable[[Page, str], None]:
    """Return ``login(page, username)``, which logs a page in as a demo account."""

    def _login(page: Page, username: str) -> None:
        page.goto(live_server.url("/login"))
        page.fill("#username", username)
        page.fill("#password", live_server.password)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert "/login" not in page.url, f"login as {username!r} failed on {page.url}"

    return _login
