"""The FastAPI application factory."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from fetlock import __version__
from fetlock.config import Settings, get_settings
from fetlock.db.session import Database
from fetlock.web.errors import install_error_handlers
from fetlock.web.limits import BodySizeLimit

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Each module exposes ``router``; pages and the JSON API (/api/v1) live side by
# side in a domain's routes module.
ROUTE_MODULES = (
    "fetlock.auth.routes",
    "fetlock.practice.routes",
    "fetlock.imaging.routes",
    "fetlock.billing.routes",
    "fetlock.dicomweb.routes",
    "fetlock.reporting.routes",
    "fetlock.viewer.routes",
    "fetlock.imaging.study_routes",
    "fetlock.imaging.reconcile_routes",
    "fetlock.jobs.routes",
)


def create_app(
    settings: Settings | None = None, database: Database | None = None
) -> FastAPI:
    """Build the web application over one database.

    ``database`` defaults to the one named by ``settings``; tests pass their own.
    """
    settings = settings or get_settings()
    database = database or Database(settings.effective_database_url)
    app = FastAPI(
        title="Fetlock",
        version=__version__,
        description="Equine practice management with imaging built in.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/docs",
    )
    app.state.settings = settings
    app.state.database = database
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit)

    for module_name in ROUTE_MODULES:
        module = importlib.import_module(module_name)
        app.include_router(module.router)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/horses", status_code=303)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:
        # Browsers ask for /favicon.ico on pages that name no icon (JSON,
        # images opened on their own); the icon is an SVG.
        return RedirectResponse("/static/favicon.svg", status_code=301)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
