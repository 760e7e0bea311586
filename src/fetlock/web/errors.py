"""Error responses that name the field, the value and the fix."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from fetlock.auth.deps import LoginRequired

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """A rule of the practice was broken; ``status_code`` picks the 4xx.

    ``field`` and ``value`` name the input at fault where there is one.
    """

    status_code = 422

    def __init__(
        self, message: str, *, field: str | None = None, value: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class ServiceUnavailable(DomainError):
    """A server part failed for now; the same request may succeed later."""

    status_code = 503


# Maximum length of a value echoed back in an error, and of a message. A
# request may carry megabytes in one field; the error names it without
# repeating it all.
ECHO_MAX = 200
MESSAGE_MAX = 1500


# Errors listed in one response at most; a request with thousands of bad
# rows gets the first ones and a count.
ERRORS_MAX = 20


def _echo(value: Any, depth: int = 0) -> Any:
    """Return ``value`` for an error body, long texts and lists cut short.

    Lists inside lists are summarised, so that nesting cannot multiply what
    is echoed.
    """
    if isinstance(value, bytes | bytearray):
        # A body that was not JSON reaches validation as raw bytes.
        return f"({len(value)} bytes that are not JSON)"
    if isinstance(value, str) and len(value) > ECHO_MAX:
        return f"{value[:ECHO_MAX]}… ({len(value)} characters)"
    if isinstance(value, list | tuple):
        if depth > 0:
            return f"[… {len(value)} items]"
        kept = [_echo(v, depth + 1) for v in value[:ERRORS_MAX]]
        if len(value) > ERRORS_MAX:
            kept.append(f"… ({len(value)} items)")
        return kept
    return value


def _shorten(message: str) -> str:
    """Cut the middle out of a long message, keeping its start and its advice."""
    if len(message) <= MESSAGE_MAX:
        return message
    tail = MESSAGE_MAX // 3
    return f"{message[: MESSAGE_MAX - tail]} … {message[-tail:]}"


def _describe_validation_error(error: dict[str, Any]) -> dict[str, Any]:
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    field = _echo(".".join(location) or "body")
    value = error.get("input")
    message = f"{field}: {error.get('msg', 'invalid value')}"
    if value is not None and not isinstance(value, dict | list):
        message += f" (got {_echo(value)!r})"
    return {
        "field": field,
        "value": _echo(value) if not isinstance(value, dict) else None,
        "message": _shorten(message),
    }


# Query parameter on which fetlock.js puts back the fields of a form whose
# submission found the session ended.
RESTORE_PARAMETER = "restore-form"


def _same_site_path(referer: str | None, request: Request) -> str | None:
    """Path and query of ``referer`` if it is a page of this site."""
    if not referer:
        return None
    parsed = urlsplit(referer)
    if parsed.netloc and parsed.netloc != request.url.netloc:
        return None
    if not parsed.path.startswith("/") or parsed.path.startswith("//"):
        return None
    return parsed.path + (f"?{parsed.query}" if parsed.query else "")


def _wants_page(request: Request) -> bool:
    """Tell a browser navigating to a page from an API or DICOMweb client."""
    if request.url.path.startswith(("/api/", "/dicomweb/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def _error_page(
    request: Request,
    status_code: int,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    from fetlock.web.templating import render

    response = render(
        request,
        "error.html",
        {"status_code": status_code, "detail": message},
        status_code=status_code,
    )
    if headers:
        response.headers.update(headers)
    return response


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        if request.method in ("GET", "HEAD"):
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            return RedirectResponse(
                f"/login?next={quote(target, safe='/')}", status_code=303
            )
        # A form sent after the session ended: its URL takes no GET, so log
        # in back to the page the form was on, where the browser puts back
        # what was typed (fetlock.js keeps it from the submit).
        page = _same_site_path(request.headers.get("referer"), request) or "/"
        back = page + ("&" if "?" in page else "?") + RESTORE_PARAMETER + "=1"
        return RedirectResponse(
            f"/login?expired=1&next={quote(back, safe='/')}", status_code=303
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        all_errors = exc.errors()
        errors = [_describe_validation_error(dict(e)) for e in all_errors[:ERRORS_MAX]]
        detail = "; ".join(e["message"] for e in errors)
        if len(all_errors) > ERRORS_MAX:
            detail += f"; and {len(all_errors) - ERRORS_MAX} more errors"
        if _wants_page(request):
            return _error_page(request, 422, detail)
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        message = _shorten(exc.message)
        if _wants_page(request):
            return _error_page(request, exc.status_code, message)
        body: dict[str, Any] = {"detail": message}
        if exc.field is not None:
            body["errors"] = [
                {"field": exc.field, "value": _echo(exc.value), "message": message}
            ]
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(OverflowError)
    @app.exception_handler(sa_exc.DataError)
    @app.exception_handler(sa_exc.StatementError)
    async def _unstorable(request: Request, exc: Exception) -> Response:
        # An id beyond the database's integer range, or text with a NUL byte,
        # fails inside the driver; the request's transaction is rolled back.
        if isinstance(exc, sa_exc.StatementError) and not isinstance(
            exc, sa_exc.DataError
        ):
            if not isinstance(exc.orig, ValueError | OverflowError):
                raise exc
        cause = exc.orig if isinstance(exc, sa_exc.StatementError) else exc
        logger.info("rejected a value the database cannot store: %s", cause)
        message = (
            "a value in the request cannot be stored: a number is out of range "
            "or a text contains a NUL character; correct the value and retry"
        )
        if _wants_page(request):
            return _error_page(request, 422, message)
        return JSONResponse({"detail": message}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_page(request) and isinstance(exc.detail, str):
            return _error_page(request, exc.status_code, exc.detail, exc.headers)
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
