"""API and form shapes for clients, horses, ownership, visits and SOAP notes.

The same models validate JSON bodies and HTML form posts, so both get the
same messages: each names the field, the value and what to enter instead.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from fetlock.practice.models import FULL_SHARE, ClientKind, Sex, Species, VisitKind


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _parse_date(value: Any) -> Any:
    value = _blank_to_none(value)
    if value is None or isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date; write it as YYYY-MM-DD, for example "
                "2019-04-23"
            ) from None
    return value


def _parse_datetime(value: Any) -> Any:
    value = _blank_to_none(value)
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date and time; write it as "
                "YYYY-MM-DDTHH:MM, for example 2024-05-01T14:30"
            ) from None
    return value


OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]
OptionalDate = Annotated[dt.date | None, BeforeValidator(_parse_date)]
RequiredDate = Annotated[dt.date, BeforeValidator(_parse_date)]
OptionalDateTime = Annotated[dt.datetime | None, BeforeValidator(_parse_datetime)]
RequiredDateTime = Annotated[dt.datetime, BeforeValidator(_parse_datetime)]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_UELN = re.compile(r"^[0-9]{3}[0-9A-Z]{3}[0-9A-Z]{9}$")
_MICROCHIP = re.compile(r"^[0-9A-Z]{9,15}$")


def parse_percent(text: str, *, field: str) -> int:
    """Turn a percentage such as ``"33.33"`` into hundredths of a percent."""
    cleaned = text.strip().rstrip("%").strip()
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise ValueError(
            f"{field}: {text!r} is not a percentage; enter a number such as 50 or 33.33"
        )
    hundredths = number * 100
    if hundredths != hundredths.to_integral_value():
        raise ValueError(
            f"{field}: {text!r} has more than two decimal places; round it to "
            "hundredths of a percent, such as 33.33"
        )
    return int(hundredths)


def format_percent(share: int) -> str:
    """Format hundredths of a percent: 5000 -> "50", 3333 -> "33.33"."""
    whole, frac = divmod(share, 100)
    return str(whole) if frac == 0 else f"{whole}.{frac:02d}"


# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------


class ClientFields(BaseModel):
    """Contact and billing details shared by create and update."""

    model_config = ConfigDict(extra="forbid")

    title: OptionalText = Field(None, max_length=32)
    given_name: OptionalText = Field(None, max_length=100)
    family_name: OptionalText = Field(None, max_length=100)
    organisation_name: OptionalText = Field(None, max_length=200)
    email: OptionalText = Field(None, max_length=200)
    phone: OptionalText = Field(None, max_length=50)
    address_line1: OptionalText = Field(None, max_length=200)
    address_line2: OptionalText = Field(None, max_length=200)
    town: OptionalText = Field(None, max_length=100)
    county: OptionalText = Field(None, max_length=100)
    postcode: OptionalText = Field(None, max_length=20)
    country: OptionalText = Field(None, max_length=100)
    notes: OptionalText = None

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError(
                f"{value!r} is not an e-mail address; enter one such as "
                "owner@example.com, or leave it empty"
            )
        return value


class ClientCreate(ClientFields):
    """A new client: a person needs a family name, an organisation a name."""

    kind: ClientKind = ClientKind.PERSON


class ClientUpdate(ClientFields):
    """Changed client fields; fields left out keep their values."""

    kind: ClientKind | None = None


class ClientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: ClientKind
    display_name: str
    title: str | None
    given_name: str | None
    family_name: str | None
    organisation_name: str | None
    email: str | None
    phone: str | None
    address_line1: str | None
    address_line2: str | None
    town: str | None
    county: str | None
    postcode: str | None
    country: str | None
    notes: str | None
    created_at: dt.datetime


# --------------------------------------------------------------------------
# Ownership
# --------------------------------------------------------------------------


class ShareIn(BaseModel):
    """One owner's share, in hundredths of a percent (10000 is 100 %)."""

    model_config = ConfigDict(extra="forbid")

    client_id: int
    share: int = Field(gt=0, le=FULL_SHARE)


class OwnershipChange(BaseModel):
    """From ``effective_from`` on, the owners are exactly ``owners``."""

    model_config = ConfigDict(extra="forbid")

    effective_from: RequiredDate
    owners: list[ShareIn] = Field(min_length=1)


class OwnerOut(BaseModel):
    client_id: int
    name: str
    share: int
    percent: str


class OwnershipRowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    client_id: int
    share: int
    effective_from: dt.date
    effective_to: dt.date | None


class OwnershipOut(BaseModel):
    horse_id: int
    on: dt.date
    owners: list[OwnerOut]
    history: list[OwnershipRowOut]


# --------------------------------------------------------------------------
# Horses
# --------------------------------------------------------------------------


