"""Clients (owners), horses, ownership shares, visits and SOAP notes."""

from __future__ import annotations

import datetime as dt
import enum
import unicodedata
from typing import Any

from sqlalchemy import Date, ForeignKey, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fetlock.db.base import Base, UTCDateTime, utcnow

# Ownership shares are stored in hundredths of a percent: 10000 is 100 %.
FULL_SHARE = 10_000


# Letters that Unicode does not decompose into a base letter and an accent.
_UNDECOMPOSED = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
)


def fold(text: str | None) -> str:
    """Return ``text`` lower-cased with accents removed ("Müller" -> "muller").

    Search keys are stored folded, so a plain ``LIKE`` on a folded query finds
    "Muller" and "Müller" alike on every database.
    """
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().translate(_UNDECOMPOSED).split())


class ClientKind(enum.StrEnum):
    PERSON = "person"
    ORGANISATION = "organisation"


class Species(enum.StrEnum):
    HORSE = "horse"
    PONY = "pony"
    DONKEY = "donkey"
    MULE = "mule"


class Sex(enum.StrEnum):
    MARE = "mare"
    FILLY = "filly"
    STALLION = "stallion"
    COLT = "colt"
    GELDING = "gelding"
    RIG = "rig"


class VisitKind(enum.StrEnum):
    AMBULATORY = "ambulatory"
    OUTPATIENT = "outpatient"
    ADMISSION = "admission"


class NoteStatus(enum.StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"


class Client(Base):
    """An owner: a person or an organisation such as a stud, syndicate or yard."""

    __tablename__ = "client"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default=ClientKind.PERSON)
    title: Mapped[str | None] = mapped_column(String(32))
    given_name: Mapped[str | None] = mapped_column(String(100))
    family_name: Mapped[str | None] = mapped_column(String(100), index=True)
    organisation_name: Mapped[str | None] = mapped_column(String(200), index=True)
    email: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    town: Mapped[str | None] = mapped_column(String(100))
    county: Mapped[str | None] = mapped_column(String(100))
    postcode: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str | None] = mapped_column(String(100))
    notes: Mapped[str | None] = mapped_column(Text)
    # Folded names for accent-insensitive search; kept current on every flush.
    search_key: Mapped[str] = mapped_column(
        String(400), default="", server_default="", index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def display_name(self) -> str:
        if self.kind == ClientKind.ORGANISATION:
            return self.organisation_name or ""
        parts = [self.title, self.given_name, self.family_name]
        return " ".join(p for p in parts if p)

    @property
    def name_for_dicom(self) -> str:
        """The owner's family name, or the organisation's name."""
        if self.kind == ClientKind.ORGANISATION:
            return self.organisation_name or ""
        return self.family_name or ""


class Horse(Base):
    """An equine patient. ``patient_id`` is allocated once and never reused."""

    __tablename__ = "horse"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), unique=True)
    barn_name: Mapped[str] = mapped_column(String(100), index=True)
    registered_name: Mapped[str | None] = mapped_column(String(200), index=True)
    species: Mapped[str] = mapped_column(String(16), default=Species.HORSE)
    breed: Mapped[str | None] = mapped_column(String(100))
    sex: Mapped[str | None] = mapped_column(String(16))
    colour: Mapped[str | None] = mapped_column(String(64))
    markings: Mapped[str | None] = mapped_column(Text)
    date_of_birth: Mapped[dt.date | None] = mapped_column(Date)
    foaling_year: Mapped[int | None] = mapped_column(Integer)
    microchip: Mapped[str | None] = mapped_column(String(32), index=True)
    ueln: Mapped[str | None] = mapped_column(String(32), index=True)
    passport_number: Mapped[str | None] = mapped_column(String(64))
    registry_name: Mapped[str | None] = mapped_column(String(100))
    registry_number: Mapped[str | None] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)
    # Folded barn and registered names for accent-insensitive search.
    search_key: Mapped[str] = mapped_column(
        String(400), default="", server_default="", index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    ownerships: Mapped[list[Ownership]] = relationship(
        back_populates="horse", order_by="Ownership.effective_from"
    )


class Ownership(Base):
    """A client's share of a horse from ``effective_from`` until ``effective_to``.

    ``effective_to`` is exclusive; None means open-ended. Shares are in
    hundredths of a percent (``FULL_SHARE`` is 100 %).
    """

    __tablename__ = "ownership"

    id: Mapped[int] = mapped_column(primary_key=True)
    horse_id: Mapped[int] = mapped_column(ForeignKey("horse.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("client.id"), index=True)
    share: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[dt.date] = mapped_column(Date)
    effective_to: Mapped[dt.date | None] = mapped_column(Date)

    horse: Mapped[Horse] = relationship(back_populates="ownerships")
    client: Mapped[Client] = relationship(lazy="joined")

    def in_force_on(self, day: dt.date) -> bool:
        return self.effective_from <= day and (
            self.effective_to is None or day < self.effective_to
        )


class Visit(Base):
    """An ambulatory call, a clinic outpatient visit or a hospital admission."""

    __tablename__ = "visit"

    id: Mapped[int] = mapped_column(primary_key=True)
    horse_id: Mapped[int] = mapped_column(ForeignKey("horse.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    discharged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    location: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    attending_vet_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    horse: Mapped[Horse] = relationship()
    notes: Mapped[list[SoapNote]] = relationship(
        back_populates="visit", order_by="SoapNote.id"
    )


class SoapNote(Base):
    """A SOAP note; signed notes never change, corrections are signed addenda."""

    __tablename__ = "soap_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    addendum_to_id: Mapped[int | None] = mapped_column(ForeignKey("soap_note.id"))
    subjective: Mapped[str] = mapped_column(Text, default="")
    objective: Mapped[str] = mapped_column(Text, default="")
    assessment: Mapped[str] = mapped_column(Text, default="")
    plan: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=NoteStatus.DRAFT)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    signed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    content_sha256: Mapped[str | None] = mapped_column(String(64))

    visit: Mapped[Visit] = relationship(back_populates="notes")


@event.listens_for(Client, "before_insert")
@event.listens_for(Client, "before_update")
def _client_search_key(_mapper: Any, _connection: Any, client: Client) -> None:
    names = [client.given_name, client.family_name, client.organisation_name]
    client.search_key = fold(" ".join(n for n in names if n))[:400]


@event.listens_for(Horse, "before_insert")
@event.listens_for(Horse, "before_update")
def _horse_search_key(_mapper: Any, _connection: Any, horse: Horse) -> None:
    names = [horse.barn_name, horse.registered_name]
    horse.search_key = fold(" ".join(n for n in names if n))[:400]
