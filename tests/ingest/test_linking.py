"""Linking studies to orders, the reconciliation queue and the chart fragment."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from PIL import Image
from pydicom.uid import generate_uid
from sqlalchemy import select
from tests.ingest.conftest import MODALITY, Clinic, MakeInstance

from fetlock.audit.models import AuditEvent
from fetlock.auth.models import Role
from fetlock.db.session import Database
from fetlock.imaging.ingest import store_instance
from fetlock.imaging.study_models import Study
from fetlock.jobs.worker import Worker
from fetlock.storage import LocalBlobStore


def _study(database: Database) -> Study:
    with database.session() as db_session:
        return db_session.execute(select(Study)).scalar_one()


def _actions(database: Database) -> list[str]:
    with database.session() as db_session:
        return list(
            db_session.execute(
                select(AuditEvent.action).order_by(AuditEvent.seq)
            ).scalars()
        )


def test_study_links_to_its_order_by_accession_number(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
) -> None:
    # The modality generated its own Study Instance UID but kept the accession.
    path = make_instance(
        AccessionNumber=clinic.order.accession_number,
        PatientID=clinic.monty.patient_id,
    )

    store_instance(database, path, blobs=blobs, actor=MODALITY)

    study = _study(database)
    assert study.study_instance_uid != clinic.order.study_instance_uid
    assert (study.horse_id, study.order_id) == (clinic.monty.id, clinic.order.id)
    assert study.link_method == "accession_number"
    assert study.unmatched_reason is None
    assert "imaging.study.linked" in _actions(database)


def test_images_without_mpps_take_order_off_worklist(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
) -> None:
    from fetlock.imaging import service as imaging_service
    from fetlock.imaging.models import ImagingOrder

    def on_worklist() -> list[str]:
        with database.session() as db_session:
            records = imaging_service.worklist_records(
                db_session,
                imaging_service.WorklistFilter(),
                day=dt.date.today(),
                with_views=False,
            )
        return [r.accession_number for r in records]

    assert clinic.order.accession_number in on_worklist()
    path = make_instance(
        AccessionNumber=clinic.order.accession_number,
        PatientID=clinic.monty.patient_id,
    )

    store_instance(database, path, blobs=blobs, actor=MODALITY)

    with database.session() as db_session:
        order = db_session.get(ImagingOrder, clinic.order.id)
        assert order is not None
        assert order.status == "in_progress"
        assert order.started_at is not None
        assert [step.status for step in order.steps] == ["STARTED"]
    assert clinic.order.accession_number not in on_worklist()


def test_order_with_images_cancels_only_with_reason(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    login_as,  # type: ignore[no-untyped-def]
) -> None:
    path = make_instance(
        AccessionNumber=clinic.order.accession_number,
        PatientID=clinic.monty.patient_id,
    )
    store_instance(database, path, blobs=blobs, actor=MODALITY)
    vet = login_as(Role.VETERINARIAN)
    page = vet.get(f"/orders/{clinic.order.id}")
    assert "Cancel order" in page.text
    assert "Reason (required)" in page.text

    # The page's form without a reason comes back with the message.
    blank = vet.post(f"/orders/{clinic.order.id}/cancel", data={"reason": " "})
    assert blank.status_code == 422
    assert "needs a reason" in blank.text
    assert "Reason (required)" in blank.text

    bare = vet.post(f"/api/v1/orders/{clinic.order.id}/cancel", json={})
    assert bare.status_code == 422, bare.text
    assert bare.json()["errors"][0]["field"] == "reason"

    cancelled = vet.post(
        f"/api/v1/orders/{clinic.order.id}/cancel",
        json={"reason": "owner withdrew consent after acquisition"},
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"


def test_study_links_by_study_instance_uid_without_accession(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
) -> None:
    path = make_instance(
        study_uid=clinic.order.study_instance_uid,
        AccessionNumber="",
        PatientID=clinic.monty.patient_id,
    )

    store_instance(database, path, blobs=blobs, actor=MODALITY)

    study = _study(database)
    assert (study.horse_id, study.order_id) == (clinic.monty.id, clinic.order.id)
    assert study.link_method == "study_instance_uid"


def test_walk_in_study_waits_in_the_queue_with_the_reason(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
) -> None:
    path = make_instance(AccessionNumber="OFFLINE7", PatientID="PLATE-7")

    store_instance(database, path, blobs=blobs, actor=MODALITY)

    study = _study(database)
    assert study.horse_id is None
    assert study.order_id is None
    assert "no order has (0008,0050) Accession Number 'OFFLINE7'" in (
        study.unmatched_reason or ""
    )


def test_accession_of_one_horse_with_patient_id_of_another_is_queued(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
) -> None:
    path = make_instance(
        AccessionNumber=clinic.order.accession_number,
        PatientID=clinic.star.patient_id,
    )

    store_instance(database, path, blobs=blobs, actor=MODALITY)

    study = _study(database)
    assert study.horse_id is None
    reason = study.unmatched_reason or ""
    assert f"order {clinic.order.accession_number} for Monty" in reason
    assert f"(0010,0020) Patient ID '{clinic.star.patient_id}'" in reason


def test_queued_study_links_when_a_later_image_names_the_accession(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
) -> None:
    study_uid = generate_uid()
    first = make_instance(
        study_uid=study_uid, AccessionNumber="", PatientID=clinic.monty.patient_id
    )
    later = make_instance(
        study_uid=study_uid,
        AccessionNumber=clinic.order.accession_number,
        PatientID=clinic.monty.patient_id,
    )

    store_instance(database, first, blobs=blobs, actor=MODALITY)
    assert _study(database).horse_id is None
    store_instance(database, later, blobs=blobs, actor=MODALITY)

    study = _study(database)
    assert study.order_id == clinic.order.id
    assert study.dicom_accession_number == clinic.order.accession_number


def test_staff_attach_a_queued_study_and_the_chart_shows_it(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    login_as,  # type: ignore[no-untyped-def]
) -> None:
    path = make_instance(
        AccessionNumber="", PatientID="PLATE-7", PatientName="Unknown^Pony"
    )
    store_instance(database, path, blobs=blobs, actor=MODALITY)
    study = _study(database)
    tech = login_as(Role.TECHNICIAN)

    queue = tech.get("/imaging/reconcile")
    assert queue.status_code == 200
    assert "PLATE-7" in queue.text
    assert "Unknown^Pony" in queue.text
    detail = tech.get(f"/imaging/reconcile/{study.id}?horse_id={clinic.monty.id}")
    assert clinic.order.accession_number in detail.text

    response = tech.post(
        f"/imaging/reconcile/{study.id}",
        data={"horse_id": str(clinic.monty.id), "order_id": str(clinic.order.id)},
        follow_redirects=False,
    )

    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/horses/{clinic.monty.id}"
    linked = _study(database)
    assert (linked.horse_id, linked.order_id) == (clinic.monty.id, clinic.order.id)
    assert linked.link_method == "staff"
    assert linked.linked_by_id == tech.user.id
    assert linked.dicom_patient_id == "PLATE-7", "original attributes are kept"
    with database.session() as db_session:
        event = db_session.execute(
            select(AuditEvent).where(AuditEvent.action == "imaging.study.linked")
        ).scalar_one()
        assert event.actor_id == tech.user.id
        assert event.horse_id == clinic.monty.id
    fragment = tech.get(f"/horses/{clinic.monty.id}/studies-section")
    assert f'data-study-uid="{linked.study_instance_uid}"' in fragment.text
    assert "Nothing waits" in tech.get("/imaging/reconcile").text


def test_viewer_link_only_for_roles_that_can_view(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    login_as,  # type: ignore[no-untyped-def]
) -> None:
    path = make_instance(AccessionNumber="", PatientID="PLATE-8")
    store_instance(database, path, blobs=blobs, actor=MODALITY)
    study = _study(database)
    viewer_link = f'href="/viewer/studies/{study.study_instance_uid}"'

    # Reception reconciles studies but may not open images (403 in the viewer).
    reception = login_as(Role.RECEPTION)
    detail = reception.get(f"/imaging/reconcile/{study.id}")
    assert detail.status_code == 200
    assert viewer_link not in detail.text
    assert (
        reception.get(f"/viewer/studies/{study.study_instance_uid}").status_code == 403
    )

    tech = login_as(Role.TECHNICIAN)
    assert viewer_link in tech.get(f"/imaging/reconcile/{study.id}").text


def test_attach_to_an_order_of_another_horse_is_refused_naming_the_field(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    login_as,  # type: ignore[no-untyped-def]
) -> None:
    store_instance(
        database, make_instance(AccessionNumber=""), blobs=blobs, actor=MODALITY
    )
    study = _study(database)
    vet = login_as(Role.VETERINARIAN)

    response = vet.post(
        f"/api/v1/imaging/studies/{study.id}/link",
        json={"horse_id": clinic.star.id, "order_id": clinic.order.id},
    )

    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["field"] == "order_id"
    assert error["value"] == clinic.order.id
    assert "is for another horse, not Star" in error["message"]
    assert _study(database).horse_id is None


@pytest.mark.parametrize("status", ["reported", "cancelled"])
def test_closed_order_is_not_offered_nor_attached(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    login_as,  # type: ignore[no-untyped-def]
    status: str,
) -> None:
    from fetlock.imaging.models import ImagingOrder, OrderStatus

    with database.session() as db_session:
        order = db_session.get(ImagingOrder, clinic.order.id)
        assert order is not None
        order.status = OrderStatus(status)
    store_instance(
        database, make_instance(AccessionNumber=""), blobs=blobs, actor=MODALITY
    )
    study = _study(database)
    vet = login_as(Role.VETERINARIAN)

    detail = vet.get(f"/imaging/reconcile/{study.id}?horse_id={clinic.monty.id}")
    assert detail.status_code == 200
    assert clinic.order.accession_number not in detail.text
    response = vet.post(
        f"/api/v1/imaging/studies/{study.id}/link",
        json={"horse_id": clinic.monty.id, "order_id": clinic.order.id},
    )

    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["field"] == "order_id"
    assert f"is {status} and takes no more images" in error["message"]
    assert _study(database).horse_id is None


@pytest.mark.parametrize("status", ["reported", "cancelled"])
def test_images_for_closed_order_wait_in_the_queue(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    status: str,
) -> None:
    from fetlock.imaging.models import ImagingOrder, OrderStatus

    with database.session() as db_session:
        order = db_session.get(ImagingOrder, clinic.order.id)
        assert order is not None
        order.status = OrderStatus(status)
    path = make_instance(
        AccessionNumber=clinic.order.accession_number,
        PatientID=clinic.monty.patient_id,
    )

    store_instance(database, path, blobs=blobs, actor=MODALITY)

    study = _study(database)
    assert study.order_id is None
    assert study.horse_id is None
    assert f"which is {status} and takes no more images" in (
        study.unmatched_reason or ""
    )


def test_reception_may_look_at_the_queue_but_not_attach(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    login_as,  # type: ignore[no-untyped-def]
) -> None:
    store_instance(
        database, make_instance(AccessionNumber=""), blobs=blobs, actor=MODALITY
    )
    study = _study(database)
    reception = login_as(Role.RECEPTION)

    assert reception.get("/api/v1/imaging/reconciliation").json()[0]["id"] == study.id
    response = reception.post(
        f"/api/v1/imaging/studies/{study.id}/link", json={"horse_id": clinic.monty.id}
    )

    assert response.status_code == 403


def _send_views(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    labels: list[str],
) -> None:
    study_uid = generate_uid()
    series_uid = generate_uid()
    for number, label in enumerate(labels, start=1):
        path = make_instance(
            study_uid=study_uid,
            series_uid=series_uid,
            AccessionNumber=clinic.order.accession_number,
            PatientID=clinic.monty.patient_id,
            Modality="DX",
            InstanceNumber=number,
            AcquisitionDeviceProcessingDescription=label,
        )
        assert store_instance(database, path, blobs=blobs, actor=MODALITY).ok


def test_chart_fragment_shows_study_views_count_status_and_thumbnail(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    worker: Worker,
    login_as,  # type: ignore[no-untyped-def]
) -> None:
    # Ordered: LF-LM, LF-D65Pr-PaDiO, LF-PaPr-PaDiO. Received: two of them,
    # one named another way, and a view that was not ordered.
    _send_views(
        database, blobs, make_instance, clinic, ["LF LM", "lf-d65pr-padio", "RF LM"]
    )
    vet = login_as(Role.VETERINARIAN)
    url = f"/horses/{clinic.monty.id}/studies-section"

    before = vet.get(url)
    assert before.status_code == 200
    assert "Preparing preview" in before.text
    assert '<span class="image-count">3</span> images' in before.text
    assert "Views: 2 of 3 ordered" in before.text
    assert "Missing: LF-PaPr-PaDiO" in before.text
    assert "Not ordered: RF LM" in before.text
    # Images arrived, so the order has started even without an MPPS.
    assert '<span class="study-status badge in-progress">in progress</span>' in (
        before.text
    )
    assert "DX" in before.text

    assert worker.run_pending() >= 1
    after = vet.get(url)
    assert '<img class="study-thumbnail"' in after.text
    study = _study(database)
    thumbnail = vet.get(f"/imaging/studies/{study.id}/thumbnail.jpg")
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(thumbnail.content))
    assert max(image.size) == 256

    views = vet.get(f"/api/v1/imaging/orders/{clinic.order.id}/views").json()
    assert views["missing"] == ["LF-PaPr-PaDiO"]
    assert views["extra"] == ["RF LM"]


def test_chart_fragment_needs_a_login(client, clinic: Clinic) -> None:  # type: ignore[no-untyped-def]
    response = client.get(
        f"/horses/{clinic.monty.id}/studies-section", follow_redirects=False
    )

    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_thumbnail_of_a_study_not_yet_rendered_is_404_with_the_reason(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    login_as,  # type: ignore[no-untyped-def]
) -> None:
    store_instance(database, make_instance(), blobs=blobs, actor=MODALITY)
    study = _study(database)

    response = login_as(Role.VETERINARIAN).get(
        f"/imaging/studies/{study.id}/thumbnail.jpg"
    )

    assert response.status_code == 404
    assert "has no thumbnail yet" in response.json()["detail"]


@pytest.mark.parametrize("unknown", [999_999])
def test_studies_of_an_unknown_horse_are_404(login_as, unknown: int) -> None:  # type: ignore[no-untyped-def]
    response = login_as(Role.VETERINARIAN).get(f"/api/v1/horses/{unknown}/studies")

    assert response.status_code == 404
    assert str(unknown) in response.json()["detail"]


def _time_passes(database: Database, seconds: float) -> None:
    """Move every job and every study's last image ``seconds`` into the past."""
    import datetime as dt

    from fetlock.db.base import utcnow
    from fetlock.jobs.models import Job

    earlier = utcnow() - dt.timedelta(seconds=seconds)
    with database.session() as db_session:
        for job in db_session.execute(select(Job)).scalars():
            job.run_after = earlier
        for study in db_session.execute(select(Study)).scalars():
            study.last_received_at = earlier


