"""Rules for reading, reporting and signing.

A radiologist claims a study from the reading queue, writes a draft on a
template with coded findings, may issue it as preliminary, and signs it.
Signing checks the content, freezes it as canonical JSON with its SHA-256,
indexes it for findings search, moves the order to ``reported``, notifies
the requesting clinician and enqueues the job that writes the signed PDF and
the representative thumbnail, all in the caller's transaction. A signed
report never changes: an addendum or an amendment is a new version.

Every function takes the caller's ``db_session`` and leaves committing to
the caller. Errors are ``fetlock.web.errors.DomainError`` subclasses naming
the field, the value and the fix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, exists, func, or_, select
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.auth.models import Role, User
from fetlock.db.base import utcnow
from fetlock.imaging.models import ImagingOrder, OrderStatus
from fetlock.imaging.study_models import Instance, Series, Study
from fetlock.imaging.study_service import late_images
from fetlock.practice.models import Horse
from fetlock.reporting import search, vocabulary
from fetlock.reporting.models import (
    DocumentStatus,
    Notification,
    ReadingClaim,
    Report,
    ReportFinding,
    ReportKeyImage,
    ReportKind,
    ReportStatus,
    TermKind,
)
from fetlock.reporting.schemas import FindingIn, ReportContentIn
from fetlock.web.errors import Conflict, DomainError, NotFound

logger = logging.getLogger(__name__)

# Name of the job that writes a signed report's PDF and thumbnail.
DOCUMENTS_JOB = "reporting.documents"
# Version tag inside the signed canonical JSON; change it only with a new
# layout, so that old signatures still verify.
CONTENT_SCHEMA = "fetlock.report/1"
# Order of (0040,1003) Requested Procedure Priority in the reading queue.
PRIORITY_RANK = {"STAT": 0, "HIGH": 1, "MEDIUM": 2, "ROUTINE": 3, "LOW": 4}
# Orders in these states move to ``reported`` when their report is signed.
REPORTABLE_ORDER_STATES = (
    OrderStatus.SCHEDULED,
    OrderStatus.IN_PROGRESS,
    OrderStatus.COMPLETED,
    OrderStatus.DISCONTINUED,
)


# Words of a procedure's body region or name that pick a template.
REGION_WORDS = {
    "foot": "foot",
    "navicular": "foot",
    "hoof": "foot",
    "pastern": "pastern",
    "fetlock": "fetlock",
    "carpu": "carpus",
    "knee": "carpus",
    "hock": "tarsus",
    "tarsu": "tarsus",
    "stifle": "stifle",
    "neck": "neck_back",
    "back": "neck_back",
    "spine": "neck_back",
    "thorax": "thorax",
    "chest": "thorax",
    "tendon": "tendons",
    "metacarpu": "tendons",
    "metatarsu": "tendons",
    "airway": "upper_airway",
    "larynx": "upper_airway",
}


class Forbidden(DomainError):
    status_code = 403


# --------------------------------------------------------------------------
# Look-ups
# --------------------------------------------------------------------------


def get_study(db_session: Session, study_id: int) -> Study:
    """Return study ``study_id`` or raise ``NotFound`` naming the id."""
    study = db_session.get(Study, study_id)
    if study is None:
        raise NotFound(
            f"study {study_id} does not exist; pick a study from the reading "
            "queue at /reading",
            field="study_id",
            value=study_id,
        )
    return study


def get_report(db_session: Session, report_id: int) -> Report:
    """Return report ``report_id`` or raise ``NotFound`` naming the id."""
    report = db_session.get(Report, report_id)
    if report is None:
        raise NotFound(
            f"report {report_id} does not exist; list a study's reports at "
            "/api/v1/studies/{study_id}/reports",
            field="report_id",
            value=report_id,
        )
    return report


def reports_for_study(db_session: Session, study_id: int) -> list[Report]:
    """Every version of every report on a study, oldest first."""
    return list(
        db_session.execute(
            select(Report).where(Report.study_id == study_id).order_by(Report.version)
        ).scalars()
    )


def open_report_for_study(db_session: Session, study_id: int) -> Report | None:
    """The draft or preliminary version of a study's report, if any."""
    return db_session.execute(
        select(Report)
        .where(
            Report.study_id == study_id,
            Report.status.in_((ReportStatus.DRAFT, ReportStatus.PRELIMINARY)),
        )
        .order_by(Report.version.desc())
        .limit(1)
    ).scalar_one_or_none()


def study_images(db_session: Session, study_id: int) -> list[tuple[Instance, Series]]:
    """The study's instances with their series, in series and instance order."""
    rows = db_session.execute(
        select(Instance, Series)
        .join(Series, Instance.series_id == Series.id)
        .where(Instance.study_id == study_id)
        .order_by(
            Series.series_number, Series.id, Instance.instance_number, Instance.id
        )
    ).all()
    return [(instance, series) for instance, series in rows]


