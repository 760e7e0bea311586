"""Passwords, login sessions, API tokens and login rate limiting."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.auth.models import ApiToken, LoginFailure, LoginSession, Role, User
from fetlock.db.base import utcnow

logger = logging.getLogger(__name__)

_hasher = PasswordHasher()

# Shortest password accepted for a staff account.
MIN_PASSWORD_LENGTH = 10


class AuthError(Exception):
    """A login or token that cannot be accepted; the message is safe to show."""


class LoginLockedOut(AuthError):
    pass


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _cached_dummy_hash(hasher_id: int) -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _dummy_hash() -> str:
    """Return a hash with the current parameters that no password matches."""
    return _cached_dummy_hash(id(_hasher))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_user(
    db_session: Session,
    *,
    username: str,
    full_name: str,
    role: Role | str,
    password: str,
    actor: audit.Actor = audit.SYSTEM,
) -> User:
    """Create a staff account; the password is stored as an Argon2 hash."""
    role = Role(role)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"password for {username!r} has {len(password)} characters; "
            f"use at least {MIN_PASSWORD_LENGTH}"
        )
    existing = db_session.execute(
        select(User).where(User.username == username)
    ).scalar_one_or_none()
    if existing is not None:
        raise ValueError(f"user name {username!r} is taken; choose another")
    user = User(
        username=username,
        full_name=full_name,
        role=role.value,
        password_hash=hash_password(password),
    )
    db_session.add(user)
    db_session.flush()
    audit.record(
        db_session, actor, "user.create", "user", user.id, detail={"role": role.value}
    )
    return user


def _recent_failures(db_session: Session, username: str, window: dt.timedelta) -> int:
    since = utcnow() - window
    return db_session.execute(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.username == username, LoginFailure.occurred_at >= since)
    ).scalar_one()


def authenticate(
    db_session: Session,
    username: str,
    password: str,
    *,
    source_address: str | None,
    max_failures: int,
    lockout: dt.timedelta,
) -> User:
    """Return the active user with these credentials, or raise ``AuthError``.

    After ``max_failures`` failures for one user name within ``lockout``, every
    attempt is refused until the window has passed, even with the right
    password. Failures are rows, so the limit holds across web nodes.
    """
    if _recent_failures(db_session, username, lockout) >= max_failures:
        minutes = int(lockout.total_seconds() // 60)
        audit.record(
            db_session,
            audit.Actor(name=username, source_address=source_address),
            "login.locked_out",
            "user",
            username,
        )
        raise LoginLockedOut(
            f"too many failed logins for {username!r}; try again in {minutes} "
            "minutes or ask an administrator"
        )
    user = db_session.execute(
        select(User).where(User.username == username)
    ).scalar_one_or_none()
    # An unknown name still costs one hash check, so that response time does
    # not reveal which user names exist.
    password_ok = verify_password(
        user.password_hash if user is not None else _dummy_hash(), password
    )
    if user is None or not user.active or not password_ok:
        db_session.add(LoginFailure(username=username, source_address=source_address))
        audit.record(
            db_session,
            audit.Actor(name=username, source_address=source_address),
            "login.failed",
            "user",
            username,
        )
        raise AuthError("user name or password is wrong")
    db_session.execute(delete(LoginFailure).where(LoginFailure.username == username))
    return user


def start_session(
    db_session: Session,
    user: User,
    *,
    source_address: str | None,
    lifetime: dt.timedelta,
) -> tuple[str, LoginSession]:
    """Create a login session; return the cookie token and the session row."""
    token = secrets.token_urlsafe(32)
    login = LoginSession(
        token_hash=token_digest(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        source_address=source_address,
        expires_at=utcnow() + lifetime,
    )
    db_session.add(login)
    audit.record(
        db_session,
        audit.Actor(name=user.username, user_id=user.id, source_address=source_address),
        "login",
        "user",
        user.id,
    )
    db_session.flush()
    return token, login


def resolve_session(db_session: Session, token: str) -> LoginSession | None:
    """Return the live login session for a cookie token, if any."""
    login = db_session.get(LoginSession, token_digest(token))
    if login is None or login.expires_at <= utcnow() or not login.user.active:
        return None
    return login


def end_session(db_session: Session, token: str) -> None:
    db_session.execute(
        delete(LoginSession).where(LoginSession.token_hash == token_digest(token))
    )


def create_api_token(
    db_session: Session,
    user: User,
    name: str,
    *,
    lifetime: dt.timedelta | None = None,
    actor: audit.Actor = audit.SYSTEM,
) -> tuple[str, ApiToken]:
    """Create an API token for ``user``; the plain token is returned only here."""
    token = "flk_" + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=token_digest(token),
        expires_at=utcnow() + lifetime if lifetime else None,
    )
    db_session.add(row)
    db_session.flush()
    audit.record(
        db_session, actor, "token.create", "api_token", row.id, detail={"user": user.id}
    )
    return token, row


def resolve_api_token(db_session: Session, token: str) -> User | None:
    row = db_session.execute(
        select(ApiToken).where(ApiToken.token_hash == token_digest(token))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    if not row.user.active:
        return None
    return row.user