def test_settled_study_reaches_billing_once_images_stop(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    worker: Worker,
) -> None:
    from fetlock.jobs.models import Job

    _send_views(
        database, blobs, make_instance, clinic, ["LF LM", "LF LM", "LF LM", "LF LM"]
    )
    _time_passes(database, 10)

    worker.run_pending()

    with database.session() as db_session:
        assert db_session.execute(select(Job)).scalars().all() == []
    actions = _actions(database)
    assert "charge.views_flagged" in actions or any(
        a.startswith("charge.") and "extra" in a for a in actions
    ), actions


def test_settled_check_waits_while_images_keep_arriving(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    worker: Worker,
) -> None:
    from fetlock.db.base import utcnow
    from fetlock.jobs.models import Job

    _send_views(database, blobs, make_instance, clinic, ["LF LM"])
    with database.session() as db_session:
        for job in db_session.execute(select(Job)).scalars():
            job.run_after = utcnow()

    worker.run_pending()

    with database.session() as db_session:
        (pending,) = db_session.execute(
            select(Job).where(Job.name == "study_settled")
        ).scalars()
        assert pending.run_after > utcnow()
    assert "charge.views_flagged" not in _actions(database)


def test_order_page_shows_views_ordered_against_received(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    clinic: Clinic,
    login_as,  # type: ignore[no-untyped-def]
) -> None:
    vet = login_as(Role.VETERINARIAN)
    fragment_url = f"/orders/{clinic.order.id}/views-section"
    assert "No images received" in vet.get(fragment_url).text

    _send_views(database, blobs, make_instance, clinic, ["LF LM", "LF LM", "RF DP"])
    fragment = vet.get(fragment_url).text

    assert "LF-LM</span>\n    2 images" in fragment
    assert "LF-PaPr-PaDiO</span>\n    missing" in fragment
    assert "Not ordered: RF DP" in fragment
    assert "1 of 3 ordered views received" in fragment
    page = vet.get(f"/orders/{clinic.order.id}")
    assert f'data-refresh="{fragment_url}"' in page.text