def _study_modality(db_session: Session, study: Study) -> str | None:
    order = db_session.get(ImagingOrder, study.order_id) if study.order_id else None
    if order is not None:
        return order.modality
    return db_session.execute(
        select(Series.modality)
        .where(Series.study_id == study.id, Series.modality.is_not(None))
        .limit(1)
    ).scalar_one_or_none()


def _user(db_session: Session, user_id: int | None) -> User | None:
    return db_session.get(User, user_id) if user_id is not None else None


# --------------------------------------------------------------------------
# The reading queue and claims
# --------------------------------------------------------------------------


@dataclass
class QueueItem:
    """A study awaiting its final report, with what the queue shows."""

    study: Study
    horse: Horse | None
    order: ImagingOrder | None
    modality: str | None
    priority: str
    waiting_since: dt.datetime
    requesting_clinician: User | None
    claimed_by: User | None
    report: Report | None
    # Images stored after the study's last signed report: the study is back
    # in the queue for an addendum.
    images_after_report: int = 0


def reading_queue(
    db_session: Session,
    *,
    modality: str | None = None,
    clinician_id: int | None = None,
    limit: int = 200,
) -> list[QueueItem]:
    """Studies linked to a horse that await a report, by priority then age.

    A study awaits a report until one is signed, and again once images arrive
    after the last signed version, until an addendum is signed. Such a study
    waits from its first late image.
    """
    has_final = exists().where(
        Report.study_id == Study.id, Report.status == ReportStatus.FINAL
    )
    rank = case(
        *((ImagingOrder.priority == p, r) for p, r in PRIORITY_RANK.items()),
        else_=PRIORITY_RANK["ROUTINE"],
    )
    late = late_images().subquery()
    waiting_since = func.coalesce(late.c.first_received_at, Study.received_at)
    query = (
        select(Study, ImagingOrder, late.c.images, waiting_since.label("since"))
        .outerjoin(ImagingOrder, Study.order_id == ImagingOrder.id)
        .outerjoin(late, late.c.study_id == Study.id)
        .where(
            Study.horse_id.is_not(None),
            or_(~has_final, late.c.study_id.is_not(None)),
        )
    )
    if modality:
        query = query.where(
            or_(
                ImagingOrder.modality == modality,
                Study.id.in_(
                    select(Series.study_id).where(Series.modality == modality)
                ),
            )
        )
    if clinician_id is not None:
        query = query.where(ImagingOrder.requesting_clinician_id == clinician_id)
    rows = db_session.execute(
        query.order_by(rank, waiting_since, Study.id).limit(limit)
    ).all()

    study_ids = [row.Study.id for row in rows]
    claims = {
        c.study_id: c
        for c in db_session.execute(
            select(ReadingClaim).where(ReadingClaim.study_id.in_(study_ids))
        ).scalars()
    }
    open_reports = {
        r.study_id: r
        for r in db_session.execute(
            select(Report).where(
                Report.study_id.in_(study_ids),
                Report.status.in_((ReportStatus.DRAFT, ReportStatus.PRELIMINARY)),
            )
        ).scalars()
    }
    modalities = dict(
        db_session.execute(
            select(Series.study_id, func.min(Series.modality))
            .where(Series.study_id.in_(study_ids))
            .group_by(Series.study_id)
        ).all()
    )
    items = []
    for study, order, late_count, since in rows:
        claim = claims.get(study.id)
        items.append(
            QueueItem(
                study=study,
                horse=db_session.get(Horse, study.horse_id) if study.horse_id else None,
                order=order,
                modality=(order.modality if order else None)
                or modalities.get(study.id),
                priority=(order.priority if order else None) or "ROUTINE",
                waiting_since=since,
                requesting_clinician=(
                    _user(db_session, order.requesting_clinician_id) if order else None
                ),
                claimed_by=_user(db_session, claim.user_id) if claim else None,
                report=open_reports.get(study.id),
                images_after_report=int(late_count or 0),
            )
        )
    return items


def get_claim(db_session: Session, study_id: int) -> ReadingClaim | None:
    return db_session.get(ReadingClaim, study_id)


def claim_study(
    db_session: Session,
    actor: audit.Actor,
    user: User,
    study_id: int,
    *,
    take_over: bool = False,
) -> ReadingClaim:
    """Mark ``user`` as reading the study.

    A study another radiologist is reading is refused (409) unless
    ``take_over`` is set, which moves the claim and is audited as such.
    """
    study = get_study(db_session, study_id)
    claim = db_session.execute(
        select(ReadingClaim).where(ReadingClaim.study_id == study_id).with_for_update()
    ).scalar_one_or_none()
    previous = None
    if claim is not None and claim.user_id != user.id:
        holder = _user(db_session, claim.user_id)
        holder_name = holder.full_name if holder else f"user {claim.user_id}"
        if not take_over:
            raise Conflict(
                f"study {study_id} is being read by {holder_name} since "
                f"{claim.claimed_at:%Y-%m-%d %H:%M} UTC; ask them, or take it over "
                "with take_over=true",
                field="study_id",
                value=study_id,
            )
        previous = claim.user_id
        claim.user_id = user.id
        claim.claimed_at = utcnow()
    elif claim is None:
        claim = ReadingClaim(study_id=study_id, user_id=user.id, claimed_at=utcnow())
        db_session.add(claim)
    db_session.flush()
    audit.record(
        db_session, actor, "reading.claim", "study", study_id,
        horse_id=study.horse_id, detail={"taken_from": previous},
    )  # fmt: skip
    return claim


