"""API and form shapes for imaging orders, the procedure catalog and modalities.

Validation here covers the shape of each value (lengths, formats, enumerated
terms); rules that need the database (does the procedure exist, is the view in
a set, is the station configured) are checked in ``fetlock.imaging.service``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from fetlock.imaging.models import (
    SH_MAX,
    Limb,
    RequestedProcedurePriority,
    SpecificCharacterSet,
)

# Modality defined terms of (0008,0060) (PS3.3 C.7.3.1.1.1) that a practice may
# schedule; retired terms are left out.
MODALITY_CODES = frozenset(
    (
        "AR BI BDUS BMD CR CT DG DX ECG EPS ES GM HD IO IVOCT IVUS KER LS MG MR NM "
        "OAM OCT OP OPM OPT OPV OSS OT PT PX RF RG SM SRF TG US XA XC"
    ).split()
)

# An AE title: 1 to 16 characters of the default character repertoire, no
# backslash or control characters (PS3.5 6.2).
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,15}$")


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _parse_datetime(value: Any) -> Any:
    value = _blank_to_none(value)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date and time; write it as "
                "YYYY-MM-DDTHH:MM, for example 2026-05-01T14:30"
            ) from None
    return value


def _split_views(value: Any) -> Any:
    """Accept views as a list or as one comma- or space-separated string."""
    if isinstance(value, str):
        return [part for part in re.split(r"[,\s]+", value) if part]
    return value


OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]
OptionalDateTime = Annotated[dt.datetime | None, BeforeValidator(_parse_datetime)]
ViewList = Annotated[list[str] | None, BeforeValidator(_split_views)]


def check_ae_title(value: str, field: str = "ae_title") -> str:
    value = value.strip()
    if not _AE_TITLE.match(value):
        raise ValueError(
            f"{field} {value!r} is not a valid AE title; use 1 to 16 printable "
            "ASCII characters without a backslash, such as DR_STALL1"
        )
    return value


def check_modality(value: str) -> str:
    value = value.strip().upper()
    if value not in MODALITY_CODES:
        raise ValueError(
            f"modality {value!r} is not a DICOM modality code; use one of "
            f"{', '.join(sorted(MODALITY_CODES))}"
        )
    return value


class OrderCreate(BaseModel):
    """A new imaging order for a horse.

    ``scheduled_start`` without a UTC offset is taken in the practice time
    zone. ``views`` defaults to the procedure's standard set (the views marked
    default-selected); ``requesting_clinician_id`` defaults to the caller.
    """

    model_config = ConfigDict(extra="forbid")

    procedure_code: str = Field(min_length=1, max_length=SH_MAX)
    limb: Annotated[Limb | None, BeforeValidator(_blank_to_none)] = None
    views: ViewList = None
    modality: OptionalText = None
    requesting_clinician_id: int | None = None
    station_ae_title: OptionalText = None
    scheduled_start: OptionalDateTime = None
    priority: RequestedProcedurePriority = RequestedProcedurePriority.ROUTINE
    clinical_history: OptionalText = Field(default=None, max_length=10240)
    visit_id: int | None = None

    @field_validator("modality")
    @classmethod
    def _modality(cls, value: str | None) -> str | None:
        return check_modality(value) if value else None

    @field_validator("station_ae_title")
    @classmethod
    def _station(cls, value: str | None) -> str | None:
        return check_ae_title(value, "station_ae_title") if value else None


class OrderEdit(BaseModel):
    """Changes to an order before acquisition; omitted fields stay as they are.

    Identifiers (Accession Number, Requested Procedure ID, SPS ID, Study
    Instance UID) never change.
    """

    model_config = ConfigDict(extra="forbid")

    procedure_code: str | None = Field(default=None, min_length=1, max_length=SH_MAX)
    limb: Annotated[Limb | None, BeforeValidator(_blank_to_none)] = None
    views: ViewList = None
    modality: OptionalText = None
    requesting_clinician_id: int | None = None
    station_ae_title: OptionalText = None
    scheduled_start: OptionalDateTime = None
    priority: RequestedProcedurePriority | None = None
    clinical_history: OptionalText = Field(default=None, max_length=10240)

    @field_validator("modality")
    @classmethod
    def _modality(cls, value: str | None) -> str | None:
        return check_modality(value) if value else None

    @field_validator("station_ae_title")
    @classmethod
    def _station(cls, value: str | None) -> str | None:
        return check_ae_title(value, "station_ae_title") if value else None


class OrderCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: OptionalText = Field(default=None, max_length=1000)


class OrderViewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    limb: str | None
    projection: str
    description: str
    ordinal: int


class ScheduledStepOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sps_id: str
    station_ae_title: str | None
    modality: str
    scheduled_start: dt.datetime
    description: str
    status: str


class OrderOut(BaseModel):
    id: int
    horse_id: int
    visit_id: int
    procedure_code: str
    procedure_name: str
    modality: str
    status: str
    accession_number: str
    requested_procedure_id: str
    study_instance_uid: str
    limb: str | None
    requesting_clinician_id: int
    station_ae_title: str | None
    scheduled_start: dt.datetime
    priority: str
    clinical_history: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    cancel_reason: str | None
    views: list[OrderViewOut]
    scheduled_procedure_steps: list[ScheduledStepOut]


class ProcedureViewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    projection: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9-]+$")
    limb: Annotated[Limb | None, BeforeValidator(_blank_to_none)] = None
    description: str = Field(min_length=1, max_length=200)
    default_selected: bool = True


class ProcedureIn(BaseModel):
    """A catalog entry as an administrator creates or replaces it."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=SH_MAX)
    name: str = Field(min_length=1, max_length=64)
    modality: str
    body_region: str = Field(min_length=1, max_length=64)
    body_part_examined: OptionalText = Field(default=None, max_length=16)
    limb_choice: list[Limb] = Field(default_factory=list)
    fee_code: str = Field(min_length=1, max_length=32)
    per_view_fee_code: OptionalText = Field(default=None, max_length=32)
    description: OptionalText = None
    active: bool = True
    views: list[ProcedureViewIn] = Field(min_length=1)

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        value = value.strip().upper()
        if not _CODE.match(value):
            raise ValueError(
                f"code {value!r} is invalid; use up to 16 capital letters, digits, "
                "'-' or '_', such as RAD-NAV"
            )
        return value

    @field_validator("modality")
    @classmethod
    def _modality(cls, value: str) -> str:
        return check_modality(value)


class ProcedureViewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    projection: str
    limb: str | None
    description: str
    default_selected: bool
    ordinal: int


class ProcedureOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    modality: str
    body_region: str
    body_part_examined: str | None
    limbs: list[str]
    fee_code: str
    per_view_fee_code: str | None
    description: str | None
    active: bool
    views: list[ProcedureViewOut]


class StationIn(BaseModel):
    """A remote modality allowed to query the worklist and send MPPS."""

    model_config = ConfigDict(extra="forbid")

    ae_title: str
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    modality: str
    description: OptionalText = Field(default=None, max_length=200)
    station_name: OptionalText = Field(default=None, max_length=16)
    character_set: SpecificCharacterSet = SpecificCharacterSet.UTF8
    restrict_worklist_to_own_ae: bool = False
    active: bool = True

    @field_validator("ae_title")
    @classmethod
    def _ae_title(cls, value: str) -> str:
        return check_ae_title(value)

    @field_validator("modality")
    @classmethod
    def _modality(cls, value: str) -> str:
        return check_modality(value)


class StationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    ae_title: str
    host: str
    port: int
    modality: str
    description: str | None
    station_name: str | None
    character_set: str
    restrict_worklist_to_own_ae: bool
    active: bool


class MppsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sop_instance_uid: str
    status: str
    order_id: int | None
    unmatched: bool
    calling_ae_title: str
    accession_number: str | None
    study_instance_uid: str | None
    scheduled_procedure_step_id: str | None
    modality: str | None
    patient_id: str | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
