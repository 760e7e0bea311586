"""The reconciliation queue: studies that matched no order, and their fixes.

A study lands here when its images named no known order, or named one whose
horse has another (0010,0020) Patient ID (an unscheduled walk-in, a plate
used offline, a typing slip at the modality). Staff pick the horse and,
usually, the order; ``attach`` records the link and its audit event. The
study's DICOM attributes stay as received.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.imaging import linking
from fetlock.imaging.models import ImagingOrder
from fetlock.imaging.study_models import Study
from fetlock.practice import service as practice_service
from fetlock.practice.models import Horse
from fetlock.web.errors import DomainError, NotFound


@dataclass
class Suggestion:
    """A horse the study may belong to, why, and the order that fits best."""

    horse: Horse
    why: str
    order: ImagingOrder | None = None


@dataclass
class Candidates:
    suggestions: list[Suggestion] = field(default_factory=list)


def get_study(db_session: Session, study_id: int) -> Study:
    """Return study ``study_id`` or raise NotFound naming the id."""
    study = db_session.get(Study, study_id)
    if study is None:
        raise NotFound(
            f"study {study_id} does not exist; it may have been removed",
            field="study_id",
            value=study_id,
        )
    return study


def _horse_name_from_patient_name(patient_name: str | None) -> str | None:
    # Fetlock writes Patient's Name as Owner^Horse; other software may write
    # the horse alone.
    if not patient_name:
        return None
    parts = [p.strip() for p in patient_name.split("^") if p.strip()]
    if not parts:
        return None
    return parts[1] if len(parts) > 1 else parts[0]


def suggestions(db_session: Session, study: Study) -> list[Suggestion]:
    """Horses (and orders) the study's own attributes point at, best first."""
    found: list[Suggestion] = []
    seen: set[int] = set()

    def add(horse: Horse | None, why: str, order: ImagingOrder | None = None) -> None:
        if horse is not None and horse.id not in seen:
            seen.add(horse.id)
            found.append(Suggestion(horse, why, order))

    if study.dicom_accession_number:
        order = db_session.execute(
            select(ImagingOrder).where(
                ImagingOrder.accession_number == study.dicom_accession_number
            )
        ).scalar_one_or_none()
        if order is not None and order.status in linking.CLOSED_ORDER_STATUSES:
            # The horse is still a good guess; its closed order is not.
            add(
                db_session.get(Horse, order.horse_id),
                f"order {order.accession_number} has this Accession Number but "
                f"is {order.status.replace('_', ' ')}",
            )
        elif order is not None:
            add(
                db_session.get(Horse, order.horse_id),
                f"order {order.accession_number} has this Accession Number",
                order,
            )
    if study.dicom_patient_id:
        horse = practice_service.get_horse_by_patient_id(
            db_session, study.dicom_patient_id
        )
        add(horse, f"Patient ID {study.dicom_patient_id} is this horse's")
    name = _horse_name_from_patient_name(study.dicom_patient_name)
    if name:
        for horse in practice_service.search_horses(db_session, name, limit=5):
            add(
                horse, f"its name matches the Patient's Name {study.dicom_patient_name}"
            )

    for suggestion in found:
        if suggestion.order is None:
            orders = open_orders(db_session, suggestion.horse.id)
            suggestion.order = orders[0] if len(orders) == 1 else None
    return found


def open_orders(db_session: Session, horse_id: int) -> list[ImagingOrder]:
    """Return the horse's orders a study may be attached to, newest first."""
    return list(
        db_session.execute(
            select(ImagingOrder)
            .where(
                ImagingOrder.horse_id == horse_id,
                ImagingOrder.status.not_in(linking.CLOSED_ORDER_STATUSES),
            )
            .order_by(ImagingOrder.scheduled_start.desc(), ImagingOrder.id.desc())
            .limit(50)
        )
        .unique()
        .scalars()
    )


def attach(
    db_session: Session,
    study: Study,
    *,
    horse_id: int,
    order_id: int | None,
    actor: audit.Actor,
) -> None:
    """Attach a queued (or wrongly linked) study to a horse and order."""
    try:
        linking.attach(
            db_session, study, horse_id=horse_id, order_id=order_id, actor=actor
        )
    except linking.LinkError as exc:
        raise DomainError(str(exc), field=exc.field, value=exc.value) from exc