def release_claim(
    db_session: Session, actor: audit.Actor, user: User, study_id: int
) -> None:
    """Give a study back to the queue; only its reader (or an admin) may."""
    study = get_study(db_session, study_id)
    claim = db_session.get(ReadingClaim, study_id)
    if claim is None:
        return
    if claim.user_id != user.id and user.role_enum is not Role.ADMIN:
        raise Conflict(
            f"study {study_id} is claimed by another user; only they or an admin "
            "can release it",
            field="study_id",
            value=study_id,
        )
    db_session.delete(claim)
    db_session.flush()
    audit.record(
        db_session, actor, "reading.release", "study", study_id,
        horse_id=study.horse_id,
    )  # fmt: skip


# --------------------------------------------------------------------------
# Drafting
# --------------------------------------------------------------------------


def _template_for(
    db_session: Session, study: Study, requested: str | None
) -> str | None:
    if requested:
        if vocabulary.get_template(db_session, requested) is None:
            raise DomainError(
                f"template {requested!r} does not exist; pick one of: "
                + ", ".join(t.key for t in vocabulary.templates(db_session)),
                field="template",
                value=requested,
            )
        return requested
    order = db_session.get(ImagingOrder, study.order_id) if study.order_id else None
    if order is None:
        return None
    known = {t.key for t in vocabulary.templates(db_session)}
    named = search.words(f"{order.procedure.body_region} {order.procedure.name}")
    for word in named:
        key = REGION_WORDS.get(word)
        if key in known:
            return key
    if order.modality == "US" and "tendons" in known:
        return "tendons"
    return None


