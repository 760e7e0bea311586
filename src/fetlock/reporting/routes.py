"""Reporting pages and JSON API: reading queue, editor, sign-off, search.

Who may do what:

- radiologists (and admins) work the reading queue, claim studies and write
  drafts, preliminary reports, addenda and amendments;
- only radiologists sign (administrators are refused: a signature is a
  clinical act); a refusal is a 403 and an audit event;
- every staff role reads issued reports, the chart's reports section,
  findings search and its CSV export;
- admins edit the vocabulary.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.auth.deps import ALL_STAFF, Principal, require_roles
from fetlock.auth.models import Role, User
from fetlock.imaging.models import ImagingOrder
from fetlock.imaging.study_models import Instance, Series, Study
from fetlock.practice.models import Horse
from fetlock.reporting import search, service, vocabulary
from fetlock.reporting.models import (
    DocumentStatus,
    Report,
    ReportFinding,
    ReportKind,
    ReportStatus,
    ReportTerm,
    TermKind,
)
from fetlock.reporting.schemas import (
    ClaimOut,
    CodedTermOut,
    FindingOut,
    FollowUpCreate,
    KeyImageOut,
    NotificationOut,
    QueueItemOut,
    ReportContentIn,
    ReportCreate,
    ReportOut,
    SearchHitOut,
    SearchOut,
    TermIn,
    TermOut,
)
from fetlock.web.deps import get_database, get_db_session
from fetlock.web.errors import DomainError, NotFound
from fetlock.web.templating import render

router = APIRouter()

READERS = ALL_STAFF
can_read = require_roles(*READERS)
can_report = require_roles(Role.RADIOLOGIST)
can_sign = require_roles(Role.RADIOLOGIST, admins=False)
admin_only = require_roles()

# Dates a findings search accepts.
SEARCH_DATE_MIN = dt.date(1900, 1, 1)
SEARCH_DATE_MAX = dt.date(9998, 12, 31)

CSV_COLUMNS = (
    "report_id",
    "signed_at",
    "horse",
    "patient_id",
    "accession_number",
    "study_instance_uid",
    "radiologist",
    "requesting_clinician",
    "limb",
    "structure",
    "structure_code",
    "finding",
    "finding_code",
    "grade",
    "location",
    "detail",
    "impression",
    "report_url",
)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _zone(request: Request) -> dt.tzinfo:
    zone: dt.tzinfo = request.app.state.settings.zone
    return zone


def _blobs(request: Request) -> Any:
    from fetlock.storage import get_blob_store

    return get_blob_store(request.app.state.settings)


def instance_thumbnail_url(study: Study, series: Series, instance: Instance) -> str:
    """The DICOMweb thumbnail of one instance (PS3.18 10.7.1.4)."""
    return (
        f"/dicomweb/studies/{study.study_instance_uid}"
        f"/series/{series.series_instance_uid}"
        f"/instances/{instance.sop_instance_uid}/thumbnail"
    )


def _thumbnail_url_for(db_session: Session, instance_id: int) -> tuple[str, str]:
    instance = db_session.get(Instance, instance_id)
    if instance is None:
        return "", ""
    series = db_session.get(Series, instance.series_id)
    study = db_session.get(Study, instance.study_id)
    assert series is not None and study is not None
    return instance.sop_instance_uid, instance_thumbnail_url(study, series, instance)


def _finding_out(f: ReportFinding) -> FindingOut:
    return FindingOut(
        limb=f.limb,
        region=f.region_key,
        structure=CodedTermOut(
            key=f.structure_key,
            display=f.structure_display,
            scheme=f.structure_scheme,
            code=f.structure_code,
        ),
        finding=CodedTermOut(
            key=f.finding_key,
            display=f.finding_display,
            scheme=f.finding_scheme,
            code=f.finding_code,
        ),
        grade=f.grade,
        location=f.location,
        detail=f.detail,
    )


def _name(db_session: Session, user_id: int | None) -> str | None:
    user = db_session.get(User, user_id) if user_id is not None else None
    return user.full_name if user else None


def report_out(db_session: Session, report: Report) -> ReportOut:
    study = db_session.get(Study, report.study_id)
    assert study is not None
    key_images = []
    for key_image in report.key_images:
        uid, url = _thumbnail_url_for(db_session, key_image.instance_id)
        key_images.append(
            KeyImageOut(
                instance_id=key_image.instance_id,
                sop_instance_uid=uid,
                caption=key_image.caption,
                thumbnail_url=url,
            )
        )
    ready = report.document_status == DocumentStatus.READY
    return ReportOut(
        id=report.id,
        study_id=report.study_id,
        study_instance_uid=study.study_instance_uid,
        horse_id=report.horse_id,
        order_id=report.order_id,
        version=report.version,
        kind=report.kind,
        status=report.status,
        supersedes_id=report.supersedes_id,
        superseded_by_id=report.superseded_by_id,
        template=report.template_key,
        title=report.title,
        clinical_history=report.clinical_history,
        technique=report.technique,
        findings=[_finding_out(f) for f in report.findings],
        impression=report.impression,
        recommendations=report.recommendations,
        key_images=key_images,
        author=_name(db_session, report.author_id),
        signed_by=_name(db_session, report.signed_by_id),
        signed_at=report.signed_at,
        content_sha256=report.content_sha256,
        document_status=report.document_status,
        pdf_url=f"/reports/{report.id}/pdf" if ready and report.pdf_blob_key else None,
        thumbnail_url=(
            f"/reports/{report.id}/thumbnail"
            if ready and report.thumbnail_blob_key
            else None
        ),
        url=f"/reports/{report.id}",
    )


def _visible(report: Report, principal: Principal) -> None:
    """Drafts are the radiologists' working copies; others see issued reports."""
    if report.status == ReportStatus.DRAFT and not principal.has_role(Role.RADIOLOGIST):
        raise NotFound(
            f"report {report.id} is a draft and not issued yet",
            field="report_id",
            value=report.id,
        )


