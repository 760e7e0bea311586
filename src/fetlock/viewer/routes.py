"""The diagnostic viewer page, its JSON API and the site's service worker.

``/viewer/studies/{uid}`` opens one study with its horse and priors (the chart
links there); ``/sw.js`` is the service worker that keeps opened studies and
the application shell on the device; ``/api/v1/viewer/...`` returns what the
viewer and API clients need about a study.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.auth.deps import Principal, require_roles
from fetlock.auth.models import Role
from fetlock.viewer import service
from fetlock.viewer.settings import ViewerSettings, get_viewer_settings
from fetlock.web.app import STATIC_DIR
from fetlock.web.deps import get_db_session
from fetlock.web.errors import DomainError, NotFound
from fetlock.web.templating import render

logger = logging.getLogger(__name__)

router = APIRouter()

# Staff who look at images; reception does not.
VIEWER_ROLES = (Role.VETERINARIAN, Role.RADIOLOGIST, Role.TECHNICIAN)
# Staff who may mark key images: the reporting API lets radiologists write
# reports.
KEY_IMAGE_ROLES = (Role.RADIOLOGIST,)

VIEWER_BUILD_DIR = STATIC_DIR / "viewer"
VIEWER_ENTRY = "src/viewer.ts"
# Besides the viewer build, the shell the service worker stores at install.
SHELL_FILES = ("/static/fetlock.css", "/static/fetlock.js")


class ViewerNotBuilt(NotFound):
    """The frontend bundle is missing: the package was installed without Node."""


def _viewer_settings() -> ViewerSettings:
    return get_viewer_settings()


def _manifest() -> dict[str, Any]:
    path = VIEWER_BUILD_DIR / ".vite" / "manifest.json"
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ViewerNotBuilt(
            f"the viewer is not built ({path} is missing); run `make install` "
            "with Node.js 20 or newer, or `npm ci && npm run build` in frontend/",
            field="viewer",
            value=str(path),
        ) from exc
    return manifest


def viewer_assets() -> dict[str, list[str] | str]:
    """The built entry script and stylesheets, as /static/viewer/ URLs."""
    entry = _manifest()[VIEWER_ENTRY]
    return {
        "script": f"/static/viewer/{entry['file']}",
        "styles": [f"/static/viewer/{css}" for css in entry.get("css", [])],
    }


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _horse_config(context: service.ViewerContext) -> dict[str, object]:
    horse = context.horse
    if horse is None:
        return {
            "id": None,
            "name": "Not linked to a horse",
            "patientId": None,
            "chartUrl": None,
        }
    return {
        "id": horse.id,
        "name": horse.barn_name,
        "patientId": horse.patient_id,
        "chartUrl": f"/horses/{horse.id}",
    }


@router.get("/viewer/studies/{study_uid}", include_in_schema=False)
def viewer_page(
    request: Request,
    study_uid: str,
    compare: str | None = Query(None, description="prior Study Instance UID"),
    render_mode: str | None = Query(None, alias="render"),
    principal: Principal = Depends(require_roles(*VIEWER_ROLES)),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: ViewerSettings = Depends(_viewer_settings),
) -> Response:
    """Open one study in the viewer, with its horse and priors; audited."""
    context = service.viewer_context(db_session, study_uid)
    prior = service.check_prior(context, compare)
    mode = render_mode or settings.render_mode
    if mode not in ("auto", "gpu", "cpu"):
        raise DomainError(
            f"render={render_mode!r} is not a rendering mode; use auto, gpu or cpu",
            field="render",
            value=render_mode,
        )
    audit.record(
        db_session,
        principal.actor,
        "study.view",
        "study",
        context.study.study_instance_uid,
        horse_id=context.study.horse_id,
        detail={"via": "viewer", "compare": prior},
    )
    links = service.external_links(
        settings, context.study, context.horse, _origin(request)
    )
    config = {
        "study": context.card.as_config(),
        "horse": _horse_config(context),
        "priors": [p.as_config() for p in context.priors],
        "dicomwebRoot": "/dicomweb",
        "frameAccept": settings.frame_accept,
        "externalViewers": [{"name": link.name, "url": link.url} for link in links],
        "keyImages": _key_image_config(db_session, context, principal),
        "csrfToken": principal.csrf_token,
        "compareWith": prior,
        "renderMode": mode,
        "firstFrameUrl": service.first_frame_url(db_session, context.study),
    }
    try:
        assets: dict[str, Any] | None = viewer_assets()
        missing = None
    except ViewerNotBuilt as exc:
        assets, missing = None, exc.message
    return render(
        request,
        "viewer/study.html",
        {
            "principal": principal,
            "context": context,
            "config_json": json.dumps(config).replace("</", "<\\/"),
            "assets": assets,
            "missing_build": missing,
            "external_links": links,
        },
    )


def _key_image_config(
    db_session: Session, context: service.ViewerContext, principal: Principal
) -> dict[str, object] | None:
    if not principal.has_role(*KEY_IMAGE_ROLES):
        return None
    return {
        "reportsUrl": f"/api/v1/studies/{context.study.id}/reports",
        "instanceIds": service.key_image_ids(db_session, context.study),
    }


@router.get("/api/v1/viewer/studies/{study_uid}", tags=["viewer"])
def viewer_context_api(
    request: Request,
    study_uid: str,
    principal: Principal = Depends(require_roles(*VIEWER_ROLES)),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: ViewerSettings = Depends(_viewer_settings),
) -> dict[str, Any]:
    """A study with its horse, its priors (same region first) and outside viewers."""
    context = service.viewer_context(db_session, study_uid)
    links = service.external_links(
        settings, context.study, context.horse, _origin(request)
    )
    return {
        "study": context.card.as_config(),
        "horse": _horse_config(context),
        "priors": [p.as_config() for p in context.priors],
        "external_viewers": [{"name": x.name, "url": x.url} for x in links],
    }


@router.get("/api/v1/viewer/studies/{study_uid}/offline-manifest", tags=["viewer"])
def offline_manifest(
    study_uid: str,
    principal: Principal = Depends(require_roles(*VIEWER_ROLES)),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> dict[str, object]:
    """Every URL a device stores to open the study without signal, with sizes."""
    study = service.get_study(db_session, study_uid)
    return service.offline_manifest(db_session, study)


# --------------------------------------------------------------- service worker


def _shell_files() -> list[Path]:
    if not VIEWER_BUILD_DIR.is_dir():
        return []
    return sorted(
        path
        for path in VIEWER_BUILD_DIR.rglob("*")
        if path.is_file()
        and path.name != "sw.js"
        and ".vite" not in path.relative_to(VIEWER_BUILD_DIR).parts
    )


@lru_cache(maxsize=4)
def _service_worker(stamp: tuple[tuple[str, int, int], ...]) -> str:
    """The built worker with the precache list and a version in front of it."""
    urls = [name for name, _, _ in stamp if name != "/static/viewer/sw.js"]
    version = hashlib.sha256(repr(stamp).encode()).hexdigest()[:16]
    body = (VIEWER_BUILD_DIR / "sw.js").read_text()
    return (
        f"self.__FETLOCK_VERSION = {json.dumps(version)};\n"
        f"self.__FETLOCK_PRECACHE = {json.dumps(urls)};\n{body}"
    )


def _stamp() -> tuple[tuple[str, int, int], ...]:
    entries = []
    for path in [*_shell_files(), VIEWER_BUILD_DIR / "sw.js"]:
        stat = path.stat()
        url = "/static/viewer/" + path.relative_to(VIEWER_BUILD_DIR).as_posix()
        entries.append((url, stat.st_size, stat.st_mtime_ns))
    for url in SHELL_FILES:
        stat = (STATIC_DIR / url.removeprefix("/static/")).stat()
        entries.append((url, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


@router.get("/sw.js", include_in_schema=False)
def service_worker() -> Response:
    """The service worker, at the site root so that its scope is every page.

    Public: it holds no patient data, and the login page registers it too.
    """
    if not (VIEWER_BUILD_DIR / "sw.js").exists():
        return Response(
            "// Fetlock's viewer is not built: no offline support.\n",
            status_code=404,
            media_type="application/javascript",
        )
    return Response(
        _service_worker(_stamp()),
        media_type="application/javascript",
        headers={
            "Cache-Control": "no-cache",
            "Service-Worker-Allowed": "/",
        },
    )
