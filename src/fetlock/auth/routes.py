"""Login and logout pages."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.auth import service
from fetlock.auth.deps import ALL_STAFF, SESSION_COOKIE, Principal, require_roles
from fetlock.config import Settings
from fetlock.web.deps import client_address, get_db_session, get_settings
from fetlock.web.templating import render

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only follow same-site relative paths after login."""
    if not target:
        return "/"
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/"):
        return "/"
    return target


@router.get("/login")
def login_page(
    request: Request, next: str | None = None, expired: bool = False
) -> Response:
    return render(
        request, "auth/login.html", {"next": _safe_next(next), "expired": expired}
    )


@router.post("/login")
def login(
    request: Request,
    username: str = Form(...),
    password: str = Form(...),
    next: str | None = Form(None),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    address = client_address(request)
    try:
        user = service.authenticate(
            db_session,
            username.strip(),
            password,
            source_address=address,
            max_failures=settings.login_max_failures,
            lockout=dt.timedelta(minutes=settings.login_lockout_minutes),
        )
    except service.LoginLockedOut as exc:
        return render(
            request,
            "auth/login.html",
            {"error": str(exc), "next": _safe_next(next), "username": username},
            status_code=429,
        )
    except service.AuthError as exc:
        return render(
            request,
            "auth/login.html",
            {"error": str(exc), "next": _safe_next(next), "username": username},
            status_code=401,
        )
    token, _login = service.start_session(
        db_session,
        user,
        source_address=address,
        lifetime=dt.timedelta(hours=settings.session_hours),
    )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    return response


@router.post("/logout")
def logout(
    request: Request,
    principal: Principal = Depends(require_roles(*ALL_STAFF)),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        service.end_session(db_session, token)
        audit.record(db_session, principal.actor, "logout", "user", principal.user.id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    # Tells the browser to drop cached images and pages of this origin.
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response
