"""Reporting rules: drafting, validation, sign-off, versions, claims, queue."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.reporting.conftest import ReadingCase, add_user, make_case, reader_actor

from fetlock.audit.models import AuditEvent
from fetlock.auth.models import Role
from fetlock.config import Settings
from fetlock.imaging.models import ImagingOrder, OrderStatus
from fetlock.jobs.models import Job
from fetlock.reporting import service
from fetlock.reporting.models import (
    DocumentStatus,
    Notification,
    ReportFinding,
    ReportKind,
    ReportStatus,
)
from fetlock.reporting.schemas import FindingIn, KeyImageIn, ReportContentIn
from fetlock.web.errors import Conflict, DomainError, NotFound

NAVICULAR = FindingIn(
    limb="LF",
    structure="navicular_bone",
    finding="synovial_invaginations",
    grade=2,
    detail="Six enlarged invaginations along the distal border.",
)


def _content(*findings: FindingIn, impression: str = "Navicular changes.", **kw):  # type: ignore[no-untyped-def]
    return ReportContentIn(
        template="foot", findings=list(findings), impression=impression, **kw
    )


def _draft(
    db_session: Session, case: ReadingCase, content: ReportContentIn | None = None
):  # type: ignore[no-untyped-def]
    actor = reader_actor(case.radiologist)
    report = service.create_report(db_session, actor, case.radiologist, case.study.id)
    if content is not None:
        service.update_report(db_session, actor, case.radiologist, report.id, content)
    return report


def _sign(db_session: Session, case: ReadingCase, report_id: int):  # type: ignore[no-untyped-def]
    return service.sign_report(
        db_session, reader_actor(case.radiologist), case.radiologist, report_id
    )


class TestDrafting:
    def test_create_report__unknown_study_is_refused_naming_it(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        with pytest.raises(NotFound) as caught:
            service.create_report(
                db_session, reader_actor(case.radiologist), case.radiologist, 999_999
            )
        assert caught.value.field == "study_id"
        assert "999999" in caught.value.message

    def test_create_report__takes_template_and_context_from_the_order(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        report = _draft(db_session, case)
        assert report.template_key == "foot"
        assert report.status == ReportStatus.DRAFT
        assert report.horse_id == case.horse.id
        assert report.requesting_clinician_id == case.vet.id
        assert "palmar digital" in report.clinical_history
        assert report.technique.startswith("Lateromedial")

    def test_create_report__second_draft_on_a_study_conflicts(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        first = _draft(db_session, case)
        with pytest.raises(Conflict) as caught:
            _draft(db_session, case)
        assert str(first.id) in caught.value.message

    def test_update_report__unknown_limb_is_refused_and_nothing_saved(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        report = _draft(db_session, case, _content(NAVICULAR))
        bad = NAVICULAR.model_copy(update={"limb": "XF"})
        with pytest.raises(DomainError) as caught:
            service.update_report(
                db_session,
                reader_actor(case.radiologist),
                case.radiologist,
                report.id,
                _content(NAVICULAR, bad, impression="changed"),
            )
        assert caught.value.field == "findings[1].limb"
        assert "'XF'" in caught.value.message and "LF" in caught.value.message
        db_session.refresh(report)
        assert len(report.findings) == 1
        assert report.impression == "Navicular changes."

    def test_update_report__unknown_structure_is_refused(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        report = _draft(db_session, case)
        with pytest.raises(DomainError) as caught:
            service.update_report(
                db_session,
                reader_actor(case.radiologist),
                case.radiologist,
                report.id,
                _content(NAVICULAR.model_copy(update={"structure": "wing"})),
            )
        assert caught.value.field == "findings[0].structure"

    def test_update_report__key_image_from_another_study_is_refused(
        self, db_session: Session, settings: Settings, case: ReadingCase
    ) -> None:
        other = make_case(db_session, settings, case.vet, case.radiologist)
        report = _draft(db_session, case)
        content = _content(
            NAVICULAR, key_images=[KeyImageIn(instance_id=other.instances[0].id)]
        )
        with pytest.raises(DomainError) as caught:
            service.update_report(
                db_session,
                reader_actor(case.radiologist),
                case.radiologist,
                report.id,
                content,
            )
        assert caught.value.field == "key_images[0].instance_id"


class TestSigning:
    def test_sign__empty_report_is_refused(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        report = _draft(db_session, case, _content(impression=""))
        with pytest.raises(DomainError) as caught:
            _sign(db_session, case, report.id)
        assert caught.value.field == "findings"
        assert report.status == ReportStatus.DRAFT

    @pytest.mark.parametrize(
        ("missing", "field"),
        [("limb", "findings[0].limb"), ("structure", "findings[0].structure")],
    )
    def test_sign__finding_missing_a_part_is_refused_naming_it(
        self, db_session: Session, case: ReadingCase, missing: str, field: str
    ) -> None:
        report = _draft(
            db_session, case, _content(NAVICULAR.model_copy(update={missing: None}))
        )
        with pytest.raises(DomainError) as caught:
            _sign(db_session, case, report.id)
        assert caught.value.field == field
        assert report.content_sha256 is None

    @pytest.mark.parametrize("role", [Role.VETERINARIAN, Role.ADMIN])
    def test_sign__without_the_radiologist_role_is_forbidden_and_audited(
        self, db_session: Session, case: ReadingCase, role: Role
    ) -> None:
        report = _draft(db_session, case, _content(NAVICULAR))
        user = add_user(db_session, f"not-reader-{role.value}", "Not A Reader", role)
        with pytest.raises(service.Forbidden) as caught:
            service.sign_report(db_session, reader_actor(user), user, report.id)
        assert caught.value.status_code == 403
        assert report.status == ReportStatus.DRAFT
        denied = db_session.execute(
            select(AuditEvent).where(AuditEvent.action == "report.sign.denied")
        ).scalar_one()
        assert denied.actor_name == user.username

    def test_sign__records_signer_time_and_hash_of_canonical_content(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        report = _draft(
            db_session,
            case,
            _content(
                NAVICULAR, key_images=[KeyImageIn(instance_id=case.instances[1].id)]
            ),
        )
        _sign(db_session, case, report.id)

        assert report.status == ReportStatus.FINAL
        assert report.signed_by_id == case.radiologist.id
        assert report.signed_at is not None
        assert report.content_json is not None
        digest = hashlib.sha256(report.content_json.encode("utf-8")).hexdigest()
        assert report.content_sha256 == digest
        content = json.loads(report.content_json)
        assert content["signed_by"]["username"] == case.radiologist.username
        assert content["study"]["AccessionNumber"] == case.order.accession_number
        assert content["findings"][0]["structure"]["key"] == "navicular_bone"
        assert content["key_images"][0]["SOPInstanceUID"] == (
            case.instances[1].sop_instance_uid
        )
        # Canonical: sorted keys, no whitespace between tokens.
        assert report.content_json == json.dumps(
            content, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        assert service.verify_signature(db_session, report)

    def test_sign__changed_finding_row_no_longer_verifies(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        report = _draft(db_session, case, _content(NAVICULAR))
        _sign(db_session, case, report.id)
        finding = db_session.execute(
            select(ReportFinding).where(ReportFinding.report_id == report.id)
        ).scalar_one()
        finding.grade = 4
        db_session.flush()
        assert not service.verify_signature(db_session, report)

    def test_sign__signed_report_never_changes(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        report = _draft(db_session, case, _content(NAVICULAR))
        _sign(db_session, case, report.id)
        with pytest.raises(Conflict) as caught:
            service.update_report(
                db_session,
                reader_actor(case.radiologist),
                case.radiologist,
                report.id,
                _content(impression="rewritten"),
            )
        assert caught.value.status_code == 409
        assert "addend" in caught.value.message
        with pytest.raises(Conflict):
            _sign(db_session, case, report.id)

    def test_sign__reports_order_notifies_clinician_and_queues_documents(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        actor = reader_actor(case.radiologist)
        service.claim_study(db_session, actor, case.radiologist, case.study.id)
        report = _draft(db_session, case, _content(NAVICULAR))
        _sign(db_session, case, report.id)

        assert db_session.get(ImagingOrder, case.order.id).status == (  # type: ignore[union-attr]
            OrderStatus.REPORTED
        )
        note = db_session.execute(
            select(Notification).where(Notification.user_id == case.vet.id)
        ).scalar_one()
        assert note.kind == "report.final" and "Nutmeg" in note.title
        job = db_session.execute(
            select(Job).where(Job.name == service.DOCUMENTS_JOB)
        ).scalar_one()
        assert json.loads(job.args_json) == {"report_id": report.id}
        assert report.document_status == DocumentStatus.PENDING
        assert report.representative_instance_id == case.instances[0].id
        assert service.get_claim(db_session, case.study.id) is None


class TestVersions:
    def test_amendment__replaces_but_keeps_the_signed_version(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        first = _draft(db_session, case, _content(NAVICULAR))
        _sign(db_session, case, first.id)
        actor = reader_actor(case.radiologist)
        amendment = service.start_follow_up(
            db_session, actor, case.radiologist, first.id, ReportKind.AMENDMENT
        )
        assert amendment.version == 2
        assert [f.structure_key for f in amendment.findings] == ["navicular_bone"]
        service.update_report(
            db_session,
            actor,
            case.radiologist,
            amendment.id,
            _content(NAVICULAR, impression="Moderate navicular changes, corrected."),
        )
        _sign(db_session, case, amendment.id)

        assert first.superseded_by_id == amendment.id
        assert first.status == ReportStatus.FINAL
        assert service.verify_signature(db_session, first)
        content = json.loads(amendment.content_json or "{}")
        assert content["report"]["supersedes_sha256"] == first.content_sha256
        versions = service.reports_for_study(db_session, case.study.id)
        assert [v.version for v in versions] == [1, 2]

    def test_addendum__adds_a_signed_version_without_replacing(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        first = _draft(db_session, case, _content(NAVICULAR))
        _sign(db_session, case, first.id)
        addendum = service.start_follow_up(
            db_session,
            reader_actor(case.radiologist),
            case.radiologist,
            first.id,
            ReportKind.ADDENDUM,
            ReportContentIn(impression="Compared with prior films: unchanged."),
        )
        _sign(db_session, case, addendum.id)
        assert addendum.status == ReportStatus.FINAL
        assert first.superseded_by_id is None

    def test_follow_up__on_a_draft_conflicts(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        draft = _draft(db_session, case, _content(NAVICULAR))
        with pytest.raises(Conflict):
            service.start_follow_up(
                db_session,
                reader_actor(case.radiologist),
                case.radiologist,
                draft.id,
                ReportKind.ADDENDUM,
            )


class TestQueueAndClaims:
    def test_claim__by_another_reader_conflicts_unless_taken_over(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        other = add_user(db_session, "reader-two", "Dr Two", Role.RADIOLOGIST)
        service.claim_study(
            db_session, reader_actor(case.radiologist), case.radiologist, case.study.id
        )
        with pytest.raises(Conflict) as caught:
            service.claim_study(db_session, reader_actor(other), other, case.study.id)
        assert "Dr Jürgen Falk" in caught.value.message
        claim = service.claim_study(
            db_session, reader_actor(other), other, case.study.id, take_over=True
        )
        assert claim.user_id == other.id

    def test_queue__orders_by_priority_then_age_and_filters(
        self,
        db_session: Session,
        settings: Settings,
        case: ReadingCase,
    ) -> None:
        urgent = make_case(
            db_session, settings, case.vet, case.radiologist, barn_name="Blaze",
            priority="STAT",
        )  # fmt: skip
        other_vet = add_user(db_session, "othervet", "Dr Other", Role.VETERINARIAN)
        ultrasound = make_case(
            db_session, settings, other_vet, case.radiologist, barn_name="Comet",
            modality="US", body_region="tendons",
        )  # fmt: skip
        queue = service.reading_queue(db_session)
        assert [i.study.id for i in queue] == [
            urgent.study.id,
            case.study.id,
            ultrasound.study.id,
        ]
        assert [
            i.study.id for i in service.reading_queue(db_session, modality="US")
        ] == [ultrasound.study.id]
        by_vet = service.reading_queue(db_session, clinician_id=other_vet.id)
        assert [i.study.id for i in by_vet] == [ultrasound.study.id]

        service.claim_study(
            db_session, reader_actor(case.radiologist), case.radiologist, case.study.id
        )
        claimed = next(
            i for i in service.reading_queue(db_session) if i.study.id == case.study.id
        )
        assert claimed.claimed_by is not None
        assert claimed.claimed_by.id == case.radiologist.id

    def test_queue__signed_study_leaves_the_queue(
        self, db_session: Session, case: ReadingCase
    ) -> None:
        report = _draft(db_session, case, _content(NAVICULAR))
        assert case.study.id in [i.study.id for i in service.reading_queue(db_session)]
        _sign(db_session, case, report.id)
        assert case.study.id not in [
            i.study.id for i in service.reading_queue(db_session)
        ]


def test_documents_job__writes_pdf_and_thumbnail(
    db_session: Session,
    case: ReadingCase,
    settings: Settings,
    run_jobs: Callable[[], int],
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    import subprocess

    from fetlock.storage import get_blob_store

    settings.practice_name = "Newmarket Equine Clinic"
    settings.practice_address = "1 High Street, Newmarket CB8 8AA"
    report = _draft(
        db_session,
        case,
        _content(
            NAVICULAR,
            FindingIn(
                limb="RF", structure="dip_joint", finding="osteoarthritis", grade=1
            ),
            key_images=[KeyImageIn(instance_id=case.instances[1].id, caption="LF DP")],
        ),
    )
    _sign(db_session, case, report.id)
    db_session.commit()

    assert run_jobs() >= 1
    db_session.refresh(report)
    assert report.document_status == DocumentStatus.READY
    blobs = get_blob_store(settings)
    pdf_path = tmp_path / "report.pdf"
    pdf_path.write_bytes(b"".join(blobs.iter_chunks(report.pdf_blob_key or "")))
    raw = subprocess.run(
        ["pdftotext", str(pdf_path), "-"], capture_output=True, text=True, check=True
    ).stdout
    text = " ".join(raw.split())
    assert report.content_sha256 in text
    assert "Navicular bone" in text
    assert "Enlarged synovial invaginations" in text
    assert "SCT 396275006" in text
    assert "Nutmeg" in text and "Ashworth" in text
    assert case.order.accession_number in text
    assert "Dr Jürgen Falk" in text
    assert "Newmarket Equine Clinic" in text
    assert "Newmarket CB8 8AA" in text
    thumbnail = b"".join(blobs.iter_chunks(report.thumbnail_blob_key or ""))
    assert thumbnail[:3] == b"\xff\xd8\xff"


def test_documents_job__failure_retries_and_stays_pending(
    db_session: Session,
    case: ReadingCase,
    run_jobs: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fetlock.db.base import utcnow
    from fetlock.reporting import jobs as reporting_jobs

    report = _draft(db_session, case, _content(NAVICULAR))
    _sign(db_session, case, report.id)
    db_session.commit()

    def broken(document: object) -> bytes:
        raise RuntimeError("font file unreadable")

    monkeypatch.setattr(reporting_jobs, "render_report_pdf", broken)
    run_jobs()
    db_session.expire_all()
    assert db_session.get(type(report), report.id).document_status == "pending"  # type: ignore[union-attr]
    job = db_session.execute(
        select(Job).where(Job.name == service.DOCUMENTS_JOB)
    ).scalar_one()
    assert job.attempts == 1
    assert job.state == "pending"
    assert "font file unreadable" in (job.last_error or "")
    shown = service.reports_for_horse(db_session, case.horse.id)
    assert [(c.report.id, c.job_state) for c in shown] == [(report.id, "pending")]

    # The next attempt, once rendering works again, writes the documents.
    monkeypatch.undo()
    job.run_after = utcnow()
    db_session.commit()
    assert run_jobs() >= 1
    db_session.expire_all()
    assert db_session.get(type(report), report.id).document_status == "ready"  # type: ignore[union-attr]


class TestImagesAfterReport:
    def _late_image(
        self, db_session: Session, settings: Settings, case: ReadingCase
    ) -> None:
        import io

        from pydicom.uid import generate_uid
        from tests.reporting.conftest import dicom_image

        from fetlock.audit.service import Actor
        from fetlock.imaging.ingest import store_instance
        from fetlock.storage import get_blob_store

        result = store_instance(
            db_session,
            io.BytesIO(
                dicom_image(
                    case.study.study_instance_uid,
                    case.order.accession_number,
                    series_uid=generate_uid(),
                    number=9,
                    patient_id=case.horse.patient_id,
                    label="LF late view",
                )
            ),
            blobs=get_blob_store(settings),
            actor=Actor(name="modality", source_ae_title="DR_STALL1"),
        )
        assert result.status == "stored", result.reason

    def _summary(self, db_session: Session, case: ReadingCase):  # type: ignore[no-untyped-def]
        from fetlock.imaging import study_service

        db_session.flush()
        return study_service.summarise(db_session, [case.study])[0]

    def test_late_image__counted_until_addendum(
        self, db_session: Session, settings: Settings, case: ReadingCase
    ) -> None:
        report = _draft(db_session, case, _content(NAVICULAR))
        _sign(db_session, case, report.id)
        assert self._summary(db_session, case).images_after_report == 0

        self._late_image(db_session, settings, case)

        summary = self._summary(db_session, case)
        assert summary.instance_count == 3
        assert summary.images_after_report == 1

        addendum = service.start_follow_up(
            db_session,
            reader_actor(case.radiologist),
            case.radiologist,
            report.id,
            ReportKind.ADDENDUM,
            ReportContentIn(impression="Late lateromedial view: no change."),
        )
        _sign(db_session, case, addendum.id)
        assert self._summary(db_session, case).images_after_report == 0

    def test_late_presentation_state__not_counted(
        self, db_session: Session, settings: Settings, case: ReadingCase
    ) -> None:
        import io

        from tests.reporting.conftest import dicom_presentation_state

        from fetlock.audit.service import Actor
        from fetlock.imaging.ingest import store_instance
        from fetlock.storage import get_blob_store

        report = _draft(db_session, case, _content(NAVICULAR))
        _sign(db_session, case, report.id)

        # A workstation saving its window and annotations sends a Grayscale
        # Softcopy Presentation State: no pixels, nothing for a report to cover.
        state = dicom_presentation_state(
            case.study.study_instance_uid,
            case.order.accession_number,
            case.horse.patient_id,
        )
        result = store_instance(
            db_session,
            io.BytesIO(state),
            blobs=get_blob_store(settings),
            actor=Actor(name="workstation", source_ae_title="READING1"),
        )
        assert result.status == "stored", result.reason

        summary = self._summary(db_session, case)
        assert summary.instance_count == 3
        assert summary.images_after_report == 0

    def test_late_image__before_sign_off_not_counted(
        self, db_session: Session, settings: Settings, case: ReadingCase
    ) -> None:
        _draft(db_session, case, _content(NAVICULAR))

        self._late_image(db_session, settings, case)

        assert self._summary(db_session, case).images_after_report == 0


def test_queue_lists_late_images_until_addendum(
    db_session: Session, settings: Settings, case: ReadingCase
) -> None:
    def queued() -> list[service.QueueItem]:
        db_session.flush()
        return [
            item
            for item in service.reading_queue(db_session)
            if item.study.id == case.study.id
        ]

    report = _draft(db_session, case, _content(NAVICULAR))
    _sign(db_session, case, report.id)
    assert queued() == []

    TestImagesAfterReport()._late_image(db_session, settings, case)
    (item,) = queued()
    assert item.images_after_report == 1
    assert item.report is None
    assert item.waiting_since > case.study.received_at, "waits from the late image"

    # Claiming from the queue starts an addendum to the signed report.
    addendum = service.open_or_create_report(
        db_session, reader_actor(case.radiologist), case.radiologist, case.study.id
    )
    assert addendum.kind == ReportKind.ADDENDUM
    assert addendum.supersedes_id == report.id
    (item,) = queued()
    assert item.report is not None
    assert item.report.id == addendum.id

    service.update_report(
        db_session,
        reader_actor(case.radiologist),
        case.radiologist,
        addendum.id,
        ReportContentIn(impression="Late lateromedial view: no change."),
    )
    _sign(db_session, case, addendum.id)
    assert queued() == []


def test_late_outside_report_keeps_addendum_due(
    db_session: Session, settings: Settings, case: ReadingCase
) -> None:
    import io

    from tests.reporting.conftest import dicom_text_sr

    from fetlock.audit.service import Actor
    from fetlock.imaging.ingest import store_instance
    from fetlock.storage import get_blob_store

    report = _draft(db_session, case, _content(NAVICULAR))
    _sign(db_session, case, report.id)
    TestImagesAfterReport()._late_image(db_session, settings, case)

    # A report from elsewhere arrives after the late image; its time is when
    # it was received, not a sign-off that covers the image.
    outside = dicom_text_sr(
        case.study.study_instance_uid,
        case.order.accession_number,
        {"Impression": "Second opinion: no change."},
    )
    result = store_instance(
        db_session,
        io.BytesIO(outside),
        blobs=get_blob_store(settings),
        actor=Actor(name="modality", source_ae_title="DR_STALL1"),
    )
    assert result.status == "stored", result.reason
    db_session.flush()

    (item,) = [
        i for i in service.reading_queue(db_session) if i.study.id == case.study.id
    ]
    assert item.images_after_report == 1
    addendum = service.open_or_create_report(
        db_session, reader_actor(case.radiologist), case.radiologist, case.study.id
    )
    assert addendum.kind == ReportKind.ADDENDUM
    assert addendum.supersedes_id == report.id, "follows the Fetlock report"


def test_chart_shows_images_after_report(
    db_session: Session,
    settings: Settings,
    case: ReadingCase,
    login_as,  # type: ignore[no-untyped-def]
) -> None:
    report = _draft(db_session, case, _content(NAVICULAR))
    _sign(db_session, case, report.id)
    TestImagesAfterReport()._late_image(db_session, settings, case)
    db_session.commit()
    vet = login_as(Role.VETERINARIAN)

    fragment = vet.get(f"/horses/{case.horse.id}/studies-section")
    study = vet.get(f"/api/v1/imaging/studies/{case.study.id}")

    assert fragment.status_code == 200
    assert "1 image arrived after the report was signed" in fragment.text
    assert study.status_code == 200, study.text
    assert study.json()["images_after_report"] == 1
