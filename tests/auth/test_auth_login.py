"""Login, logout, lock-out after failed logins, API tokens and role checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from fetlock.audit.models import AuditEvent
from fetlock.auth import service
from fetlock.auth.deps import SESSION_COOKIE
from fetlock.auth.models import ApiToken, LoginFailure, LoginSession, Role, User
from fetlock.config import Settings
from fetlock.db.base import utcnow
from fetlock.db.session import Database
from fetlock.web.app import create_app

PASSWORD = "correct-horse-battery"


@pytest.fixture
def strict_settings(settings: Settings) -> Settings:
    """Three failed logins lock a user name out for ten minutes."""
    return settings.model_copy(
        update={"login_max_failures": 3, "login_lockout_minutes": 10}
    )


@pytest.fixture
def strict_app(strict_settings: Settings, database: Database) -> FastAPI:
    return create_app(strict_settings, database)


@pytest.fixture
def http(strict_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(strict_app, base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture
def nurse(database: Database) -> User:
    """A technician account with the real (production) Argon2 parameters."""
    with database.session() as session:
        return service.create_user(
            session,
            username="kelly",
            full_name="Kelly Marsh",
            role=Role.TECHNICIAN,
            password=PASSWORD,
        )


def _login(http: TestClient, password: str, *, next_url: str = "/horses"):  # type: ignore[no-untyped-def]
    return http.post(
        "/login",
        data={"username": "kelly", "password": password, "next": next_url},
        follow_redirects=False,
    )


def _actions(database: Database) -> list[str]:
    with database.session() as session:
        return list(
            session.execute(
                select(AuditEvent.action).order_by(AuditEvent.seq)
            ).scalars()
        )


@pytest.mark.real_password_hashes
class TestPasswords:
    def test_password_is_stored_as_argon2_hash(self, nurse: User) -> None:
        assert nurse.password_hash.startswith("$argon2id$")
        # The production parameters, not the quick ones other tests use.
        assert "m=65536,t=3,p=4" in nurse.password_hash
        assert PASSWORD not in nurse.password_hash
        assert service.verify_password(nurse.password_hash, PASSWORD)
        assert not service.verify_password(nurse.password_hash, PASSWORD + "x")

    def test_short_password_is_refused_with_its_length(
        self, database: Database
    ) -> None:
        with database.session() as session, pytest.raises(ValueError) as raised:
            service.create_user(
                session,
                username="shorty",
                full_name="S",
                role="reception",
                password="abc",
            )
        assert "3 characters" in str(raised.value)
        assert "at least 10" in str(raised.value)

    def test_duplicate_user_name_is_refused(
        self, nurse: User, database: Database
    ) -> None:
        with database.session() as session, pytest.raises(ValueError, match="taken"):
            service.create_user(
                session,
                username="kelly",
                full_name="Other Kelly",
                role="reception",
                password=PASSWORD,
            )


@pytest.mark.usefixtures("quick_password_hashes")
class TestLogin:
    def test_login_sets_httponly_samesite_cookie_and_follows_next(
        self, http: TestClient, nurse: User, database: Database
    ) -> None:
        response = _login(http, PASSWORD, next_url="/horses?q=storm")
        assert response.status_code == 303
        assert response.headers["location"] == "/horses?q=storm"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert http.get("/horses").status_code == 200
        assert "login" in _actions(database)

    @pytest.mark.parametrize(
        "target", ["https://evil.example/", "//evil.example/", "javascript:alert(1)"]
    )
    def test_login_never_redirects_off_site(
        self, http: TestClient, nurse: User, target: str
    ) -> None:
        response = _login(http, PASSWORD, next_url=target)
        assert response.headers["location"] == "/"

    def test_wrong_password_is_401_and_audited(
        self, http: TestClient, nurse: User, database: Database
    ) -> None:
        response = _login(http, "wrong-password")
        assert response.status_code == 401
        assert "user name or password is wrong" in response.text
        # The form keeps the user name.
        assert 'value="kelly"' in response.text
        assert _actions(database)[-1] == "login.failed"

    def test_lock_out_after_three_failures_even_with_right_password(
        self, http: TestClient, nurse: User, database: Database
    ) -> None:
        for _ in range(3):
            assert _login(http, "wrong-password").status_code == 401
        response = _login(http, PASSWORD)
        assert response.status_code == 429
        assert "too many failed logins" in response.text
        assert "10 minutes" in response.text
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")

    def test_lock_out_ends_when_the_window_has_passed(
        self, http: TestClient, nurse: User, database: Database
    ) -> None:
        for _ in range(3):
            _login(http, "wrong-password")
        with database.session() as session:
            session.execute(
                update(LoginFailure).values(
                    occurred_at=utcnow() - dt.timedelta(minutes=11)
                )
            )
        assert _login(http, PASSWORD).status_code == 303
        # A successful login clears the failures.
        with database.session() as session:
            assert session.execute(select(LoginFailure)).first() is None

    def test_failures_below_the_limit_do_not_lock(
        self, http: TestClient, nurse: User
    ) -> None:
        for _ in range(2):
            _login(http, "wrong-password")
        assert _login(http, PASSWORD).status_code == 303

    def test_inactive_user_cannot_log_in(
        self, http: TestClient, nurse: User, database: Database
    ) -> None:
        with database.session() as session:
            session.execute(update(User).values(active=False))
        assert _login(http, PASSWORD).status_code == 401

    def test_logout_ends_the_session(
        self, http: TestClient, nurse: User, database: Database
    ) -> None:
        _login(http, PASSWORD)
        with database.session() as session:
            csrf_token = session.execute(select(LoginSession)).scalar_one().csrf_token
        response = http.post(
            "/logout", data={"csrf_token": csrf_token}, follow_redirects=False
        )
        assert response.status_code == 303
        assert "cache" in response.headers["clear-site-data"]
        with database.session() as session:
            assert session.execute(select(LoginSession)).first() is None
        assert http.get("/horses", follow_redirects=False).status_code == 303
        assert _actions(database)[-1] == "logout"

    def test_logout_without_csrf_token_is_refused(
        self, http: TestClient, nurse: User, database: Database
    ) -> None:
        _login(http, PASSWORD)
        response = http.post("/logout", follow_redirects=False)
        assert response.status_code == 403
        assert "CSRF" in response.json()["detail"]
        with database.session() as session:
            assert session.execute(select(LoginSession)).first() is not None

    def test_locked_out_attempt_is_audited(
        self, http: TestClient, nurse: User, database: Database
    ) -> None:
        for _ in range(3):
            _login(http, "wrong-password")
        assert _login(http, PASSWORD).status_code == 429
        assert _actions(database)[-1] == "login.locked_out"

    def test_expired_session_redirects_to_login(
        self, http: TestClient, nurse: User, database: Database
    ) -> None:
        _login(http, PASSWORD)
        with database.session() as session:
            session.execute(
                update(LoginSession).values(expires_at=utcnow() - dt.timedelta(1))
            )
        response = http.get("/horses", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")


@pytest.mark.usefixtures("quick_password_hashes")
class TestApiTokens:
    @pytest.fixture
    def token(self, nurse: User, database: Database) -> str:
        with database.session() as session:
            user = session.get(User, nurse.id)
            assert user is not None
            plain, _row = service.create_api_token(
                session, user, "modality bridge", lifetime=dt.timedelta(days=1)
            )
        return plain

    def test_only_the_hash_is_stored(self, token: str, database: Database) -> None:
        with database.session() as session:
            row = session.execute(select(ApiToken)).scalar_one()
        assert row.token_hash == service.token_digest(token)
        assert token not in row.token_hash

    def test_valid_token_reads_the_api(self, http: TestClient, token: str) -> None:
        response = http.get(
            "/api/v1/horses", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200

    @pytest.mark.parametrize("change", ["expired", "revoked", "deactivated"])
    def test_unusable_token_is_401(
        self, http: TestClient, token: str, database: Database, change: str
    ) -> None:
        with database.session() as session:
            if change == "expired":
                session.execute(
                    update(ApiToken).values(expires_at=utcnow() - dt.timedelta(1))
                )
            elif change == "revoked":
                session.execute(update(ApiToken).values(revoked_at=utcnow()))
            else:
                session.execute(update(User).values(active=False))
        response = http.get(
            "/api/v1/horses", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
        assert "fetlock token create" in response.json()["detail"]

    def test_token_role_is_still_checked(
        self, http: TestClient, token: str, database: Database
    ) -> None:
        # The token acts as a technician, who may not register horses.
        response = http.post(
            "/api/v1/horses",
            json={"barn_name": "Sneaky"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 403
        assert _actions(database)[-1] == "access.denied"


@pytest.mark.usefixtures("quick_password_hashes")
class TestRoleChecks:
    def test_denied_page_is_403_with_the_needed_roles_and_audited(
        self, login_as, database: Database
    ) -> None:  # type: ignore[no-untyped-def]
        radiologist = login_as(Role.RADIOLOGIST, "rad")
        response = radiologist.get("/clients/new")
        assert response.status_code == 403
        assert "reception" in response.json()["detail"]
        with database.session() as session:
            event = session.execute(
                select(AuditEvent).where(AuditEvent.action == "access.denied")
            ).scalar_one()
        assert event.actor_name == "rad"
        assert event.object_id == "GET /clients/new"
        assert '"role": "radiologist"' in event.detail

    def test_admin_passes_ordinary_checks(self, login_as) -> None:  # type: ignore[no-untyped-def]
        admin = login_as(Role.ADMIN, "root")
        assert admin.get("/clients/new").status_code == 200
        assert (
            admin.post("/api/v1/clients", json={"family_name": "Adminson"}).status_code
            == 201
        )
