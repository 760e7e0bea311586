"""Attach received studies to their horse and order, or queue them for staff.

A new study is matched to an imaging order by (0008,0050) Accession Number
first, then by (0020,000D) Study Instance UID. A modality that generates its
own Study Instance UID still copies the worklist's Accession Number, and one
that drops the accession still keeps the worklist's Study Instance UID. A
match whose (0010,0020) Patient ID names another horse is not trusted: the
study waits in the reconciliation queue with the reason, as does a study that
matches no order at all. Staff attach queued studies by hand (``attach``).
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.billing import hooks as billing_hooks
from fetlock.db.base import utcnow
from fetlock.imaging.models import (
    ImagingOrder,
    OrderStatus,
    ScheduledProcedureStepStatus,
)
from fetlock.imaging.study_models import LinkMethod, Study
from fetlock.practice.models import Horse

logger = logging.getLogger(__name__)

# Orders that staff may not attach a study to: withdrawn, or already
# reported (more images need a new order, so that they are billed and read).
CLOSED_ORDER_STATUSES = frozenset({OrderStatus.CANCELLED, OrderStatus.REPORTED})


def find_order(
    db_session: Session, *, accession_number: str | None, study_instance_uid: str
) -> tuple[ImagingOrder | None, LinkMethod | None]:
    """Return the order a study belongs to, and which attribute matched."""
    if accession_number:
        order = db_session.execute(
            select(ImagingOrder).where(
                ImagingOrder.accession_number == accession_number
            )
        ).scalar_one_or_none()
        if order is not None:
            return order, LinkMethod.ACCESSION_NUMBER
    order = db_session.execute(
        select(ImagingOrder).where(
            ImagingOrder.study_instance_uid == study_instance_uid
        )
    ).scalar_one_or_none()
    if order is not None:
        return order, LinkMethod.STUDY_INSTANCE_UID
    return None, None


def link_new_study(db_session: Session, study: Study, actor: audit.Actor) -> None:
    """Link a study just created by its first instance, or queue it."""
    _try_link(db_session, study, study.dicom_accession_number, actor)
    audit.record(
        db_session,
        actor,
        "imaging.study.received",
        "imaging_study",
        study.id,
        horse_id=study.horse_id,
        detail={
            "study_instance_uid": study.study_instance_uid,
            "accession_number": study.dicom_accession_number,
            "linked_by": study.link_method,
            "unmatched_reason": study.unmatched_reason,
        },
    )


def relink_on_accession(
    db_session: Session, study: Study, accession_number: str, actor: audit.Actor
) -> None:
    """Try again for a queued study when a later instance names an accession.

    A study whose first images carried no accession takes this one, so that
    it is found by it (QIDO-RS, the reconciliation queue) however it links.
    """
    if not study.dicom_accession_number:
        study.dicom_accession_number = accession_number
    _try_link(db_session, study, accession_number, actor)


def _try_link(
    db_session: Session,
    study: Study,
    accession_number: str | None,
    actor: audit.Actor,
) -> None:
    order, method = find_order(
        db_session,
        accession_number=accession_number,
        study_instance_uid=study.study_instance_uid,
    )
    if order is None or method is None:
        study.unmatched_reason = (
            f"no order has (0008,0050) Accession Number {accession_number!r} or "
            f"(0020,000D) Study Instance UID {study.study_instance_uid}"
            if accession_number
            else "the images carry no (0008,0050) Accession Number and no order "
            f"has (0020,000D) Study Instance UID {study.study_instance_uid}"
        )
        return
    if order.status in CLOSED_ORDER_STATUSES:
        study.unmatched_reason = (
            f"{_matched_by(method)} order {order.accession_number}, which is "
            f"{OrderStatus(order.status).value} and takes no more images; attach "
            "the study to an open order or order the views again"
        )
        return
    horse = db_session.get(Horse, order.horse_id)
    patient_id = study.dicom_patient_id
    if horse is not None and patient_id and patient_id != horse.patient_id:
        study.unmatched_reason = (
            f"{_matched_by(method)} order {order.accession_number} for "
            f"{horse.barn_name} (Patient ID {horse.patient_id}), but the images "
            f"carry (0010,0020) Patient ID {patient_id!r}; check which horse was "
            "imaged and attach the study by hand"
        )
        return
    _set_link(db_session, study, order.horse_id, order, method, actor, user_id=None)


def _matched_by(method: LinkMethod) -> str:
    if method is LinkMethod.ACCESSION_NUMBER:
        return "(0008,0050) Accession Number matches"
    return "(0020,000D) Study Instance UID matches"


def _set_link(
    db_session: Session,
    study: Study,
    horse_id: int,
    order: ImagingOrder | None,
    method: LinkMethod,
    actor: audit.Actor,
    *,
    user_id: int | None,
) -> None:
    previous = (study.horse_id, study.order_id)
    study.horse_id = horse_id
    study.order_id = order.id if order is not None else None
    study.link_method = method
    study.linked_at = utcnow()
    study.linked_by_id = user_id
    study.unmatched_reason = None
    if order is not None:
        _start_on_images(order, study.linked_at)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "imaging.study.linked",
        "imaging_study",
        study.id,
        horse_id=horse_id,
        detail={
            "study_instance_uid": study.study_instance_uid,
            "order_accession_number": order.accession_number if order else None,
            "method": method.value,
            "previous_horse_id": previous[0],
            "previous_order_id": previous[1],
            "dicom_patient_id": study.dicom_patient_id,
            "dicom_accession_number": study.dicom_accession_number,
        },
    )
    logger.info(
        "study %s linked to horse %d%s by %s",
        study.id,
        horse_id,
        f" and order {order.accession_number}" if order else "",
        method.value,
    )


def _start_on_images(order: ImagingOrder, now: dt.datetime) -> None:
    """Mark a scheduled order started once images for it arrive.

    A modality that sends no MPPS never reports the step started, and the
    order would stay on the worklist after its images are in. An MPPS
    N-CREATE that follows finds the order started and leaves it so; its
    N-SET still completes or discontinues it.
    """
    if order.status != OrderStatus.SCHEDULED:
        return
    order.status = OrderStatus.IN_PROGRESS
    order.started_at = order.started_at or now
    order.updated_at = now
    for step in order.steps:
        if step.status == ScheduledProcedureStepStatus.SCHEDULED:
            step.status = ScheduledProcedureStepStatus.STARTED
    logger.info(
        "order %s started: its first images arrived before any MPPS",
        order.accession_number,
    )


class LinkError(ValueError):
    """Staff asked for a link that cannot be made; ``field`` names the input."""

    def __init__(self, message: str, *, field: str, value: object) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


def attach(
    db_session: Session,
    study: Study,
    *,
    horse_id: int,
    order_id: int | None,
    actor: audit.Actor,
) -> None:
    """Attach a study to a horse and (optionally) one of its orders, by hand.

    The study's DICOM attributes are left as received; the link is audited
    with the previous one. An order of another horse is refused. An order may
    hold several studies (a modality that starts a new study per session).
    """
    horse = db_session.get(Horse, horse_id)
    if horse is None:
        raise LinkError(
            f"horse {horse_id} does not exist; pick a horse from the search",
            field="horse_id",
            value=horse_id,
        )
    order: ImagingOrder | None = None
    if order_id is not None:
        order = db_session.get(ImagingOrder, order_id)
        if order is None:
            raise LinkError(
                f"order {order_id} does not exist; pick one of the horse's orders "
                "or none",
                field="order_id",
                value=order_id,
            )
        if order.horse_id != horse_id:
            raise LinkError(
                f"order {order.accession_number} is for another horse, not "
                f"{horse.barn_name}; pick one of {horse.barn_name}'s orders",
                field="order_id",
                value=order_id,
            )
        if order.status in CLOSED_ORDER_STATUSES:
            raise LinkError(
                f"order {order.accession_number} is {OrderStatus(order.status).value} "
                "and takes no more images; pick an open order, none, or order "
                "the views again from the chart",
                field="order_id",
                value=order_id,
            )
    _set_link(
        db_session,
        study,
        horse_id,
        order,
        LinkMethod.STAFF,
        actor,
        user_id=actor.user_id,
    )
    if order is not None:
        billing_hooks.on_study_received(db_session, study, actor)
