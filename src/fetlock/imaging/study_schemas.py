"""API shapes for received studies, their views and the reconciliation queue."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from fetlock.imaging.study_service import StudySummary, ViewComparison


class ViewComparisonOut(BaseModel):
    ordered: list[str]
    received: list[str]
    missing: list[str]
    extra: list[str]

    @classmethod
    def of(cls, views: ViewComparison) -> ViewComparisonOut:
        return cls(
            ordered=views.ordered,
            received=views.received,
            missing=views.missing,
            extra=views.extra,
        )


class StudyOut(BaseModel):
    """A study as indexed, with its link and what the modality sent."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    study_instance_uid: str
    horse_id: int | None
    order_id: int | None
    order_accession_number: str | None
    order_status: str | None
    study_date: str | None
    study_description: str | None
    modalities: list[str]
    body_parts: list[str]
    series_count: int
    instance_count: int
    frame_count: int
    views: ViewComparisonOut
    receiving: bool
    images_after_report: int = Field(
        0,
        description="Images stored after the study's last final report or "
        "addendum was signed.",
    )
    thumbnail_url: str | None
    dicom_patient_id: str | None
    dicom_patient_name: str | None
    dicom_accession_number: str | None
    source_ae_title: str | None
    link_method: str | None
    unmatched_reason: str | None
    received_at: dt.datetime
    last_received_at: dt.datetime

    @classmethod
    def of(cls, summary: StudySummary) -> StudyOut:
        study = summary.study
        return cls(
            id=study.id,
            study_instance_uid=study.study_instance_uid,
            horse_id=study.horse_id,
            order_id=study.order_id,
            order_accession_number=(
                summary.order.accession_number if summary.order else None
            ),
            order_status=summary.order.status if summary.order else None,
            study_date=study.study_date,
            study_description=study.study_description,
            modalities=summary.modalities,
            body_parts=summary.body_parts,
            series_count=summary.series_count,
            instance_count=summary.instance_count,
            frame_count=summary.frame_count,
            views=ViewComparisonOut.of(summary.views),
            receiving=summary.receiving,
            images_after_report=summary.images_after_report,
            thumbnail_url=(
                f"/imaging/studies/{study.id}/thumbnail.jpg"
                if study.thumbnail_blob_key
                else None
            ),
            dicom_patient_id=study.dicom_patient_id,
            dicom_patient_name=study.dicom_patient_name,
            dicom_accession_number=study.dicom_accession_number,
            source_ae_title=study.source_ae_title,
            link_method=study.link_method,
            unmatched_reason=study.unmatched_reason,
            received_at=study.received_at,
            last_received_at=study.last_received_at,
        )


class StudyLinkIn(BaseModel):
    """Attach a study to a horse and, optionally, one of its orders."""

    horse_id: int = Field(gt=0)
    order_id: int | None = Field(default=None, gt=0)