def _search_query(
    q: str,
    date_from: str | None,
    date_to: str | None,
    limb: str | None,
    region: str | None,
    structure: str | None,
    finding: str | None,
    grade_min: str | None,
    radiologist_id: str | None,
    clinician_id: str | None,
    horse_id: str | None,
    modality: str | None,
    page: int,
    page_size: int,
) -> search.SearchQuery:
    """Build a query from request parameters; empty strings mean "any"."""

    def as_date(name: str, value: str | None) -> dt.date | None:
        if not value:
            return None
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise DomainError(
                f"{name} {value!r} is not a date; use YYYY-MM-DD",
                field=name,
                value=value,
            ) from None
        if not SEARCH_DATE_MIN <= day <= SEARCH_DATE_MAX:
            # Beyond these the day's bounds in the practice time zone do not
            # fit in a datetime.
            raise DomainError(
                f"{name} {value} is out of range; use a date from "
                f"{SEARCH_DATE_MIN} to {SEARCH_DATE_MAX}",
                field=name,
                value=value,
            )
        return day

    def as_int(name: str, value: str | None) -> int | None:
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise DomainError(
                f"{name} {value!r} is not a number; give the id or leave it empty",
                field=name,
                value=value,
            ) from None

    limbs = vocabulary.limbs()
    if limb and limb not in limbs:
        raise DomainError(
            f"limb {limb!r} is not a limb; use one of " + ", ".join(limbs),
            field="limb",
            value=limb,
        )
    grade = as_int("grade_min", grade_min)
    if grade is not None and not 0 <= grade <= 4:
        raise DomainError(
            f"grade_min {grade} is out of range; grades run from 0 to 4",
            field="grade_min",
            value=grade,
        )
    start, end = as_date("date_from", date_from), as_date("date_to", date_to)
    if start and end and end < start:
        raise DomainError(
            f"date_to {end} is before date_from {start}; swap them",
            field="date_to",
            value=str(end),
        )
    return search.SearchQuery(
        text=q,
        date_from=start,
        date_to=end,
        limb=limb or None,
        region=region or None,
        structure=structure or None,
        finding=finding or None,
        grade_min=grade,
        radiologist_id=as_int("radiologist_id", radiologist_id),
        clinician_id=as_int("clinician_id", clinician_id),
        horse_id=as_int("horse_id", horse_id),
        modality=modality or None,
        page=page,
        page_size=page_size,
    )


