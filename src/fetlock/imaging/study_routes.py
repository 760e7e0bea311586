"""Received studies on the chart: the studies fragment, thumbnails, JSON API.

The chart embeds ``<section data-refresh="/horses/{id}/studies-section">``,
which the browser fetches every two seconds. A study shows up there as soon
as its first image is indexed, and its thumbnail as soon as the thumbnail
job has run. Every staff role reads studies.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.auth.deps import ALL_STAFF, Principal, require_roles
from fetlock.config import Settings
from fetlock.imaging import study_service
from fetlock.imaging.models import ImagingOrder
from fetlock.imaging.reconcile import get_study
from fetlock.imaging.study_models import Study
from fetlock.imaging.study_schemas import StudyOut, ViewComparisonOut
from fetlock.practice import service as practice_service
from fetlock.storage import get_blob_store
from fetlock.web.deps import get_db_session, get_settings
from fetlock.web.errors import NotFound
from fetlock.web.templating import render

router = APIRouter()

can_read = require_roles(*ALL_STAFF)

# Thumbnails never change once written (a new one gets a new key), so the
# browser may keep them; "private" keeps them out of shared caches.
THUMBNAIL_CACHE_CONTROL = "private, max-age=86400"


@router.get("/horses/{horse_id}/studies-section", include_in_schema=False)
def studies_section(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    """Render the chart's studies fragment: date, modality, views, status."""
    horse = practice_service.get_horse(db_session, horse_id)
    summaries = study_service.summarise(
        db_session, study_service.studies_for_horse(db_session, horse.id)
    )
    return render(
        request,
        "imaging/studies_section.html",
        {"principal": principal, "horse": horse, "summaries": summaries},
    )


@router.get("/imaging/studies/{study_id}/thumbnail.jpg", include_in_schema=False)
def study_thumbnail(
    study_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Send the study's representative thumbnail (JPEG), once rendered."""
    study = get_study(db_session, study_id)
    key = study.thumbnail_blob_key
    blobs = get_blob_store(settings)
    if key is None or not blobs.exists(key):
        raise NotFound(
            f"study {study_id} has no thumbnail yet; it is made a few seconds "
            "after the first image arrives",
            field="study_id",
            value=study_id,
        )
    with blobs.open(key) as stream:
        data = stream.read()
    return Response(
        data,
        media_type="image/jpeg",
        headers={"Cache-Control": THUMBNAIL_CACHE_CONTROL},
    )


@router.get("/api/v1/horses/{horse_id}/studies", tags=["studies"])
def list_horse_studies(
    horse_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[StudyOut]:
    """List the horse's received studies, newest first."""
    horse = practice_service.get_horse(db_session, horse_id)
    studies = study_service.studies_for_horse(db_session, horse.id)
    return [StudyOut.of(s) for s in study_service.summarise(db_session, studies)]


@router.get("/api/v1/imaging/studies/{study_id}", tags=["studies"])
def read_study(
    study_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> StudyOut:
    study = get_study(db_session, study_id)
    return StudyOut.of(study_service.summarise(db_session, [study])[0])


@router.get("/orders/{order_id}/views-section", include_in_schema=False)
def order_views_section(
    request: Request,
    order_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    """Render the order page's fragment: views ordered against views received."""
    order = _order(db_session, order_id)
    studies = list(
        db_session.execute(
            select(Study).where(Study.order_id == order.id).order_by(Study.id)
        ).scalars()
    )
    return render(
        request,
        "imaging/order_views_section.html",
        {
            "principal": principal,
            "order": order,
            "studies": studies,
            "views": study_service.order_view_comparison(db_session, order),
        },
    )


def _order(db_session: Session, order_id: int) -> ImagingOrder:
    order = db_session.get(ImagingOrder, order_id)
    if order is None:
        raise NotFound(
            f"imaging order {order_id} does not exist",
            field="order_id",
            value=order_id,
        )
    return order


@router.get("/api/v1/imaging/orders/{order_id}/views", tags=["studies"])
def order_views(
    order_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ViewComparisonOut:
    """Compare the views ordered with those received, over the order's studies."""
    order = _order(db_session, order_id)
    return ViewComparisonOut.of(study_service.order_view_comparison(db_session, order))
