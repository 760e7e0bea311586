"""Reporting JSON API and pages, through the app with logged-in users."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.conftest import LoggedInClient
from tests.reporting.conftest import ReadingCase, make_case

from fetlock.audit.models import AuditEvent
from fetlock.auth.models import Role
from fetlock.config import Settings
from fetlock.db.session import Database

CONTENT: dict[str, Any] = {
    "template": "foot",
    "findings": [
        {
            "limb": "LF",
            "structure": "navicular_bone",
            "finding": "synovial_invaginations",
            "grade": 2,
            "detail": "Enlarged invaginations along the distal border.",
        }
    ],
    "impression": "Mild navicular changes in the left fore.",
    "recommendations": "MRI if lameness persists.",
}


@pytest.fixture
def reader(login_as: Callable[..., LoggedInClient]) -> LoggedInClient:
    return login_as(Role.RADIOLOGIST)


@pytest.fixture
def clinician(login_as: Callable[..., LoggedInClient]) -> LoggedInClient:
    return login_as(Role.VETERINARIAN)


@pytest.fixture
def api_case(
    database: Database,
    settings: Settings,
    reader: LoggedInClient,
    clinician: LoggedInClient,
) -> ReadingCase:
    with database.session() as db_session:
        return make_case(db_session, settings, clinician.user, reader.user)


def _draft(reader: LoggedInClient, case: ReadingCase) -> int:
    created = reader.post(f"/api/v1/studies/{case.study.id}/reports")
    assert created.status_code == 201, created.text
    report_id: int = created.json()["id"]
    saved = reader.put(f"/api/v1/reports/{report_id}", json=CONTENT)
    assert saved.status_code == 200, saved.text
    return report_id


def test_claim_report_sign_and_chart(
    reader: LoggedInClient,
    clinician: LoggedInClient,
    api_case: ReadingCase,
    run_jobs: Callable[[], int],
) -> None:
    study_id = api_case.study.id

    # Claim: the queue shows who is reading.
    claimed = reader.post(f"/api/v1/studies/{study_id}/claim")
    assert claimed.status_code == 200, claimed.text
    queue = reader.get("/api/v1/reading-queue").json()
    assert [(q["study_id"], q["claimed_by"]) for q in queue] == [
        (study_id, reader.user.full_name)
    ]

    # Report with a key image, then sign.
    report_id = _draft(reader, api_case)
    body = {**CONTENT, "key_images": [{"instance_id": api_case.instances[1].id}]}
    assert reader.put(f"/api/v1/reports/{report_id}", json=body).status_code == 200
    signed = reader.post(f"/api/v1/reports/{report_id}/sign")
    assert signed.status_code == 200, signed.text
    report = signed.json()
    assert report["status"] == "final"
    assert len(report["content_sha256"]) == 64
    assert report["signed_by"] == reader.user.full_name
    assert report["document_status"] == "pending"
    assert report["findings"][0]["structure"]["display"] == "Navicular bone"

    # The chart shows the report at once, the PDF as pending until the job ran.
    horse_id = api_case.horse.id
    section = clinician.get(f"/horses/{horse_id}/reports-section")
    assert section.status_code == 200
    assert "PDF pending" in section.text
    assert run_jobs() >= 1
    section = clinician.get(f"/horses/{horse_id}/reports-section")
    assert f"/reports/{report_id}/pdf" in section.text
    assert f"/reports/{report_id}/thumbnail" in section.text
    pdf = clinician.get(f"/reports/{report_id}/pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    thumbnail = clinician.get(f"/reports/{report_id}/thumbnail")
    assert thumbnail.headers["content-type"] == "image/jpeg"

    # The requesting clinician is notified; the badge counts it.
    notes = clinician.get("/api/v1/notifications").json()
    assert [n["kind"] for n in notes] == ["report.final"]
    assert ">1<" in clinician.get("/notifications/badge").text
    assert clinician.post("/api/v1/notifications/read").json() == {"marked": 1}
    assert "notification-count" not in clinician.get("/notifications/badge").text

    # The study's reports, and the order is reported.
    listed = clinician.get(f"/api/v1/studies/{study_id}/reports").json()
    assert [(r["id"], r["status"]) for r in listed] == [(report_id, "final")]
    assert reader.get("/api/v1/reading-queue").json() == []


def test_sign_without_radiologist_role_is_refused_and_audited(
    reader: LoggedInClient,
    clinician: LoggedInClient,
    api_case: ReadingCase,
    database: Database,
) -> None:
    report_id = _draft(reader, api_case)
    refused = clinician.post(f"/api/v1/reports/{report_id}/sign")
    assert refused.status_code == 403
    assert "radiologist" in refused.json()["detail"]
    assert reader.get(f"/api/v1/reports/{report_id}").json()["status"] == "draft"
    with database.session() as db_session:
        denied = db_session.execute(
            select(AuditEvent).where(
                AuditEvent.action == "access.denied",
                AuditEvent.actor_name == clinician.user.username,
            )
        ).scalar_one()
        assert f"/api/v1/reports/{report_id}/sign" in denied.object_id


def test_admin_cannot_sign(
    reader: LoggedInClient,
    login_as: Callable[..., LoggedInClient],
    api_case: ReadingCase,
) -> None:
    admin = login_as(Role.ADMIN)
    report_id = _draft(reader, api_case)
    assert admin.post(f"/api/v1/reports/{report_id}/sign").status_code == 403
    refused = admin.post(
        f"/api/v1/reports/{report_id}/addenda", json={"kind": "addendum", "sign": True}
    )
    assert refused.status_code == 403


def test_signed_report_edit_is_409(
    reader: LoggedInClient, api_case: ReadingCase
) -> None:
    report_id = _draft(reader, api_case)
    assert reader.post(f"/api/v1/reports/{report_id}/sign").status_code == 200
    edited = reader.put(
        f"/api/v1/reports/{report_id}", json={**CONTENT, "impression": "changed"}
    )
    assert edited.status_code == 409
    assert "addend" in edited.json()["detail"]
    assert (
        reader.get(f"/api/v1/reports/{report_id}").json()["impression"]
        == (CONTENT["impression"])
    )


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"template": "foot", "findings": [], "impression": ""}, "findings"),
        (
            {**CONTENT, "findings": [{**CONTENT["findings"][0], "limb": None}]},
            "findings[0].limb",
        ),
        (
            {**CONTENT, "findings": [{**CONTENT["findings"][0], "structure": None}]},
            "findings[0].structure",
        ),
    ],
)
def test_sign_incomplete_report_names_the_field(
    reader: LoggedInClient,
    api_case: ReadingCase,
    content: dict[str, Any],
    field: str,
) -> None:
    created = reader.post(f"/api/v1/studies/{api_case.study.id}/reports").json()
    assert reader.put(f"/api/v1/reports/{created['id']}", json=content).status_code == (
        200
    )
    refused = reader.post(f"/api/v1/reports/{created['id']}/sign")
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == field
    assert reader.get(f"/api/v1/reports/{created['id']}").json()["status"] == "draft"


def test_report_for_missing_study_is_404(reader: LoggedInClient) -> None:
    refused = reader.post("/api/v1/studies/987654/reports")
    assert refused.status_code == 404
    assert refused.json()["errors"][0] == {
        "field": "study_id",
        "value": 987654,
        "message": refused.json()["detail"],
    }


def test_bad_values_are_422_naming_field(
    reader: LoggedInClient, api_case: ReadingCase
) -> None:
    report_id = _draft(reader, api_case)
    bad = {**CONTENT, "findings": [{**CONTENT["findings"][0], "grade": 7}]}
    refused = reader.put(f"/api/v1/reports/{report_id}", json=bad)
    assert refused.status_code == 422
    assert "findings.0.grade" in refused.json()["detail"]
    unknown = {**CONTENT, "findings": [{**CONTENT["findings"][0], "finding": "x"}]}
    refused = reader.put(f"/api/v1/reports/{report_id}", json=unknown)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "findings[0].finding"


def test_addendum_and_amendment_keep_versions(
    reader: LoggedInClient, clinician: LoggedInClient, api_case: ReadingCase
) -> None:
    report_id = _draft(reader, api_case)
    reader.post(f"/api/v1/reports/{report_id}/sign")
    addendum = reader.post(
        f"/api/v1/reports/{report_id}/addenda",
        json={
            "kind": "addendum",
            "sign": True,
            "content": {"impression": "Owner reports the horse was shod last week."},
        },
    )
    assert addendum.status_code == 201, addendum.text
    assert (addendum.json()["version"], addendum.json()["status"]) == (2, "final")
    amendment = reader.post(
        f"/api/v1/reports/{report_id}/addenda",
        json={
            "kind": "amendment",
            "sign": True,
            "content": {**CONTENT, "impression": "Moderate navicular changes."},
        },
    )
    assert amendment.status_code == 201, amendment.text
    versions = clinician.get(f"/api/v1/studies/{api_case.study.id}/reports").json()
    assert [(v["version"], v["kind"], v["superseded_by_id"]) for v in versions] == [
        (1, "report", amendment.json()["id"]),
        (2, "addendum", None),
        (3, "amendment", None),
    ]
    old = clinician.get(f"/reports/{report_id}")
    assert old.status_code == 200 and "replaced by" in old.text


def test_search_api_and_csv_export(
    reader: LoggedInClient,
    clinician: LoggedInClient,
    api_case: ReadingCase,
    database: Database,
    settings: Settings,
) -> None:
    report_id = _draft(reader, api_case)
    reader.post(f"/api/v1/reports/{report_id}/sign")
    with database.session() as db_session:
        other = make_case(
            db_session, settings, clinician.user, reader.user, barn_name="Other"
        )
    other_id = reader.post(f"/api/v1/studies/{other.study.id}/reports").json()["id"]
    reader.put(
        f"/api/v1/reports/{other_id}",
        json={"template": "foot", "impression": "No abnormality detected."},
    )
    reader.post(f"/api/v1/reports/{other_id}/sign")

    found = clinician.get("/api/v1/reports/search", params={"q": "navicular"}).json()
    assert found["total"] == 1
    hit = found["hits"][0]
    assert hit["report_id"] == report_id
    assert hit["chart_url"] == f"/horses/{api_case.horse.id}"
    assert hit["study_url"] == f"/reading/studies/{api_case.study.id}"
    assert hit["report_url"] == f"/reports/{report_id}"

    both = clinician.get("/api/v1/reports/search", params={"q": ""}).json()
    assert both["total"] == 2
    exported = clinician.get(
        "/reports/search.csv", params={"q": "navicular", "limb": "LF"}
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["report_id"], r["structure"], r["limb"]) for r in rows] == [
        (str(report_id), "Navicular bone", "LF")
    ]

    bad = clinician.get("/api/v1/reports/search", params={"limb": "XX"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "limb"
    page = clinician.get("/reports/search", params={"q": "navicular"})
    assert page.status_code == 200
    assert f'href="/horses/{api_case.horse.id}"' in page.text


@pytest.mark.parametrize(
    ("field", "value"), [("date_to", "9999-12-31"), ("date_from", "0001-01-01")]
)
def test_search_date_out_of_range_names_the_field(
    clinician: LoggedInClient, field: str, value: str
) -> None:
    for url in ("/api/v1/reports/search", "/reports/search.csv"):
        response = clinician.get(url, params={field: value})

        assert response.status_code == 422, (url, response.text[:200])
        error = response.json()["errors"][0]
        assert error["field"] == field
        assert (
            "out of range; use a date from 1900-01-01 to 9998-12-31"
            in (error["message"])
        )


def test_csv_export_neutralises_formulas(
    reader: LoggedInClient,
    clinician: LoggedInClient,
    database: Database,
    settings: Settings,
) -> None:
    with database.session() as db_session:
        case = make_case(
            db_session, settings, clinician.user, reader.user, barn_name="@Calc"
        )
    report_id = reader.post(f"/api/v1/studies/{case.study.id}/reports").json()["id"]
    reader.put(
        f"/api/v1/reports/{report_id}",
        json={"template": "foot", "impression": '=HYPERLINK("http://x","y")'},
    )
    assert reader.post(f"/api/v1/reports/{report_id}/sign").status_code == 200

    exported = clinician.get("/reports/search.csv", params={"q": ""})

    (row,) = csv.DictReader(io.StringIO(exported.text))
    assert row["horse"] == "'@Calc"
    assert row["impression"] == '\'=HYPERLINK("http://x","y")'
    assert row["report_id"] == str(report_id)


def test_pages_render(
    reader: LoggedInClient, clinician: LoggedInClient, api_case: ReadingCase
) -> None:
    queue = reader.get("/reading")
    assert queue.status_code == 200 and "Nutmeg" in queue.text
    claimed = reader.post(
        f"/reading/studies/{api_case.study.id}/claim", follow_redirects=False
    )
    assert claimed.status_code == 303
    editor = reader.get(claimed.headers["location"])
    assert editor.status_code == 200
    assert "Being read by" in editor.text
    assert f"/instances/{api_case.instances[0].sop_instance_uid}/thumbnail" in (
        editor.text
    )
    assert clinician.get("/reading").status_code == 403
    assert clinician.get("/reports/search").status_code == 200
    assert clinician.get("/notifications").status_code == 200
    assert clinician.get("/reporting/vocabulary").status_code == 200


def test_vocabulary_is_editable_by_admins_only(
    login_as: Callable[..., LoggedInClient], reader: LoggedInClient, db_session: Session
) -> None:
    vocabulary = reader.get("/api/v1/reporting/vocabulary").json()
    assert "source" in vocabulary and vocabulary["source"]
    oa = next(f for f in vocabulary["findings"] if f["key"] == "osteoarthritis")
    assert (oa["scheme"], oa["code"]) == ("SCT", "396275006")
    local = [f for f in vocabulary["findings"] if f["scheme"] == "local"]
    assert local and all(f["code"] == "" for f in local)

    path = f"/api/v1/reporting/vocabulary/terms/{oa['id']}"
    assert reader.patch(path, json={"display": "OA"}).status_code == 403
    admin = login_as(Role.ADMIN)
    bad = admin.patch(path, json={"scheme": "SCT", "code": "12ab"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "code"
    changed = admin.patch(path, json={"synonyms": ["DJD", "arthrosis", "OA"]})
    assert changed.status_code == 200
    assert changed.json()["synonyms"] == ["DJD", "arthrosis", "OA"]
    added = admin.post(
        "/api/v1/reporting/vocabulary/finding",
        json={"key": "keratoma", "display": "Keratoma", "scheme": "local"},
    )
    assert added.status_code == 201, added.text


def test_late_image_requeues_study_for_addendum(
    reader: LoggedInClient,
    api_case: ReadingCase,
    database: Database,
    settings: Settings,
) -> None:
    from tests.reporting.test_reporting_service import TestImagesAfterReport

    study_id = api_case.study.id
    report_id = _draft(reader, api_case)
    assert reader.post(f"/api/v1/reports/{report_id}/sign").status_code == 200
    assert reader.get("/api/v1/reading-queue").json() == []

    with database.session() as db_session:
        TestImagesAfterReport()._late_image(db_session, settings, api_case)

    (item,) = reader.get("/api/v1/reading-queue").json()
    assert item["study_id"] == study_id
    assert item["images_after_report"] == 1
    page = reader.get("/reading")
    assert "1 new image since sign-off" in page.text
    assert "Claim and write addendum" in page.text

    claimed = reader.post(
        f"/reading/studies/{study_id}/claim",
        data={"csrf_token": reader.csrf_token},
        follow_redirects=False,
    )
    assert claimed.status_code == 303, claimed.text
    addendum_id = int(claimed.headers["location"].split("/")[2])
    addendum = reader.get(f"/api/v1/reports/{addendum_id}").json()
    assert addendum["kind"] == "addendum"
    assert addendum["status"] == "draft"
    (item,) = reader.get("/api/v1/reading-queue").json()
    assert item["report_id"] == addendum_id