def create_report(
    db_session: Session,
    actor: audit.Actor,
    user: User,
    study_id: int,
    *,
    template: str | None = None,
) -> Report:
    """Start the first report on a study as a draft written by ``user``.

    Refused when the study does not exist (404), already has a report being
    written, or already has a final report (both 409).
    """
    study = get_study(db_session, study_id)
    existing = open_report_for_study(db_session, study_id)
    if existing is not None:
        raise Conflict(
            f"study {study_id} already has report {existing.id} in "
            f"{existing.status}; open it at /reports/{existing.id}/edit",
            field="study_id",
            value=study_id,
        )
    final = _current_final(db_session, study_id)
    if final is not None:
        raise Conflict(
            f"study {study_id} already has signed report {final.id}; write an "
            f"addendum or amendment with POST /api/v1/reports/{final.id}/addenda",
            field="study_id",
            value=study_id,
        )
    template_key = _template_for(db_session, study, template)
    order = db_session.get(ImagingOrder, study.order_id) if study.order_id else None
    template_row = (
        vocabulary.get_template(db_session, template_key) if template_key else None
    )
    report = Report(
        study_id=study.id,
        order_id=study.order_id,
        horse_id=study.horse_id,
        version=_next_version(db_session, study.id),
        kind=ReportKind.REPORT,
        status=ReportStatus.DRAFT,
        template_key=template_key,
        modality=_study_modality(db_session, study),
        title=(template_row.name if template_row else study.study_description or ""),
        clinical_history=(order.clinical_history or "") if order else "",
        technique=template_row.technique if template_row else "",
        requesting_clinician_id=order.requesting_clinician_id if order else None,
        author_id=user.id,
        document_status=DocumentStatus.NONE,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    db_session.add(report)
    db_session.flush()
    audit.record(
        db_session, actor, "report.create", "report", report.id,
        horse_id=report.horse_id,
        detail={"study_id": study.id, "template": template_key},
    )  # fmt: skip
    return report


def open_or_create_report(
    db_session: Session, actor: audit.Actor, user: User, study_id: int
) -> Report:
    """Return the study's report being written, or start one.

    A study with a signed report gets an addendum to it, as when images
    arrived after sign-off.
    """
    existing = open_report_for_study(db_session, study_id)
    if existing is not None:
        return existing
    final = _current_final(db_session, study_id, outside=False)
    if final is not None:
        return start_follow_up(db_session, actor, user, final.id, ReportKind.ADDENDUM)
    return create_report(db_session, actor, user, study_id)


def _next_version(db_session: Session, study_id: int) -> int:
    latest = db_session.execute(
        select(func.max(Report.version)).where(Report.study_id == study_id)
    ).scalar_one()
    return int(latest or 0) + 1


def _current_final(
    db_session: Session, study_id: int, *, outside: bool = True
) -> Report | None:
    """Return the study's newest signed report, not an addendum.

    ``outside=False`` leaves out reports received from elsewhere.
    """
    kinds = (
        [ReportKind.ADDENDUM] if outside else [ReportKind.ADDENDUM, ReportKind.EXTERNAL]
    )
    return db_session.execute(
        select(Report)
        .where(
            Report.study_id == study_id,
            Report.status == ReportStatus.FINAL,
            Report.superseded_by_id.is_(None),
            Report.kind.not_in(kinds),
        )
        .order_by(Report.version.desc())
        .limit(1)
    ).scalar_one_or_none()


def _refuse_if_signed(report: Report) -> None:
    if report.status == ReportStatus.FINAL:
        raise Conflict(
            f"report {report.id} was signed on {report.signed_at:%Y-%m-%d %H:%M} "
            "UTC and cannot change; write an addendum or amendment with "
            f"POST /api/v1/reports/{report.id}/addenda",
            field="report_id",
            value=report.id,
        )


def _check_finding_values(
    db_session: Session, index: int, finding: FindingIn, template: str | None
) -> tuple[Any, Any]:
    """Check the values a finding names exist; return its structure and finding."""
    where = f"findings[{index}]"
    limbs = vocabulary.limbs()
    if finding.limb and finding.limb not in limbs:
        raise DomainError(
            f"{where}.limb {finding.limb!r} is not a limb; use one of "
            + ", ".join(limbs),
            field=f"{where}.limb",
            value=finding.limb,
        )
    structure = None
    if finding.structure:
        structure = vocabulary.get_term(
            db_session, TermKind.STRUCTURE, finding.structure
        )
        if structure is None:
            raise DomainError(
                f"{where}.structure {finding.structure!r} is not in the vocabulary; "
                "pick a structure from /api/v1/reporting/vocabulary",
                field=f"{where}.structure",
                value=finding.structure,
            )
    term = None
    if finding.finding:
        term = vocabulary.get_term(db_session, TermKind.FINDING, finding.finding)
        if term is None:
            raise DomainError(
                f"{where}.finding {finding.finding!r} is not in the vocabulary; "
                "pick a finding from /api/v1/reporting/vocabulary, or 'other' with "
                "the detail written out",
                field=f"{where}.finding",
                value=finding.finding,
            )
    region = finding.region or template
    if region and vocabulary.get_template(db_session, region) is None:
        raise DomainError(
            f"{where}.region {region!r} is not a template region; use one of "
            + ", ".join(t.key for t in vocabulary.templates(db_session)),
            field=f"{where}.region",
            value=region,
        )
    return structure, term


def _key_image_instances(
    db_session: Session, report: Report, content: ReportContentIn
) -> list[Instance]:
    instances = []
    seen = set()
    for index, key_image in enumerate(content.key_images):
        instance = db_session.get(Instance, key_image.instance_id)
        if instance is None or instance.study_id != report.study_id:
            raise DomainError(
                f"key_images[{index}].instance_id {key_image.instance_id} is not an "
                f"instance of study {report.study_id}; mark images shown beside "
                "the report",
                field=f"key_images[{index}].instance_id",
                value=key_image.instance_id,
            )
        if instance.id in seen:
            raise DomainError(
                f"key_images[{index}].instance_id {instance.id} is marked twice; "
                "mark each key image once",
                field=f"key_images[{index}].instance_id",
                value=instance.id,
            )
        seen.add(instance.id)
        instances.append(instance)
    return instances


def _apply_content(
    db_session: Session, report: Report, content: ReportContentIn
) -> None:
    template = content.template or report.template_key
    if (
        content.template
        and vocabulary.get_template(db_session, content.template) is None
    ):
        raise DomainError(
            f"template {content.template!r} does not exist; pick one of: "
            + ", ".join(t.key for t in vocabulary.templates(db_session)),
            field="template",
            value=content.template,
        )
    checked = [
        _check_finding_values(db_session, i, f, template)
        for i, f in enumerate(content.findings)
    ]
    instances = _key_image_instances(db_session, report, content)

    # Every value is valid: replace the content whole.
    report.template_key = template
    report.clinical_history = content.clinical_history
    report.technique = content.technique
    report.impression = content.impression
    report.recommendations = content.recommendations
    report.findings.clear()
    report.key_images.clear()
    db_session.flush()
    for ordinal, (finding, (structure, term)) in enumerate(
        zip(content.findings, checked, strict=True)
    ):
        report.findings.append(
            ReportFinding(
                ordinal=ordinal,
                limb=finding.limb or "",
                region_key=finding.region or template or "",
                structure_key=structure.key if structure else "",
                structure_display=structure.display if structure else "",
                structure_scheme=structure.scheme if structure else "",
                structure_code=structure.code if structure else "",
                finding_key=term.key if term else "",
                finding_display=term.display if term else "",
                finding_scheme=term.scheme if term else "",
                finding_code=term.code if term else "",
                grade=finding.grade,
                location=(finding.location or None),
                detail=finding.detail.strip(),
            )
        )
    for ordinal, (key_image, instance) in enumerate(
        zip(content.key_images, instances, strict=True)
    ):
        report.key_images.append(
            ReportKeyImage(
                instance_id=instance.id, ordinal=ordinal, caption=key_image.caption
            )
        )
    report.updated_at = utcnow()
    db_session.flush()


def update_report(
    db_session: Session,
    actor: audit.Actor,
    user: User,
    report_id: int,
    content: ReportContentIn,
) -> Report:
    """Replace the content of a draft or preliminary report (409 once signed)."""
    report = get_report(db_session, report_id)
    _refuse_if_signed(report)
    if report.kind == ReportKind.EXTERNAL:
        raise Conflict(
            f"report {report.id} was received from outside and cannot be edited",
            field="report_id",
            value=report.id,
        )
    _apply_content(db_session, report, content)
    audit.record(
        db_session, actor, "report.update", "report", report.id,
        horse_id=report.horse_id,
        detail={"status": report.status, "findings": len(report.findings)},
    )  # fmt: skip
    return report


# --------------------------------------------------------------------------
# Sign-off
# --------------------------------------------------------------------------


def check_complete(report: Report) -> None:
    """Refuse (422) a report that may not be issued: say which field is wrong."""
    for index, finding in enumerate(report.findings):
        where = f"findings[{index}]"
        if not finding.limb:
            raise DomainError(
                f"{where}.limb is missing; choose LF, RF, LH or RH, or NA for a "
                "finding that is not on a limb",
                field=f"{where}.limb",
                value=None,
            )
        if not finding.structure_key:
            raise DomainError(
                f"{where}.structure is missing; choose the anatomical structure "
                "the finding is in",
                field=f"{where}.structure",
                value=None,
            )
        if not finding.finding_key:
            raise DomainError(
                f"{where}.finding is missing; choose a finding, or 'other' and "
                "describe it in the detail",
                field=f"{where}.finding",
                value=None,
            )
        if finding.finding_key == "other" and not finding.detail:
            raise DomainError(
                f"{where}.detail is empty for an 'other' finding; describe it",
                field=f"{where}.detail",
                value="",
            )
    if not report.findings and not report.impression.strip():
        raise DomainError(
            "the report is empty: it has no findings and no impression; add at "
            "least one finding or write the impression",
            field="findings",
            value=[],
        )
    if report.kind == ReportKind.REPORT and not report.impression.strip():
        raise DomainError(
            "impression is empty; summarise the findings before signing",
            field="impression",
            value="",
        )


def canonical_content(
    db_session: Session, report: Report, signer: User, signed_at: dt.datetime
) -> dict[str, Any]:
    """The signed content of ``report``: what the SHA-256 covers.

    It names the study, the horse, every finding with its codes as shown,
    the key images by SOP Instance UID, the version this one follows (by its
    hash), the signer and the signing time, so that none of them can change
    without the hash changing.
    """
    study = db_session.get(Study, report.study_id)
    assert study is not None
    horse = db_session.get(Horse, report.horse_id) if report.horse_id else None
    order = db_session.get(ImagingOrder, report.order_id) if report.order_id else None
    previous = (
        db_session.get(Report, report.supersedes_id) if report.supersedes_id else None
    )
    key_uids = []
    for key_image in report.key_images:
        instance = db_session.get(Instance, key_image.instance_id)
        assert instance is not None
        key_uids.append(
            {"SOPInstanceUID": instance.sop_instance_uid, "caption": key_image.caption}
        )
    return {
        "schema": CONTENT_SCHEMA,
        "report": {
            "kind": report.kind,
            "version": report.version,
            "template": report.template_key,
            "supersedes_sha256": previous.content_sha256 if previous else None,
        },
        "study": {
            "StudyInstanceUID": study.study_instance_uid,
            "AccessionNumber": (
                order.accession_number if order else study.dicom_accession_number
            ),
            "StudyDate": study.study_date,
        },
        "patient": {
            "PatientID": horse.patient_id if horse else study.dicom_patient_id,
            "name": horse.barn_name if horse else study.dicom_patient_name,
        },
        "clinical_history": report.clinical_history,
        "technique": report.technique,
        "findings": [
            {
                "limb": f.limb,
                "region": f.region_key,
                "structure": {
                    "key": f.structure_key,
                    "display": f.structure_display,
                    "scheme": f.structure_scheme,
                    "code": f.structure_code,
                },
                "finding": {
                    "key": f.finding_key,
                    "display": f.finding_display,
                    "scheme": f.finding_scheme,
                    "code": f.finding_code,
                },
                "grade": f.grade,
                "location": f.location,
                "detail": f.detail,
            }
            for f in report.findings
        ],
        "impression": report.impression,
        "recommendations": report.recommendations,
        "key_images": key_uids,
        "signed_by": {"username": signer.username, "name": signer.full_name},
        "signed_at": signed_at.astimezone(dt.UTC).isoformat(),
    }


def canonical_json(content: dict[str, Any]) -> str:
    """Serialise ``content`` canonically: sorted keys, no spaces, UTF-8 text."""
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def content_digest(content_json: str) -> str:
    return hashlib.sha256(content_json.encode("utf-8")).hexdigest()


def verify_signature(db_session: Session, report: Report) -> bool:
    """True when a signed report's rows still match what was signed."""
    if report.status != ReportStatus.FINAL or report.content_json is None:
        return False
    if content_digest(report.content_json) != report.content_sha256:
        return False
    if report.kind == ReportKind.EXTERNAL:
        return True
    signer = _user(db_session, report.signed_by_id)
    if signer is None or report.signed_at is None:
        return False
    rebuilt = canonical_json(
        canonical_content(db_session, report, signer, report.signed_at)
    )
    return rebuilt == report.content_json


def _require_signer(
    db_session: Session, actor: audit.Actor, user: User, report: Report
) -> None:
    if user.role_enum is not Role.RADIOLOGIST:
        audit.record(
            db_session, actor, "report.sign.denied", "report", report.id,
            horse_id=report.horse_id, detail={"role": user.role},
        )  # fmt: skip
        raise Forbidden(
            f"user {user.username!r} has role {user.role!r}; only a radiologist "
            "may sign a report",
            field="role",
            value=user.role,
        )


def issue_preliminary(
    db_session: Session, actor: audit.Actor, user: User, report_id: int
) -> Report:
    """Issue a draft as preliminary: shown on the chart, still editable."""
    report = get_report(db_session, report_id)
    _refuse_if_signed(report)
    check_complete(report)
    report.status = ReportStatus.PRELIMINARY
    report.preliminary_at = utcnow()
    report.preliminary_by_id = user.id
    db_session.flush()
    _notify_clinician(db_session, report, "preliminary")
    audit.record(
        db_session, actor, "report.preliminary", "report", report.id,
        horse_id=report.horse_id,
    )  # fmt: skip
    return report


def _representative_instance(db_session: Session, report: Report) -> int | None:
    if report.key_images:
        return report.key_images[0].instance_id
    for instance, _series in study_images(db_session, report.study_id):
        if instance.is_image:
            return instance.id
    return None


def sign_report(
    db_session: Session, actor: audit.Actor, user: User, report_id: int
) -> Report:
    """Sign ``report_id`` as final; see the module docstring for what follows.

    Refused with 403 (and an audit event) unless ``user`` is a radiologist,
    409 when already signed, 422 naming the field when incomplete.
    """
    report = get_report(db_session, report_id)
    _require_signer(db_session, actor, user, report)
    _refuse_if_signed(report)
    check_complete(report)

    # Freeze the content: canonical JSON and its SHA-256.
    signed_at = utcnow()
    content = canonical_content(db_session, report, user, signed_at)
    report.content_json = canonical_json(content)
    report.content_sha256 = content_digest(report.content_json)
    report.signed_at = signed_at
    report.signed_by_id = user.id
    report.status = ReportStatus.FINAL
    report.updated_at = signed_at
    report.representative_instance_id = _representative_instance(db_session, report)
    report.document_status = DocumentStatus.PENDING

    # An amendment replaces the version it follows; an addendum adds to it.
    if report.kind == ReportKind.AMENDMENT and report.supersedes_id is not None:
        previous = get_report(db_session, report.supersedes_id)
        previous.superseded_by_id = report.id
        search.unindex_report(db_session, previous.id)
    db_session.flush()

    search.index_report(db_session, report)
    _finish_order(db_session, actor, report)
    _release_claim_quietly(db_session, report.study_id)
    _notify_clinician(db_session, report, "final")
    _enqueue_documents(db_session, report)
    audit.record(
        db_session, actor, "report.sign", "report", report.id,
        horse_id=report.horse_id,
        detail={"sha256": report.content_sha256, "version": report.version,
                "kind": report.kind},
    )  # fmt: skip
    logger.info(
        "report %s (study %s, version %s) signed by user %s",
        report.id,
        report.study_id,
        report.version,
        user.id,
    )
    return report


def _enqueue_documents(db_session: Session, report: Report) -> None:
    from fetlock.jobs.service import enqueue

    enqueue(db_session, DOCUMENTS_JOB, report_id=report.id)


def _finish_order(db_session: Session, actor: audit.Actor, report: Report) -> None:
    if report.order_id is None:
        return
    order = db_session.get(ImagingOrder, report.order_id)
    if order is None or order.status not in REPORTABLE_ORDER_STATES:
        return
    before = order.status
    order.status = OrderStatus.REPORTED
    order.updated_at = utcnow()
    db_session.flush()
    audit.record(
        db_session, actor, "order.reported", "imaging_order", order.id,
        horse_id=order.horse_id, detail={"from": before, "report_id": report.id},
    )  # fmt: skip


def _release_claim_quietly(db_session: Session, study_id: int) -> None:
    claim = db_session.get(ReadingClaim, study_id)
    if claim is not None:
        db_session.delete(claim)
        db_session.flush()


def start_follow_up(
    db_session: Session,
    actor: audit.Actor,
    user: User,
    report_id: int,
    kind: ReportKind,
    content: ReportContentIn | None = None,
) -> Report:
    """Start an addendum or amendment to signed report ``report_id``.

    An amendment starts as a copy of the signed content; an addendum starts
    empty. The signed version is left as it is.
    """
    base = get_report(db_session, report_id)
    if base.status != ReportStatus.FINAL:
        raise Conflict(
            f"report {base.id} is not signed ({base.status}); edit it instead of "
            "writing an addendum",
            field="report_id",
            value=base.id,
        )
    if base.superseded_by_id is not None:
        raise Conflict(
            f"report {base.id} was replaced by amendment {base.superseded_by_id}; "
            f"write the addendum to report {base.superseded_by_id}",
            field="report_id",
            value=base.id,
        )
    existing = open_report_for_study(db_session, base.study_id)
    if existing is not None:
        raise Conflict(
            f"study {base.study_id} already has report {existing.id} in "
            f"{existing.status}; finish or edit that one",
            field="report_id",
            value=existing.id,
        )
    report = Report(
        study_id=base.study_id,
        order_id=base.order_id,
        horse_id=base.horse_id,
        version=_next_version(db_session, base.study_id),
        kind=kind,
        status=ReportStatus.DRAFT,
        supersedes_id=base.id,
        template_key=base.template_key,
        modality=base.modality,
        title=base.title,
        clinical_history=base.clinical_history,
        technique=base.technique if kind == ReportKind.AMENDMENT else "",
        requesting_clinician_id=base.requesting_clinician_id,
        author_id=user.id,
        document_status=DocumentStatus.NONE,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    db_session.add(report)
    db_session.flush()
    if content is None and kind == ReportKind.AMENDMENT:
        content = content_of(base)
    if content is not None:
        _apply_content(db_session, report, content)
    audit.record(
        db_session, actor, f"report.{kind.value}", "report", report.id,
        horse_id=report.horse_id, detail={"follows": base.id},
    )  # fmt: skip
    return report


def content_of(report: Report) -> ReportContentIn:
    """The editable content of a report, as the editor sends it."""
    return ReportContentIn.model_validate(
        {
            "template": report.template_key,
            "clinical_history": report.clinical_history,
            "technique": report.technique,
            "impression": report.impression,
            "recommendations": report.recommendations,
            "findings": [
                {
                    "limb": f.limb or None,
                    "region": f.region_key or None,
                    "structure": f.structure_key or None,
                    "finding": f.finding_key or None,
                    "grade": f.grade,
                    "location": f.location,
                    "detail": f.detail,
                }
                for f in report.findings
            ],
            "key_images": [
                {"instance_id": k.instance_id, "caption": k.caption}
                for k in report.key_images
            ],
        }
    )


# --------------------------------------------------------------------------
# Reports received from outside (Encapsulated PDF, Structured Reports)
# --------------------------------------------------------------------------

# PS3.4 B.5: the SOP classes whose instances are reports rather than images.
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
REPORT_SOP_CLASSES = {
    ENCAPSULATED_PDF_STORAGE: "Encapsulated PDF",
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
}
# Longest text kept from a received report for display and search.
EXTERNAL_TEXT_MAX = 100_000


def is_report_sop_class(sop_class_uid: str) -> bool:
    return sop_class_uid in REPORT_SOP_CLASSES


def placeholder_title(sop_class_uid: str) -> str:
    """The title shown until the documents job has read the object's own."""
    return f"Outside report ({REPORT_SOP_CLASSES.get(sop_class_uid, 'DICOM')})"


def attach_external_report(
    db_session: Session,
    instance: Instance,
    ds: Any = None,
    *,
    actor: audit.Actor = audit.SYSTEM,
) -> Report | None:
    """Attach a received PDF or SR instance to its study as a final report.

    Called by ingest (C-STORE, STOW-RS, folder import) in the transaction
    that indexes ``instance``. ``ds`` is the parsed dataset when the caller
    has it; otherwise nothing is read and the text is filled in by the
    documents job. Returns None for SOP classes that are not reports, and the
    existing row when the instance was attached before.
    """
    if not is_report_sop_class(instance.sop_class_uid):
        return None
    existing = db_session.execute(
        select(Report).where(Report.external_instance_id == instance.id)
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    study = get_study(db_session, instance.study_id)
    from fetlock.reporting import external

    title, text = (
        external.describe(ds, instance.sop_class_uid)
        if ds is not None
        else (placeholder_title(instance.sop_class_uid), "")
    )
    order = db_session.get(ImagingOrder, study.order_id) if study.order_id else None
    now = utcnow()
    report = Report(
        study_id=study.id,
        order_id=study.order_id,
        horse_id=study.horse_id,
        version=_next_version(db_session, study.id),
        kind=ReportKind.EXTERNAL,
        status=ReportStatus.FINAL,
        modality=_study_modality(db_session, study),
        title=title[:200],
        external_instance_id=instance.id,
        external_text=text[:EXTERNAL_TEXT_MAX],
        requesting_clinician_id=order.requesting_clinician_id if order else None,
        signed_at=now,
        created_at=now,
        updated_at=now,
        document_status=DocumentStatus.PENDING,
    )
    db_session.add(report)
    db_session.flush()
    report.content_json = canonical_json(
        {
            "schema": CONTENT_SCHEMA,
            "report": {"kind": report.kind, "version": report.version},
            "study": {"StudyInstanceUID": study.study_instance_uid},
            "instance": {
                "SOPClassUID": instance.sop_class_uid,
                "SOPInstanceUID": instance.sop_instance_uid,
                "sha256": instance.sha256,
            },
            "received_at": now.isoformat(),
        }
    )
    report.content_sha256 = content_digest(report.content_json)
    report.representative_instance_id = _representative_instance(db_session, report)
    search.index_report(db_session, report)
    _finish_order(db_session, actor, report)
    _notify_clinician(db_session, report, "received")
    _enqueue_documents(db_session, report)
    audit.record(
        db_session, actor, "report.received", "report", report.id,
        horse_id=report.horse_id,
        detail={"sop_instance_uid": instance.sop_instance_uid,
                "sop_class": REPORT_SOP_CLASSES[instance.sop_class_uid]},
    )  # fmt: skip
    return report


# --------------------------------------------------------------------------
# The chart
# --------------------------------------------------------------------------


@dataclass
class ChartReport:
    """A report version as the chart shows it."""

    report: Report
    study: Study
    signer: User | None
    job_state: str | None


def reports_for_horse(db_session: Session, horse_id: int) -> list[ChartReport]:
    """The horse's issued reports (preliminary, final, received), newest first."""
    from fetlock.jobs.models import Job

    # Through the study too: a report received for a study still waiting in
    # reconciliation was stored before the study had a horse.
    reports = list(
        db_session.execute(
            select(Report)
            .join(Study, Report.study_id == Study.id)
            .where(
                or_(Report.horse_id == horse_id, Study.horse_id == horse_id),
                Report.status.in_((ReportStatus.PRELIMINARY, ReportStatus.FINAL)),
            )
            .order_by(Report.study_id.desc(), Report.version.desc())
        ).scalars()
    )
    pending = [r.id for r in reports if r.document_status == DocumentStatus.PENDING]
    job_states: dict[int, str] = {}
    if pending:
        for job in db_session.execute(
            select(Job).where(Job.name == DOCUMENTS_JOB)
        ).scalars():
            report_id = json.loads(job.args_json).get("report_id")
            if report_id in pending:
                job_states[report_id] = job.state
    return [
        ChartReport(
            report=r,
            study=db_session.get(Study, r.study_id),  # type: ignore[arg-type]
            signer=_user(db_session, r.signed_by_id),
            job_state=job_states.get(r.id),
        )
        for r in reports
    ]


# --------------------------------------------------------------------------
# Notifications
# --------------------------------------------------------------------------


def notify(
    db_session: Session,
    user_id: int,
    *,
    kind: str,
    title: str,
    body: str = "",
    link: str | None = None,
    horse_id: int | None = None,
) -> Notification:
    """Add a notification for one user in the caller's transaction."""
    note = Notification(
        user_id=user_id,
        kind=kind,
        title=title[:200],
        body=body,
        link=link,
        horse_id=horse_id,
        created_at=utcnow(),
    )
    db_session.add(note)
    db_session.flush()
    return note


def _notify_clinician(db_session: Session, report: Report, what: str) -> None:
    if report.requesting_clinician_id is None:
        return
    horse = db_session.get(Horse, report.horse_id) if report.horse_id else None
    horse_name = horse.barn_name if horse else "a horse"
    titles = {
        "preliminary": f"Preliminary report for {horse_name}",
        "final": f"Signed report for {horse_name}",
        "received": f"Outside report received for {horse_name}",
    }
    impression = (report.impression or report.title).strip()
    notify(
        db_session,
        report.requesting_clinician_id,
        kind=f"report.{what}",
        title=titles[what],
        body=impression[:300],
        link=f"/horses/{horse.id}" if horse else f"/reports/{report.id}",
        horse_id=report.horse_id,
    )


def unread_count(db_session: Session, user_id: int) -> int:
    return db_session.execute(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
    ).scalar_one()


def notifications_for(
    db_session: Session, user_id: int, *, limit: int = 100
) -> list[Notification]:
    return list(
        db_session.execute(
            select(Notification)
            .where(Notification.user_id == user_id)
            .order_by(Notification.id.desc())
            .limit(limit)
        ).scalars()
    )


def mark_read(
    db_session: Session, user_id: int, notification_ids: Sequence[int] | None = None
) -> int:
    """Mark the user's notifications read (all when no ids); return how many."""
    query = select(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None)
    )
    if notification_ids is not None:
        query = query.where(Notification.id.in_(notification_ids))
    now = utcnow()
    count = 0
    for note in db_session.execute(query).scalars():
        note.read_at = now
        count += 1
    db_session.flush()
    return count
