"""Authentication and role checks for routes.

Every route depends on ``require_roles(...)``. A browser that is not logged in
is redirected to the login page and an API caller gets 401. A logged-in user
without the role gets 403, and the refusal is written to the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.auth import service
from fetlock.auth.models import Role, User
from fetlock.web.deps import client_address, get_db_session

SESSION_COOKIE = "fetlock_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"


class LoginRequired(Exception):
    """Raised for a page request with no valid session; the app redirects to login."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    user: User
    csrf_token: str | None
    via_token: bool
    source_address: str | None

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(
            name=self.user.username,
            user_id=self.user.id,
            source_address=self.source_address,
        )

    def has_role(self, *roles: Role) -> bool:
        return self.user.role_enum in roles or self.user.role_enum is Role.ADMIN


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/dicomweb/"))


def get_principal(
    request: Request, db_session: Session = Depends(get_db_session, scope="function")
) -> Principal:
    """Return the caller from a bearer token or the session cookie."""
    address = client_address(request)
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        user = service.resolve_api_token(db_session, authorization[7:].strip())
        if user is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "API token is invalid, expired or revoked; create one with "
                "`fetlock token create`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Principal(user, None, True, address)

    token = request.cookies.get(SESSION_COOKIE)
    login = service.resolve_session(db_session, token) if token else None
    if login is None:
        if _wants_html(request):
            raise LoginRequired()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "not logged in; log in or send 'Authorization: Bearer <API token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Principal(login.user, login.csrf_token, False, address)


def _audit_denied(
    request: Request,
    db_session: Session,
    principal: Principal,
    roles: tuple[Role, ...],
) -> None:
    # Committed at once in the request's own session: the 403 that follows
    # rolls that session back. A second session would wait forever on SQLite,
    # where the request's session already holds the write lock.
    audit.record(
        db_session,
        principal.actor,
        "access.denied",
        "route",
        f"{request.method} {request.url.path}",
        detail={"role": principal.user.role, "required": [r.value for r in roles]},
    )
    db_session.commit()


def require_roles(
    *roles: Role, admins: bool = True
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Return a dependency admitting admins and the given roles only.

    ``admins=False`` admits the given roles only, for acts such as signing a
    clinical note that an administrator account must not perform.

    Unsafe methods from a cookie session must carry the session's CSRF token in
    the ``X-CSRF-Token`` header or the ``csrf_token`` form field.
    """

    async def dependency(
        request: Request,
        principal: Principal = Depends(get_principal),
        db_session: Session = Depends(get_db_session, scope="function"),
    ) -> Principal:
        allowed = (
            principal.has_role(*roles) if admins else principal.user.role_enum in roles
        )
        if not allowed:
            _audit_denied(request, db_session, principal, roles)
            names = ", ".join(r.value for r in roles) or "admin"
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"role {principal.user.role!r} may not do this; it needs one of: "
                f"{names}",
            )
        if request.method not in ("GET", "HEAD", "OPTIONS") and not principal.via_token:
            sent = request.headers.get(CSRF_HEADER)
            if sent is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                form = await request.form()
                value = form.get(CSRF_FORM_FIELD)
                sent = value if isinstance(value, str) else None
            if not sent or sent != principal.csrf_token:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    "CSRF token missing or wrong; reload the page and submit again",
                )
        return principal

    return dependency


# Common role groups.
ALL_STAFF = (
    Role.VETERINARIAN,
    Role.RADIOLOGIST,
    Role.TECHNICIAN,
    Role.RECEPTION,
)
CLINICIANS = (Role.VETERINARIAN,)
