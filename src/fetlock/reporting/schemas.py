"""API shapes for reports, findings, the reading queue, search and vocabulary."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FindingIn(BaseModel):
    """One coded finding as the editor sends it.

    Any part may be missing while the report is a draft; signing needs
    ``limb``, ``structure`` and ``finding``.
    """

    model_config = ConfigDict(extra="forbid")

    limb: str | None = Field(
        default=None, description="LF, RF, LH, RH, or NA when not limb-specific"
    )
    region: str | None = Field(default=None, description="template key, e.g. foot")
    structure: str | None = Field(default=None, description="structure term key")
    finding: str | None = Field(default=None, description="finding term key")
    grade: int | None = Field(default=None, ge=0, le=4, description="0 to 4")
    location: str | None = Field(
        default=None, max_length=16, description="ultrasound zone such as 2B"
    )
    detail: str = Field(default="", max_length=4000)


class KeyImageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance_id: int
    caption: str = Field(default="", max_length=200)


class ReportContentIn(BaseModel):
    """Everything the radiologist writes; replaces a draft's content whole."""

    model_config = ConfigDict(extra="forbid")

    template: str | None = None
    clinical_history: str = Field(default="", max_length=8000)
    technique: str = Field(default="", max_length=4000)
    findings: list[FindingIn] = Field(default_factory=list, max_length=200)
    impression: str = Field(default="", max_length=8000)
    recommendations: str = Field(default="", max_length=8000)
    key_images: list[KeyImageIn] = Field(default_factory=list, max_length=50)


class ReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str | None = None


class FollowUpCreate(BaseModel):
    """A new version after sign-off: an addendum adds, an amendment replaces."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["addendum", "amendment"] = "addendum"
    content: ReportContentIn | None = None
    sign: bool = Field(
        default=False, description="sign the new version at once (needs content)"
    )


class CodedTermOut(BaseModel):
    key: str
    display: str
    scheme: str
    code: str


class FindingOut(BaseModel):
    limb: str
    region: str
    structure: CodedTermOut
    finding: CodedTermOut
    grade: int | None
    location: str | None
    detail: str


class KeyImageOut(BaseModel):
    instance_id: int
    sop_instance_uid: str
    caption: str
    thumbnail_url: str


class ReportOut(BaseModel):
    id: int
    study_id: int
    study_instance_uid: str
    horse_id: int | None
    order_id: int | None
    version: int
    kind: str
    status: str
    supersedes_id: int | None
    superseded_by_id: int | None
    template: str | None
    title: str
    clinical_history: str
    technique: str
    findings: list[FindingOut]
    impression: str
    recommendations: str
    key_images: list[KeyImageOut]
    author: str | None
    signed_by: str | None
    signed_at: dt.datetime | None
    content_sha256: str | None
    document_status: str
    pdf_url: str | None
    thumbnail_url: str | None
    url: str


class QueueItemOut(BaseModel):
    study_id: int
    study_instance_uid: str
    accession_number: str | None
    horse_id: int | None
    horse_name: str | None
    modality: str | None
    description: str | None
    priority: str
    requesting_clinician: str | None
    waiting_since: dt.datetime
    claimed_by: str | None
    report_id: int | None
    report_status: str | None
    images_after_report: int = Field(
        description="Images stored after the last signed report; an addendum is due."
    )


class ClaimOut(BaseModel):
    study_id: int
    claimed_by: str
    claimed_at: dt.datetime


class SearchHitOut(BaseModel):
    report_id: int
    report_url: str
    pdf_url: str | None
    horse_id: int | None
    horse_name: str | None
    patient_id: str | None
    chart_url: str | None
    study_id: int
    study_instance_uid: str
    study_url: str
    accession_number: str | None
    signed_at: dt.datetime | None
    radiologist: str | None
    requesting_clinician: str | None
    impression: str
    findings: list[FindingOut]


class SearchOut(BaseModel):
    total: int
    total_is_capped: bool
    page: int
    page_size: int
    hits: list[SearchHitOut]


class TermIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str | None = None
    display: str | None = None
    scheme: Literal["SCT", "local"] | None = None
    code: str | None = None
    regions: list[str] | None = None
    synonyms: list[str] | None = None
    active: bool | None = None


class TermOut(BaseModel):
    id: int
    kind: str
    key: str
    display: str
    scheme: str
    code: str
    regions: list[str]
    synonyms: list[str]
    active: bool


class NotificationOut(BaseModel):
    id: int
    kind: str
    title: str
    body: str
    link: str | None
    created_at: dt.datetime
    read_at: dt.datetime | None