class HorseFields(BaseModel):
    """Identity fields of a horse shared by create and update."""

    model_config = ConfigDict(extra="forbid")

    registered_name: OptionalText = Field(None, max_length=200)
    breed: OptionalText = Field(None, max_length=100)
    sex: Annotated[Sex | None, BeforeValidator(_blank_to_none)] = None
    colour: OptionalText = Field(None, max_length=64)
    markings: OptionalText = None
    date_of_birth: OptionalDate = None
    foaling_year: Annotated[int | None, BeforeValidator(_blank_to_none)] = None
    microchip: OptionalText = Field(None, max_length=32)
    ueln: OptionalText = Field(None, max_length=32)
    passport_number: OptionalText = Field(None, max_length=64)
    registry_name: OptionalText = Field(None, max_length=100)
    registry_number: OptionalText = Field(None, max_length=64)
    notes: OptionalText = None

    @field_validator("date_of_birth")
    @classmethod
    def _check_birth(cls, value: dt.date | None) -> dt.date | None:
        if value is not None and value > dt.date.today():
            raise ValueError(
                f"{value.isoformat()} is in the future; enter the date the horse "
                "was foaled"
            )
        return value

    @field_validator("foaling_year")
    @classmethod
    def _check_year(cls, value: int | None) -> int | None:
        this_year = dt.date.today().year
        if value is not None and not 1950 <= value <= this_year:
            raise ValueError(
                f"{value} is not a plausible foaling year; enter a year from 1950 "
                f"to {this_year}"
            )
        return value

    @field_validator("microchip")
    @classmethod
    def _check_microchip(cls, value: str | None) -> str | None:
        if value is None:
            return value
        compact = value.replace(" ", "").upper()
        if not _MICROCHIP.match(compact):
            raise ValueError(
                f"{value!r} is not a microchip number; enter the 15 digits of an "
                "ISO 11784 chip (9 to 15 letters or digits for older chips)"
            )
        return compact

    @field_validator("ueln")
    @classmethod
    def _check_ueln(cls, value: str | None) -> str | None:
        if value is None:
            return value
        compact = value.replace(" ", "").replace("-", "").upper()
        if not _UELN.match(compact):
            raise ValueError(
                f"{value!r} is not a UELN; enter its 15 characters: 3-digit "
                "country code, 3-character database code, 9-character "
                "identification number (for example 826002991234567)"
            )
        return compact

    @model_validator(mode="after")
    def _check_birth_and_year(self) -> HorseFields:
        if (
            self.date_of_birth is not None
            and self.foaling_year is not None
            and self.date_of_birth.year != self.foaling_year
        ):
            raise ValueError(
                f"foaling_year: {self.foaling_year} differs from the year of "
                f"date_of_birth {self.date_of_birth.isoformat()}; give one or make "
                "them agree"
            )
        return self


class HorseCreate(HorseFields):
    """A new horse, optionally with its owners from ``owned_from`` (today)."""

    barn_name: str = Field(min_length=1, max_length=100)
    species: Species = Species.HORSE
    owners: list[ShareIn] = Field(default_factory=list)
    owned_from: OptionalDate = None

    @field_validator("barn_name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the barn name is empty; enter the name used at the yard")
        return value


class HorseUpdate(HorseFields):
    """Changed horse fields; fields left out keep their values."""

    barn_name: OptionalText = Field(None, max_length=100)
    species: Annotated[Species | None, BeforeValidator(_blank_to_none)] = None


class HorseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    patient_id: str
    barn_name: str
    registered_name: str | None
    species: Species
    breed: str | None
    sex: Sex | None
    colour: str | None
    markings: str | None
    date_of_birth: dt.date | None
    foaling_year: int | None
    microchip: str | None
    ueln: str | None
    passport_number: str | None
    registry_name: str | None
    registry_number: str | None
    notes: str | None
    created_at: dt.datetime
    owners: list[OwnerOut] = Field(default_factory=list)


# --------------------------------------------------------------------------
# Visits and notes
# --------------------------------------------------------------------------


class VisitCreate(BaseModel):
    """A visit. Times without an offset are read in the practice time zone."""

    model_config = ConfigDict(extra="forbid")

    kind: VisitKind
    started_at: RequiredDateTime
    discharged_at: OptionalDateTime = None
    location: OptionalText = Field(None, max_length=200)
    reason: OptionalText = None
    attending_vet_id: Annotated[int | None, BeforeValidator(_blank_to_none)] = None


class DischargeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    discharged_at: RequiredDateTime


class VisitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    horse_id: int
    kind: VisitKind
    started_at: dt.datetime
    discharged_at: dt.datetime | None
    location: str | None
    reason: str | None
    attending_vet_id: int | None


class NoteContent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subjective: str | None = None
    objective: str | None = None
    assessment: str | None = None
    plan: str | None = None


class NoteCreate(NoteContent):
    """A new draft; ``sign`` signs it at once."""

    sign: bool = False


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    visit_id: int
    author_id: int
    addendum_to_id: int | None
    subjective: str
    objective: str
    assessment: str
    plan: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    signed_at: dt.datetime | None
    signed_by_id: int | None
    content_sha256: str | None
