"""One Jinja2 environment over every domain's ``templates/`` folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _template_dirs() -> list[str]:
    return sorted(str(p) for p in PACKAGE_DIR.glob("*/templates") if p.is_dir())


def _local_time(value: dt.datetime | None, request: Request | None = None) -> str:
    if value is None:
        return ""
    zone = None
    if request is not None:
        zone = request.app.state.settings.zone
    return (value.astimezone(zone) if zone else value).strftime("%d %b %Y %H:%M")


def _money(minor_units: int | None, currency: str = "GBP") -> str:
    if minor_units is None:
        return ""
    sign = "-" if minor_units < 0 else ""
    whole, cents = divmod(abs(minor_units), 100)
    return f"{sign}{currency} {whole:,}.{cents:02d}"


def _percent(share: int) -> str:
    """Format a share held in hundredths of a percent."""
    whole, frac = divmod(share, 100)
    return f"{whole}%" if frac == 0 else f"{whole}.{frac:02d}%"


def build_templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(_template_dirs()),
        autoescape=select_autoescape(["html", "xml"]),
    )
    env.filters["money"] = _money
    env.filters["percent"] = _percent
    env.globals["local_time"] = _local_time
    return Jinja2Templates(env=env)


templates = build_templates()


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Any:
    """Render a page; the base template reads ``principal`` for the menu."""
    return templates.TemplateResponse(request, name, context, status_code=status_code)