def search_params(
    q: str = "",
    date_from: str | None = None,
    date_to: str | None = None,
    limb: str | None = None,
    region: str | None = None,
    structure: str | None = None,
    finding: str | None = None,
    grade_min: str | None = None,
    radiologist_id: str | None = None,
    clinician_id: str | None = None,
    horse_id: str | None = None,
    modality: str | None = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=search.MAX_PAGE_SIZE)] = 25,
) -> search.SearchQuery:
    return _search_query(
        q, date_from, date_to, limb, region, structure, finding, grade_min,
        radiologist_id, clinician_id, horse_id, modality, page, page_size,
    )  # fmt: skip


def _hit_out(hit: search.SearchHit) -> SearchHitOut:
    report = hit.report
    return SearchHitOut(
        report_id=report.id,
        report_url=f"/reports/{report.id}",
        pdf_url=(
            f"/reports/{report.id}/pdf"
            if report.document_status == DocumentStatus.READY
            else None
        ),
        horse_id=report.horse_id,
        horse_name=hit.horse.barn_name if hit.horse else None,
        patient_id=hit.horse.patient_id if hit.horse else None,
        chart_url=f"/horses/{report.horse_id}" if report.horse_id else None,
        study_id=report.study_id,
        study_instance_uid=hit.study.study_instance_uid,
        study_url=f"/reading/studies/{report.study_id}",
        accession_number=hit.study.dicom_accession_number,
        signed_at=report.signed_at,
        radiologist=hit.radiologist.full_name if hit.radiologist else None,
        requesting_clinician=hit.clinician.full_name if hit.clinician else None,
        impression=report.impression or report.title,
        findings=[_finding_out(f) for f in hit.findings],
    )


def _csv_lines(
    db_session: Session, query: search.SearchQuery, zone: dt.tzinfo, base_url: str
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return value

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for hit in search.export_rows(db_session, query, zone):
        report = hit.report
        common = [
            report.id,
            report.signed_at.astimezone(zone).isoformat() if report.signed_at else "",
            hit.horse.barn_name if hit.horse else "",
            hit.horse.patient_id if hit.horse else "",
            hit.study.dicom_accession_number or "",
            hit.study.study_instance_uid,
            hit.radiologist.full_name if hit.radiologist else "",
            hit.clinician.full_name if hit.clinician else "",
        ]
        tail = [report.impression or report.title, f"{base_url}/reports/{report.id}"]
        findings: list[ReportFinding | None] = list(hit.findings) or [None]
        for f in findings:
            middle: list[object]
            if f is None:
                middle = [""] * 8
            else:
                middle = [
                    f.limb,
                    f.structure_display,
                    f"{f.structure_scheme} {f.structure_code}".strip(),
                    f.finding_display,
                    f"{f.finding_scheme} {f.finding_code}".strip(),
                    "" if f.grade is None else f.grade,
                    f.location or "",
                    f.detail,
                ]
            writer.writerow([_spreadsheet_safe(v) for v in (*common, *middle, *tail)])
        yield flush()


# First characters that make Excel, LibreOffice and Google Sheets read a cell
# as a formula (OWASP, "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(value: object) -> object:
    """Return ``value``, with a leading ``'`` if a spreadsheet would run it.

    Report texts and names are typed by users, and the export is opened in
    spreadsheets, where a cell such as ``=HYPERLINK(...)`` would be a live
    formula. The quote makes it text and shows as nothing in the cell.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv_response(
    request: Request, db_session: Session, query: search.SearchQuery
) -> StreamingResponse:
    stamp = dt.datetime.now(_zone(request)).strftime("%Y%m%d-%H%M")
    base = str(request.base_url).rstrip("/")
    zone = _zone(request)
    database = get_database(request)

    # The request's session closes when the route returns, before the body is
    # streamed, so the rows are read in a session of their own.
    def lines() -> Iterator[str]:
        with database.session() as stream_session:
            yield from _csv_lines(stream_session, query, zone, base)

    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="findings-{stamp}.csv"'},
    )


def _refuse_signing(db_session: Session, principal: Principal, report_id: int) -> None:
    """Refuse a signature by a non-radiologist and audit the refusal.

    Nothing has been written yet, so the audit event is committed on its own
    before the 403 rolls the rest of the request back.
    """
    from fetlock.audit import service as audit

    db_session.rollback()
    audit.record(
        db_session, principal.actor, "report.sign.denied", "report", report_id,
        detail={"role": principal.user.role},
    )  # fmt: skip
    db_session.commit()
    raise service.Forbidden(
        f"user {principal.user.username!r} has role {principal.user.role!r}; only "
        "a radiologist may sign a report",
        field="role",
        value=principal.user.role,
    )


# --------------------------------------------------------------------------
# JSON API: reading queue and claims
# --------------------------------------------------------------------------


def _queue_out(item: service.QueueItem) -> QueueItemOut:
    return QueueItemOut(
        study_id=item.study.id,
        study_instance_uid=item.study.study_instance_uid,
        accession_number=(
            item.order.accession_number
            if item.order
            else item.study.dicom_accession_number
        ),
        horse_id=item.horse.id if item.horse else None,
        horse_name=item.horse.barn_name if item.horse else None,
        modality=item.modality,
        description=item.study.study_description
        or (item.order.procedure.name if item.order else None),
        priority=item.priority,
        requesting_clinician=(
            item.requesting_clinician.full_name if item.requesting_clinician else None
        ),
        waiting_since=item.waiting_since,
        claimed_by=item.claimed_by.full_name if item.claimed_by else None,
        report_id=item.report.id if item.report else None,
        report_status=item.report.status if item.report else None,
        images_after_report=item.images_after_report,
    )


@router.get("/api/v1/reading-queue", response_model=list[QueueItemOut])
def api_reading_queue(
    modality: str | None = None,
    clinician_id: int | None = None,
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[QueueItemOut]:
    items = service.reading_queue(
        db_session, modality=modality or None, clinician_id=clinician_id
    )
    return [_queue_out(i) for i in items]


@router.post("/api/v1/studies/{study_id}/claim", response_model=ClaimOut)
def api_claim(
    study_id: int,
    take_over: bool = False,
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ClaimOut:
    claim = service.claim_study(
        db_session, principal.actor, principal.user, study_id, take_over=take_over
    )
    return ClaimOut(
        study_id=claim.study_id,
        claimed_by=principal.user.full_name,
        claimed_at=claim.claimed_at,
    )


@router.delete("/api/v1/studies/{study_id}/claim", status_code=204)
def api_release(
    study_id: int,
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    service.release_claim(db_session, principal.actor, principal.user, study_id)
    return Response(status_code=204)


# --------------------------------------------------------------------------
# JSON API: reports
# --------------------------------------------------------------------------


@router.get("/api/v1/studies/{study_id}/reports", response_model=list[ReportOut])
def api_study_reports(
    study_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[ReportOut]:
    service.get_study(db_session, study_id)
    return [
        report_out(db_session, r)
        for r in service.reports_for_study(db_session, study_id)
        if r.status != ReportStatus.DRAFT or principal.has_role(Role.RADIOLOGIST)
    ]


@router.post(
    "/api/v1/studies/{study_id}/reports", response_model=ReportOut, status_code=201
)
def api_create_report(
    study_id: int,
    body: ReportCreate | None = None,
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ReportOut:
    report = service.create_report(
        db_session,
        principal.actor,
        principal.user,
        study_id,
        template=body.template if body else None,
    )
    return report_out(db_session, report)


@router.get("/api/v1/reports/search", response_model=SearchOut)
def api_search(
    request: Request,
    query: search.SearchQuery = Depends(search_params),
    format: str = "json",
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Any:
    if format == "csv":
        return _csv_response(request, db_session, query)
    if format != "json":
        raise DomainError(
            f"format {format!r} is not offered; use json or csv",
            field="format",
            value=format,
        )
    result = search.search(db_session, query, _zone(request))
    return SearchOut(
        total=result.total,
        total_is_capped=result.total_is_capped,
        page=result.page,
        page_size=result.page_size,
        hits=[_hit_out(h) for h in result.hits],
    )


@router.get("/api/v1/reports/{report_id}", response_model=ReportOut)
def api_get_report(
    report_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ReportOut:
    report = service.get_report(db_session, report_id)
    _visible(report, principal)
    return report_out(db_session, report)


@router.put("/api/v1/reports/{report_id}", response_model=ReportOut)
def api_update_report(
    report_id: int,
    body: ReportContentIn,
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ReportOut:
    report = service.update_report(
        db_session, principal.actor, principal.user, report_id, body
    )
    return report_out(db_session, report)


@router.post("/api/v1/reports/{report_id}/preliminary", response_model=ReportOut)
def api_preliminary(
    report_id: int,
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ReportOut:
    report = service.issue_preliminary(
        db_session, principal.actor, principal.user, report_id
    )
    return report_out(db_session, report)


@router.post("/api/v1/reports/{report_id}/sign", response_model=ReportOut)
def api_sign(
    report_id: int,
    principal: Principal = Depends(can_sign),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ReportOut:
    report = service.sign_report(db_session, principal.actor, principal.user, report_id)
    return report_out(db_session, report)


@router.post(
    "/api/v1/reports/{report_id}/addenda", response_model=ReportOut, status_code=201
)
def api_follow_up(
    report_id: int,
    body: FollowUpCreate,
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> ReportOut:
    if body.sign and principal.user.role_enum is not Role.RADIOLOGIST:
        _refuse_signing(db_session, principal, report_id)
    report = service.start_follow_up(
        db_session,
        principal.actor,
        principal.user,
        report_id,
        ReportKind(body.kind),
        body.content,
    )
    if body.sign:
        report = service.sign_report(
            db_session, principal.actor, principal.user, report.id
        )
    return report_out(db_session, report)


# --------------------------------------------------------------------------
# JSON API: vocabulary and notifications
# --------------------------------------------------------------------------


def _term_out(term: ReportTerm) -> TermOut:
    return TermOut(
        id=term.id,
        kind=term.kind,
        key=term.key,
        display=term.display,
        scheme=term.scheme,
        code=term.code,
        regions=term.region_list,
        synonyms=term.synonym_list,
        active=term.active,
    )


@router.get("/api/v1/reporting/vocabulary")
def api_vocabulary(
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> dict[str, Any]:
    data = vocabulary.load_file()
    return {
        "name": data["name"],
        "version": data["version"],
        "source": data["source"],
        "schemes": data["schemes"],
        "limbs": data["limbs"],
        "grades": data["grades"],
        "templates": [
            {
                "key": t.key,
                "name": t.name,
                "modality": t.modality,
                "technique": t.technique,
                "normal_text": t.normal_text,
                "zones": t.zone_list,
            }
            for t in vocabulary.templates(db_session)
        ],
        "structures": [
            _term_out(t).model_dump()
            for t in vocabulary.terms(db_session, TermKind.STRUCTURE, active_only=False)
        ],
        "findings": [
            _term_out(t).model_dump()
            for t in vocabulary.terms(db_session, TermKind.FINDING, active_only=False)
        ],
    }


@router.post(
    "/api/v1/reporting/vocabulary/{kind}", response_model=TermOut, status_code=201
)
def api_add_term(
    kind: TermKind,
    body: TermIn,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> TermOut:
    term = vocabulary.add_term(
        db_session, principal.actor, kind, body.model_dump(exclude_none=True)
    )
    return _term_out(term)


@router.patch("/api/v1/reporting/vocabulary/terms/{term_id}", response_model=TermOut)
def api_update_term(
    term_id: int,
    body: TermIn,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> TermOut:
    fields = body.model_dump(exclude_unset=True)
    fields.pop("key", None)
    term = vocabulary.update_term(db_session, principal.actor, term_id, fields)
    return _term_out(term)


@router.get("/api/v1/notifications", response_model=list[NotificationOut])
def api_notifications(
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> list[NotificationOut]:
    return [
        NotificationOut.model_validate(n, from_attributes=True)
        for n in service.notifications_for(db_session, principal.user.id)
    ]


@router.post("/api/v1/notifications/read")
def api_mark_read(
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> dict[str, int]:
    return {"marked": service.mark_read(db_session, principal.user.id)}


# --------------------------------------------------------------------------
# Pages: reading queue, editor, report, documents
# --------------------------------------------------------------------------


def _clinicians(db_session: Session) -> list[User]:
    return list(
        db_session.execute(
            select(User)
            .where(User.role == Role.VETERINARIAN, User.active.is_(True))
            .order_by(User.full_name)
        ).scalars()
    )


def _radiologists(db_session: Session) -> list[User]:
    return list(
        db_session.execute(
            select(User)
            .where(User.role == Role.RADIOLOGIST, User.active.is_(True))
            .order_by(User.full_name)
        ).scalars()
    )


@router.get("/reading", include_in_schema=False)
def reading_page(
    request: Request,
    modality: str = "",
    clinician_id: str = "",
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    clinician = int(clinician_id) if clinician_id.isdigit() else None
    items = service.reading_queue(
        db_session, modality=modality or None, clinician_id=clinician
    )
    modalities = sorted(
        {
            m
            for m in db_session.execute(select(Series.modality).distinct()).scalars()
            if m
        }
        | {
            m
            for m in db_session.execute(
                select(ImagingOrder.modality).distinct()
            ).scalars()
            if m
        }
    )
    return render(
        request,
        "reporting/reading.html",
        {
            "principal": principal,
            "items": items,
            "modality": modality,
            "clinician_id": clinician,
            "modalities": modalities,
            "clinicians": _clinicians(db_session),
        },
    )


@router.post("/reading/studies/{study_id}/claim", include_in_schema=False)
def claim_page(
    study_id: int,
    take_over: Annotated[str, Query()] = "",
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    service.claim_study(
        db_session,
        principal.actor,
        principal.user,
        study_id,
        take_over=take_over == "1",
    )
    report = service.open_or_create_report(
        db_session, principal.actor, principal.user, study_id
    )
    return RedirectResponse(f"/reports/{report.id}/edit", status_code=303)


@router.post("/reading/studies/{study_id}/release", include_in_schema=False)
def release_page(
    study_id: int,
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    service.release_claim(db_session, principal.actor, principal.user, study_id)
    return RedirectResponse("/reading", status_code=303)


@router.get("/reading/studies/{study_id}", include_in_schema=False)
def study_page(
    request: Request,
    study_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    study = service.get_study(db_session, study_id)
    horse = db_session.get(Horse, study.horse_id) if study.horse_id else None
    reports = [
        r
        for r in service.reports_for_study(db_session, study_id)
        if r.status != ReportStatus.DRAFT or principal.has_role(Role.RADIOLOGIST)
    ]
    images = [
        (instance, instance_thumbnail_url(study, series, instance))
        for instance, series in service.study_images(db_session, study_id)
    ]
    claim = service.get_claim(db_session, study_id)
    return render(
        request,
        "reporting/study.html",
        {
            "principal": principal,
            "study": study,
            "horse": horse,
            "reports": reports,
            "images": images,
            "claimed_by": (
                db_session.get(User, claim.user_id) if claim is not None else None
            ),
            "users": _user_names(db_session),
        },
    )


def _user_names(db_session: Session) -> dict[int, str]:
    return {
        user_id: name
        for user_id, name in db_session.execute(select(User.id, User.full_name))
    }


@router.get("/reports/{report_id}/edit", include_in_schema=False)
def editor_page(
    request: Request,
    report_id: int,
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    report = service.get_report(db_session, report_id)
    if report.status == ReportStatus.FINAL:
        return RedirectResponse(f"/reports/{report.id}", status_code=303)
    study = service.get_study(db_session, report.study_id)
    horse = db_session.get(Horse, report.horse_id) if report.horse_id else None
    images = [
        {
            "id": instance.id,
            "url": instance_thumbnail_url(study, series, instance),
            "label": instance.view_label
            or series.series_description
            or f"Image {instance.instance_number or instance.id}",
        }
        for instance, series in service.study_images(db_session, study.id)
    ]
    previous = (
        service.get_report(db_session, report.supersedes_id)
        if report.supersedes_id
        else None
    )
    claim = service.get_claim(db_session, study.id)
    return render(
        request,
        "reporting/editor.html",
        {
            "principal": principal,
            "report": report,
            "previous": previous,
            "study": study,
            "horse": horse,
            "images": images,
            "content": service.content_of(report).model_dump(),
            "claimed_by": (
                db_session.get(User, claim.user_id) if claim is not None else None
            ),
            "templates": vocabulary.templates(db_session),
            "structures": vocabulary.terms(db_session, TermKind.STRUCTURE),
            "findings": vocabulary.terms(db_session, TermKind.FINDING),
            "limbs": vocabulary.limbs(),
            "grades": vocabulary.grades(),
            "users": _user_names(db_session),
        },
    )


@router.get("/reports/search", include_in_schema=False)
def search_page(
    request: Request,
    query: search.SearchQuery = Depends(search_params),
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    result = (
        search.search(db_session, query, _zone(request))
        if search.any_text_filter(query)
        else None
    )
    params = dict(request.query_params)
    params.pop("page", None)
    return render(
        request,
        "reporting/search.html",
        {
            "principal": principal,
            "query": query,
            "result": result,
            "params": params,
            "limbs": vocabulary.limbs(),
            "grades": vocabulary.grades(),
            "templates": vocabulary.templates(db_session),
            "structures": vocabulary.terms(db_session, TermKind.STRUCTURE),
            "findings": vocabulary.terms(db_session, TermKind.FINDING),
            "radiologists": _radiologists(db_session),
            "clinicians": _clinicians(db_session),
        },
    )


@router.get("/reports/search.csv", include_in_schema=False)
def search_csv(
    request: Request,
    query: search.SearchQuery = Depends(search_params),
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    return _csv_response(request, db_session, query)


@router.get("/reports/{report_id}", include_in_schema=False)
def report_page(
    request: Request,
    report_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    report = service.get_report(db_session, report_id)
    _visible(report, principal)
    study = service.get_study(db_session, report.study_id)
    horse = db_session.get(Horse, report.horse_id) if report.horse_id else None
    versions = [
        r
        for r in service.reports_for_study(db_session, report.study_id)
        if r.status != ReportStatus.DRAFT or principal.has_role(Role.RADIOLOGIST)
    ]
    from fetlock.audit import service as audit

    audit.record(
        db_session, principal.actor, "report.view", "report", report.id,
        horse_id=report.horse_id,
    )  # fmt: skip
    return render(
        request,
        "reporting/report.html",
        {
            "principal": principal,
            "report": report,
            "out": report_out(db_session, report),
            "study": study,
            "horse": horse,
            "versions": versions,
            "verified": service.verify_signature(db_session, report)
            if report.status == ReportStatus.FINAL
            else None,
            "grades": vocabulary.grades(),
            "limbs": vocabulary.limbs(),
            "can_follow_up": principal.has_role(Role.RADIOLOGIST)
            and report.status == ReportStatus.FINAL
            and report.superseded_by_id is None
            and report.kind != ReportKind.EXTERNAL,
        },
    )


@router.post("/reports/{report_id}/follow-up", include_in_schema=False)
async def follow_up_page(
    request: Request,
    report_id: int,
    principal: Principal = Depends(can_report),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    form = await request.form()
    kind = (
        ReportKind.AMENDMENT if form.get("kind") == "amendment" else ReportKind.ADDENDUM
    )
    report = service.start_follow_up(
        db_session, principal.actor, principal.user, report_id, kind
    )
    return RedirectResponse(f"/reports/{report.id}/edit", status_code=303)


def _stored_file(
    request: Request, key: str | None, media_type: str, name: str
) -> Response:
    if not key:
        raise NotFound("the file is not written yet; it appears within seconds")
    blobs = _blobs(request)
    try:
        chunks = blobs.iter_chunks(key)
        first = next(chunks, b"")
    except FileNotFoundError:
        raise NotFound(
            f"stored file {key} is missing from the blob store", field="key", value=key
        ) from None

    def body() -> Iterator[bytes]:
        yield first
        yield from chunks

    return StreamingResponse(
        body(),
        media_type=media_type,
        headers={
            "Content-Disposition": f'inline; filename="{name}"',
            "Cache-Control": "private, max-age=3600",
        },
    )


@router.get("/reports/{report_id}/pdf", include_in_schema=False)
def report_pdf(
    request: Request,
    report_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    report = service.get_report(db_session, report_id)
    _visible(report, principal)
    return _stored_file(
        request,
        report.pdf_blob_key if report.document_status == DocumentStatus.READY else None,
        "application/pdf",
        f"report-{report.id}-v{report.version}.pdf",
    )


@router.get("/reports/{report_id}/thumbnail", include_in_schema=False)
def report_thumbnail(
    request: Request,
    report_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    report = service.get_report(db_session, report_id)
    _visible(report, principal)
    return _stored_file(
        request,
        report.thumbnail_blob_key,
        "image/jpeg",
        f"report-{report.id}.jpg",
    )


@router.get("/horses/{horse_id}/reports-section", include_in_schema=False)
def reports_section(
    request: Request,
    horse_id: int,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    if db_session.get(Horse, horse_id) is None:
        raise NotFound(
            f"horse {horse_id} does not exist", field="horse_id", value=horse_id
        )
    return render(
        request,
        "reporting/_reports_section.html",
        {
            "principal": principal,
            "entries": service.reports_for_horse(db_session, horse_id),
            "horse_id": horse_id,
        },
    )


# --------------------------------------------------------------------------
# Pages: notifications and vocabulary
# --------------------------------------------------------------------------


@router.get("/notifications", include_in_schema=False)
def notifications_page(
    request: Request,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    notes = service.notifications_for(db_session, principal.user.id)
    return render(
        request,
        "reporting/notifications.html",
        {"principal": principal, "notifications": notes},
    )


@router.get("/notifications/badge", include_in_schema=False)
def notifications_badge(
    request: Request,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    count = service.unread_count(db_session, principal.user.id)
    return render(
        request,
        "reporting/_badge.html",
        {"principal": principal, "count": count},
    )


@router.post("/notifications/read", include_in_schema=False)
def notifications_read(
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    service.mark_read(db_session, principal.user.id)
    return RedirectResponse("/notifications", status_code=303)


@router.get("/reporting/vocabulary", include_in_schema=False)
def vocabulary_page(
    request: Request,
    principal: Principal = Depends(can_read),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    return render(
        request,
        "reporting/vocabulary.html",
        {
            "principal": principal,
            "data": vocabulary.load_file(),
            "templates": vocabulary.templates(db_session, active_only=False),
            "structures": vocabulary.terms(
                db_session, TermKind.STRUCTURE, active_only=False
            ),
            "findings": vocabulary.terms(
                db_session, TermKind.FINDING, active_only=False
            ),
            "is_admin": principal.user.role_enum is Role.ADMIN,
        },
    )


@router.post("/reporting/vocabulary/terms/{term_id}", include_in_schema=False)
async def vocabulary_update_page(
    request: Request,
    term_id: int,
    principal: Principal = Depends(admin_only),
    db_session: Session = Depends(get_db_session, scope="function"),
) -> Response:
    form = await request.form()

    def text(name: str) -> str:
        value = form.get(name, "")
        return value.strip() if isinstance(value, str) else ""

    vocabulary.update_term(
        db_session,
        principal.actor,
        term_id,
        {
            "display": text("display"),
            "scheme": text("scheme") or "local",
            "code": text("code"),
            "synonyms": [s.strip() for s in text("synonyms").split("|") if s.strip()],
            "active": form.get("active") == "on",
        },
    )
    return RedirectResponse(f"/reporting/vocabulary#term-{term_id}", status_code=303)
