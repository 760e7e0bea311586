"""Rules for clients, horses, ownership shares, visits and SOAP notes.

Every function takes the caller's ``db_session`` and leaves committing to the
caller, so that a change and its audit event share one transaction. Errors are
``fetlock.web.errors.DomainError`` subclasses naming the field, the value and
the fix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.db.base import utcnow
from fetlock.db.counters import next_value
from fetlock.practice.models import (
    FULL_SHARE,
    Client,
    ClientKind,
    Horse,
    NoteStatus,
    Ownership,
    Sex,
    SoapNote,
    Species,
    Visit,
    VisitKind,
    fold,
)
from fetlock.web.errors import Conflict, DomainError, NotFound

# Counter name and format of the permanent practice Patient ID.
PATIENT_ID_COUNTER = "horse.patient_id"
PATIENT_ID_FORMAT = "FL{:06d}"

SOAP_FIELDS = ("subjective", "objective", "assessment", "plan")


# --------------------------------------------------------------------------
# Look-ups
# --------------------------------------------------------------------------


def get_horse(db_session: Session, horse_id: int) -> Horse:
    """Return horse ``horse_id`` or raise ``NotFound`` naming the id."""
    horse = db_session.get(Horse, horse_id)
    if horse is None:
        raise NotFound(
            f"horse {horse_id} does not exist; search for it at /horses",
            field="horse_id",
            value=horse_id,
        )
    return horse


def get_horse_by_patient_id(db_session: Session, patient_id: str) -> Horse | None:
    """Return the horse with this (0010,0020) Patient ID, or None."""
    return db_session.execute(
        select(Horse).where(Horse.patient_id == patient_id)
    ).scalar_one_or_none()


def get_client(db_session: Session, client_id: int) -> Client:
    """Return client ``client_id`` or raise ``NotFound`` naming the id."""
    client = db_session.get(Client, client_id)
    if client is None:
        raise NotFound(
            f"client {client_id} does not exist; search for it at /clients",
            field="client_id",
            value=client_id,
        )
    return client


def get_visit(db_session: Session, visit_id: int) -> Visit:
    """Return visit ``visit_id`` or raise ``NotFound`` naming the id."""
    visit = db_session.get(Visit, visit_id)
    if visit is None:
        raise NotFound(
            f"visit {visit_id} does not exist", field="visit_id", value=visit_id
        )
    return visit


def get_note(db_session: Session, note_id: int) -> SoapNote:
    """Return SOAP note ``note_id`` or raise ``NotFound`` naming the id."""
    note = db_session.get(SoapNote, note_id)
    if note is None:
        raise NotFound(
            f"SOAP note {note_id} does not exist", field="note_id", value=note_id
        )
    return note


# --------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_horses(db_session: Session, query: str, *, limit: int = 50) -> list[Horse]:
    """Find horses matching every word of ``query``, by barn or registered name.

    A word also matches an owner's name (any owner, past or present), the
    Patient ID, the microchip number or the UELN. Names match accent- and
    case-insensitively. An empty query lists horses by barn name.
    """
    statement = select(Horse)
    for term in fold(query).split():
        pattern = _like(term)
        owner_match = (
            select(Ownership.id)
            .join(Client, Client.id == Ownership.client_id)
            .where(
                Ownership.horse_id == Horse.id,
                Client.search_key.like(pattern, escape="\\"),
            )
            .exists()
        )
        statement = statement.where(
            or_(
                Horse.search_key.like(pattern, escape="\\"),
                func.lower(Horse.patient_id).like(pattern, escape="\\"),
                func.lower(Horse.microchip).like(pattern, escape="\\"),
                func.lower(Horse.ueln).like(pattern, escape="\\"),
                owner_match,
            )
        )
    statement = statement.order_by(Horse.search_key, Horse.id).limit(limit)
    return list(db_session.execute(statement).scalars())


def search_clients(db_session: Session, query: str, *, limit: int = 50) -> list[Client]:
    """Find clients whose names contain every word of ``query`` (accents ignored).

    A word also matches the e-mail address, telephone number or postcode.
    """
    statement = select(Client)
    for term in fold(query).split():
        pattern = _like(term)
        statement = statement.where(
            or_(
                Client.search_key.like(pattern, escape="\\"),
                func.lower(Client.email).like(pattern, escape="\\"),
                func.lower(Client.phone).like(pattern, escape="\\"),
                func.lower(Client.postcode).like(pattern, escape="\\"),
            )
        )
    statement = statement.order_by(Client.search_key, Client.id).limit(limit)
    return list(db_session.execute(statement).scalars())


def horses_of_client(
    db_session: Session, client: Client, day: dt.date
) -> list[tuple[Horse, int]]:
    """Return the horses ``client`` owns a share of on ``day``, with the share."""
    rows = db_session.execute(
        select(Horse, Ownership.share)
        .join(Ownership, Ownership.horse_id == Horse.id)
        .where(
            Ownership.client_id == client.id,
            Ownership.effective_from <= day,
            or_(Ownership.effective_to.is_(None), Ownership.effective_to > day),
        )
        .order_by(Horse.search_key, Horse.id)
    ).all()
    return [(horse, share) for horse, share in rows]


# --------------------------------------------------------------------------
# Ownership
# --------------------------------------------------------------------------


def owners_on(
    db_session: Session, horse: Horse, day: dt.date
) -> list[tuple[Client, int]]:
    """Return the owners of ``horse`` on ``day`` with their shares.

    Shares are in hundredths of a percent and add up to ``FULL_SHARE``, or the
    list is empty when the horse has no recorded owner on that day. Largest
    share first, then by client id, so the first entry is the principal owner.
    """
    rows = db_session.execute(
        select(Ownership)
        .where(
            Ownership.horse_id == horse.id,
            Ownership.effective_from <= day,
            or_(Ownership.effective_to.is_(None), Ownership.effective_to > day),
        )
        .order_by(Ownership.share.desc(), Ownership.client_id)
    ).scalars()
    return [(row.client, row.share) for row in rows]


def ownership_history(db_session: Session, horse: Horse) -> list[Ownership]:
    """Return every ownership row of ``horse``, oldest first."""
    return list(
        db_session.execute(
            select(Ownership)
            .where(Ownership.horse_id == horse.id)
            .order_by(Ownership.effective_from, Ownership.share.desc(), Ownership.id)
        ).scalars()
    )


def check_shares(rows: Sequence[Ownership]) -> None:
    """Raise ``DomainError`` unless shares add up to 100 % at every date.

    The check walks every date on which some row starts or ends; between two
    such dates the set of rows in force does not change. Dates before the first
    row are allowed to have no owner at all.
    """
    if not rows:
        return
    boundaries = sorted(
        {r.effective_from for r in rows}
        | {r.effective_to for r in rows if r.effective_to is not None}
    )
    for start, end in zip(boundaries, [*boundaries[1:], None], strict=True):
        in_force = [r for r in rows if r.in_force_on(start)]
        total = sum(r.share for r in in_force)
        if total == FULL_SHARE:
            continue
        until = f"until {end.isoformat()}" if end else "onwards"
        if not in_force:
            message = (
                f"from {start.isoformat()} {until} the horse has no owner; "
                "ownership must continue without gaps once it starts"
            )
        else:
            message = (
                f"from {start.isoformat()} {until} the ownership shares add up to "
                f"{_percent(total)}, not 100%; adjust the shares so they total "
                "exactly 100%"
            )
        raise DomainError(message, field="shares", value=_percent(total))


def _percent(share: int) -> str:
    whole, frac = divmod(share, 100)
    return f"{whole}%" if frac == 0 else f"{whole}.{frac:02d}%"


@dataclass(frozen=True)
class ShareInput:
    """One owner's share in a change of ownership (hundredths of a percent)."""

    client_id: int
    share: int


def set_owners_from(
    db_session: Session,
    actor: audit.Actor,
    horse: Horse,
    day: dt.date,
    shares: Sequence[ShareInput],
    *,
    replace_later: bool = False,
) -> list[Ownership]:
    """From ``day`` on, the owners of ``horse`` are exactly ``shares``.

    Rows in force on ``day`` are closed at ``day`` and rows that start on
    ``day`` are replaced. Rows that start after ``day`` are replaced only with
    ``replace_later=True``, because that erases recorded history; otherwise
    the change raises ``Conflict`` naming their dates. The result is checked
    so shares add up to 100 % at every date; on failure nothing is changed.
    """
    _validate_share_inputs(db_session, shares, day)

    existing = ownership_history(db_session, horse)
    later = sorted({r.effective_from for r in existing if r.effective_from > day})
    if later and not replace_later:
        dates = ", ".join(d.isoformat() for d in later)
        raise Conflict(
            f"ownership changes recorded from {dates} come after {day.isoformat()}; "
            "date this change on or after the last one, or confirm that the later "
            "changes are to be replaced",
            field="effective_from",
            value=day.isoformat(),
        )
    kept: list[Ownership] = []
    closed: list[tuple[Ownership, dt.date | None]] = []
    replaced: list[Ownership] = []
    for row in existing:
        if row.effective_from >= day:
            replaced.append(row)
        elif row.effective_to is None or row.effective_to > day:
            closed.append((row, row.effective_to))
            kept.append(row)
        else:
            kept.append(row)

    new_rows = [
        Ownership(
            horse_id=horse.id,
            client_id=s.client_id,
            share=s.share,
            effective_from=day,
            effective_to=None,
        )
        for s in shares
    ]

    # Check the would-be history before touching the session.
    preview = [
        _detached_copy(r, day if any(r is c for c, _ in closed) else None) for r in kept
    ] + [_detached_copy(r, None) for r in new_rows]
    check_shares(preview)

    for row, _old_end in closed:
        row.effective_to = day
    for row in replaced:
        db_session.delete(row)
    db_session.add_all(new_rows)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "ownership.change",
        "horse",
        horse.id,
        horse_id=horse.id,
        detail={
            "from": day.isoformat(),
            "owners": [{"client_id": s.client_id, "share": s.share} for s in shares],
        },
    )
    db_session.expire(horse, ["ownerships"])
    return new_rows


def _detached_copy(row: Ownership, close_at: dt.date | None) -> Ownership:
    return Ownership(
        horse_id=row.horse_id,
        client_id=row.client_id,
        share=row.share,
        effective_from=row.effective_from,
        effective_to=close_at if close_at is not None else row.effective_to,
    )


def _validate_share_inputs(
    db_session: Session, shares: Sequence[ShareInput], day: dt.date
) -> None:
    if not shares:
        raise DomainError(
            "a horse needs at least one owner; give one or more owners with "
            "shares adding up to 100%",
            field="owners",
            value=[],
        )
    seen: set[int] = set()
    for index, s in enumerate(shares):
        if s.share <= 0 or s.share > FULL_SHARE:
            raise DomainError(
                f"owner {index + 1}: share {_percent(s.share)} is out of range; "
                "give a share above 0% and at most 100%",
                field=f"owners.{index}.share",
                value=s.share,
            )
        if s.client_id in seen:
            raise DomainError(
                f"owner {index + 1}: client {s.client_id} is listed twice; "
                "give each owner once with their whole share",
                field=f"owners.{index}.client_id",
                value=s.client_id,
            )
        seen.add(s.client_id)
        if db_session.get(Client, s.client_id) is None:
            raise DomainError(
                f"owner {index + 1}: client {s.client_id} does not exist; "
                "create the client first or pick an existing one",
                field=f"owners.{index}.client_id",
                value=s.client_id,
            )
    total = sum(s.share for s in shares)
    if total != FULL_SHARE:
        raise DomainError(
            f"from {day.isoformat()} the ownership shares add up to "
            f"{_percent(total)}, not 100%; "
            "adjust the shares so they total exactly 100%",
            field="owners",
            value=_percent(total),
        )


# --------------------------------------------------------------------------
# DICOM-facing identity
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class OtherPatientID:
    """One entry of (0010,1002) Other Patient IDs Sequence."""

    PatientID: str
    IssuerOfPatientID: str
    TypeOfPatientID: str = "TEXT"


@dataclass(frozen=True)
class HorseDicomIdentity:
    """The attributes of a horse that the worklist and imaging need.

    ``PatientName`` is ``Owner-family-or-organisation^Horse`` (two components).
    ``PatientSex`` is M, F or O; ``PatientSexNeutered`` is ALTERED for a
    gelding and empty when unknown.
    """

    PatientID: str
    PatientName: str
    PatientSpeciesDescription: str
    PatientBreedDescription: str
    PatientSex: str
    PatientSexNeutered: str
    PatientBirthDate: str
    ResponsiblePerson: str
    ResponsibleOrganization: str
    OtherPatientIDs: tuple[OtherPatientID, ...]
    owner_name: str
    horse_name: str


_SEX_CODES = {
    Sex.MARE: ("F", ""),
    Sex.FILLY: ("F", ""),
    Sex.STALLION: ("M", "UNALTERED"),
    Sex.COLT: ("M", "UNALTERED"),
    Sex.GELDING: ("M", "ALTERED"),
    # A rig is a cryptorchid: male, not castrated.
    Sex.RIG: ("M", "UNALTERED"),
}


def other_patient_ids(horse: Horse) -> list[OtherPatientID]:
    """Return microchip, UELN, passport and registry numbers as Other Patient IDs."""
    found: list[OtherPatientID] = []
    if horse.microchip:
        found.append(OtherPatientID(horse.microchip, "MICROCHIP", "RFID"))
    if horse.ueln:
        found.append(OtherPatientID(horse.ueln, "UELN"))
    if horse.passport_number:
        found.append(OtherPatientID(horse.passport_number, "PASSPORT"))
    if horse.registry_number:
        found.append(
            OtherPatientID(horse.registry_number, horse.registry_name or "REGISTRY")
        )
    return found


def principal_owner(db_session: Session, horse: Horse, day: dt.date) -> Client | None:
    """Return the owner with the largest share on ``day`` (lowest id on a tie)."""
    owners = owners_on(db_session, horse, day)
    return owners[0][0] if owners else None


def dicom_identity(
    db_session: Session, horse: Horse, day: dt.date | None = None
) -> HorseDicomIdentity:
    """Return the DICOM patient attributes of ``horse`` as on ``day`` (today)."""
    day = day or utcnow().date()
    owner = principal_owner(db_session, horse, day)
    owner_name = owner.name_for_dicom if owner else ""
    horse_name = horse.barn_name or horse.registered_name or ""
    sex, neutered = (
        _SEX_CODES.get(Sex(horse.sex), ("O", "")) if horse.sex else ("O", "")
    )
    birth = horse.date_of_birth.strftime("%Y%m%d") if horse.date_of_birth else ""
    responsible_person = ""
    responsible_org = ""
    if owner is not None:
        if owner.kind == ClientKind.ORGANISATION:
            responsible_org = owner.organisation_name or ""
        else:
            responsible_person = "^".join(
                p for p in (owner.family_name or "", owner.given_name or "")
            ).rstrip("^")
    return HorseDicomIdentity(
        PatientID=horse.patient_id,
        PatientName=f"{_pn_component(owner_name)}^{_pn_component(horse_name)}",
        PatientSpeciesDescription=Species(horse.species).value.capitalize(),
        PatientBreedDescription=horse.breed or "",
        PatientSex=sex,
        PatientSexNeutered=neutered,
        PatientBirthDate=birth,
        ResponsiblePerson=responsible_person,
        ResponsibleOrganization=responsible_org,
        OtherPatientIDs=tuple(other_patient_ids(horse)),
        owner_name=owner_name,
        horse_name=horse_name,
    )


def _pn_component(text: str) -> str:
    # A Person Name component may not contain the separators ^ = or backslash.
    cleaned = text.replace("^", " ").replace("=", " ").replace("\\", " ")
    return " ".join(cleaned.split())


# --------------------------------------------------------------------------
# Clients and horses
# --------------------------------------------------------------------------


def allocate_patient_id(db_session: Session) -> str:
    """Allocate the next permanent practice Patient ID, e.g. ``FL000123``."""
    return PATIENT_ID_FORMAT.format(next_value(db_session, PATIENT_ID_COUNTER))


def create_client(db_session: Session, actor: audit.Actor, **fields: object) -> Client:
    """Create a client from validated fields and audit it."""
    client = Client(**fields)
    _check_client(client)
    db_session.add(client)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "client.create",
        "client",
        client.id,
        detail={"name": client.display_name},
    )
    return client


def update_client(
    db_session: Session, actor: audit.Actor, client: Client, **fields: object
) -> Client:
    """Change a client's details and audit the changed field names."""
    changed = _assign(client, fields)
    _check_client(client)
    db_session.flush()
    if changed:
        audit.record(
            db_session,
            actor,
            "client.update",
            "client",
            client.id,
            detail={"fields": changed},
        )
    return client


def _check_client(client: Client) -> None:
    if client.kind == ClientKind.ORGANISATION:
        if not (client.organisation_name or "").strip():
            raise DomainError(
                "an organisation needs a name; fill in the organisation name",
                field="organisation_name",
                value=client.organisation_name,
            )
    elif client.kind == ClientKind.PERSON:
        if not (client.family_name or "").strip():
            raise DomainError(
                "a person needs a family name; fill in the family name",
                field="family_name",
                value=client.family_name,
            )
    else:
        raise DomainError(
            f"client kind {client.kind!r} is unknown; use 'person' or 'organisation'",
            field="kind",
            value=client.kind,
        )


def _check_unique_identifiers(
    db_session: Session, fields: Mapping[str, object], horse_id: int | None
) -> None:
    """Reject a microchip or UELN that another horse already carries.

    Both travel to modalities as Other Patient IDs, so a duplicate would let
    images of one horse match another.
    """
    for name in ("microchip", "ueln"):
        value = fields.get(name)
        if not value:
            continue
        column = getattr(Horse, name)
        query = select(Horse).where(column == value)
        if horse_id is not None:
            query = query.where(Horse.id != horse_id)
        other = db_session.execute(query.limit(1)).scalar_one_or_none()
        if other is not None:
            label = "microchip" if name == "microchip" else "UELN"
            raise Conflict(
                f"{label} {value} already belongs to {other.barn_name} "
                f"({other.patient_id}); check the number or edit that horse",
                field=name,
                value=value,
            )


def create_horse(db_session: Session, actor: audit.Actor, **fields: object) -> Horse:
    """Create a horse with a new permanent Patient ID and audit it."""
    _check_unique_identifiers(db_session, fields, None)
    horse = Horse(**fields)
    horse.patient_id = allocate_patient_id(db_session)
    db_session.add(horse)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "horse.create",
        "horse",
        horse.id,
        horse_id=horse.id,
        detail={"patient_id": horse.patient_id, "barn_name": horse.barn_name},
    )
    return horse


def update_horse(
    db_session: Session, actor: audit.Actor, horse: Horse, **fields: object
) -> Horse:
    """Change a horse's details; the Patient ID never changes."""
    if "patient_id" in fields and fields["patient_id"] != horse.patient_id:
        raise DomainError(
            f"the Patient ID {horse.patient_id} is permanent and cannot be "
            "changed; record other identifiers in microchip, UELN or passport",
            field="patient_id",
            value=fields["patient_id"],
        )
    fields.pop("patient_id", None)
    _check_unique_identifiers(db_session, fields, horse.id)
    changed = _assign(horse, fields)
    db_session.flush()
    if changed:
        audit.record(
            db_session,
            actor,
            "horse.update",
            "horse",
            horse.id,
            horse_id=horse.id,
            detail={"fields": changed},
        )
    return horse


def _assign(obj: object, fields: Mapping[str, object]) -> list[str]:
    changed = []
    for name, value in fields.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed.append(name)
    return sorted(changed)


# --------------------------------------------------------------------------
# Visits
# --------------------------------------------------------------------------


def current_visit(
    db_session: Session,
    horse: Horse,
    at: dt.datetime,
    *,
    zone: dt.tzinfo = dt.UTC,
) -> Visit | None:
    """Return the visit ``horse`` is in at ``at``, or None.

    An admission is current from admission until discharge. An ambulatory or
    outpatient visit is current on the calendar day (in ``zone``) it started,
    from its start. An open admission wins over a same-day visit.
    """
    admission = db_session.execute(
        select(Visit)
        .where(
            Visit.horse_id == horse.id,
            Visit.kind == VisitKind.ADMISSION,
            Visit.started_at <= at,
            or_(Visit.discharged_at.is_(None), Visit.discharged_at > at),
        )
        .order_by(Visit.started_at.desc(), Visit.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if admission is not None:
        return admission

    local_day = at.astimezone(zone).date()
    day_start = dt.datetime.combine(local_day, dt.time(), tzinfo=zone)
    return db_session.execute(
        select(Visit)
        .where(
            Visit.horse_id == horse.id,
            Visit.kind != VisitKind.ADMISSION,
            Visit.started_at >= day_start,
            Visit.started_at <= at,
        )
        .order_by(Visit.started_at.desc(), Visit.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def open_or_create_visit(
    db_session: Session,
    actor: audit.Actor,
    horse: Horse,
    at: dt.datetime,
    *,
    kind: VisitKind = VisitKind.OUTPATIENT,
    attending_vet_id: int | None = None,
    location: str | None = None,
    reason: str | None = None,
    zone: dt.tzinfo = dt.UTC,
) -> Visit:
    """Return the current visit of ``horse`` at ``at``, creating one if none."""
    visit = current_visit(db_session, horse, at, zone=zone)
    if visit is not None:
        return visit
    return create_visit(
        db_session,
        actor,
        horse,
        kind=kind,
        started_at=at,
        attending_vet_id=attending_vet_id,
        location=location,
        reason=reason,
    )


def create_visit(
    db_session: Session,
    actor: audit.Actor,
    horse: Horse,
    *,
    kind: VisitKind | str,
    started_at: dt.datetime,
    discharged_at: dt.datetime | None = None,
    attending_vet_id: int | None = None,
    location: str | None = None,
    reason: str | None = None,
) -> Visit:
    """Create a visit and audit it."""
    kind = _visit_kind(kind)
    _check_visit_times(kind, started_at, discharged_at)
    if kind == VisitKind.AMBULATORY and not (location or "").strip():
        raise DomainError(
            "an ambulatory visit needs the farm or yard where it takes place; "
            "fill in the location",
            field="location",
            value=location,
        )
    visit = Visit(
        horse_id=horse.id,
        kind=kind.value,
        started_at=started_at,
        discharged_at=discharged_at,
        attending_vet_id=attending_vet_id,
        location=location,
        reason=reason,
    )
    db_session.add(visit)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "visit.create",
        "visit",
        visit.id,
        horse_id=horse.id,
        detail={"kind": visit.kind, "started_at": started_at.isoformat()},
    )
    return visit


def discharge(
    db_session: Session, actor: audit.Actor, visit: Visit, at: dt.datetime
) -> Visit:
    """Record the discharge date-time of an admission."""
    if visit.kind != VisitKind.ADMISSION:
        raise DomainError(
            f"visit {visit.id} is an {visit.kind} visit; only hospital "
            "admissions are discharged",
            field="discharged_at",
            value=at.isoformat(),
        )
    if visit.discharged_at is not None:
        raise Conflict(
            f"visit {visit.id} was already discharged at "
            f"{visit.discharged_at.isoformat()}",
            field="discharged_at",
            value=at.isoformat(),
        )
    _check_visit_times(VisitKind.ADMISSION, visit.started_at, at)
    visit.discharged_at = at
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "visit.discharge",
        "visit",
        visit.id,
        horse_id=visit.horse_id,
        detail={"discharged_at": at.isoformat()},
    )
    return visit


def _visit_kind(kind: VisitKind | str) -> VisitKind:
    try:
        return VisitKind(kind)
    except ValueError:
        raise DomainError(
            f"visit kind {kind!r} is unknown; use one of "
            + ", ".join(k.value for k in VisitKind),
            field="kind",
            value=kind,
        ) from None


def _check_visit_times(
    kind: VisitKind, started_at: dt.datetime, discharged_at: dt.datetime | None
) -> None:
    if discharged_at is None:
        return
    if kind != VisitKind.ADMISSION:
        raise DomainError(
            "only hospital admissions have a discharge time; leave it empty "
            f"for an {kind.value} visit",
            field="discharged_at",
            value=discharged_at.isoformat(),
        )
    if discharged_at < started_at:
        raise DomainError(
            f"discharge {discharged_at.isoformat()} is before admission "
            f"{started_at.isoformat()}; give a discharge time after admission",
            field="discharged_at",
            value=discharged_at.isoformat(),
        )


def visits_for_horse(db_session: Session, horse: Horse) -> list[Visit]:
    """Return every visit of ``horse``, newest first."""
    return list(
        db_session.execute(
            select(Visit)
            .where(Visit.horse_id == horse.id)
            .order_by(Visit.started_at.desc(), Visit.id.desc())
        ).scalars()
    )


# --------------------------------------------------------------------------
# SOAP notes
# --------------------------------------------------------------------------


def note_digest(note: SoapNote) -> str:
    """Compute the SHA-256 over the note's content and identity, kept at signing."""
    content = {
        "note_id": note.id,
        "visit_id": note.visit_id,
        "author_id": note.author_id,
        "addendum_to_id": note.addendum_to_id,
        **{name: getattr(note, name) or "" for name in SOAP_FIELDS},
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def create_note(
    db_session: Session,
    actor: audit.Actor,
    visit: Visit,
    *,
    author_id: int,
    addendum_to: SoapNote | None = None,
    **content: str,
) -> SoapNote:
    """Start a draft SOAP note (or a draft addendum to a signed note)."""
    if addendum_to is not None:
        if addendum_to.status != NoteStatus.SIGNED:
            raise Conflict(
                f"SOAP note {addendum_to.id} is still a draft; edit it instead "
                "of adding an addendum",
                field="addendum_to_id",
                value=addendum_to.id,
            )
        if addendum_to.visit_id != visit.id:
            raise DomainError(
                f"SOAP note {addendum_to.id} belongs to visit "
                f"{addendum_to.visit_id}, not {visit.id}; add the addendum to "
                "that visit",
                field="addendum_to_id",
                value=addendum_to.id,
            )
    note = SoapNote(
        visit_id=visit.id,
        author_id=author_id,
        addendum_to_id=addendum_to.id if addendum_to else None,
        status=NoteStatus.DRAFT.value,
        **{name: content.get(name, "") or "" for name in SOAP_FIELDS},
    )
    db_session.add(note)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "note.create",
        "soap_note",
        note.id,
        horse_id=visit.horse_id,
        detail={"visit_id": visit.id, "addendum_to_id": note.addendum_to_id},
    )
    return note


def update_note(
    db_session: Session, actor: audit.Actor, note: SoapNote, **content: str | None
) -> SoapNote:
    """Change a draft; raise ``Conflict`` (HTTP 409) for a signed note."""
    if note.status == NoteStatus.SIGNED:
        raise Conflict(
            f"SOAP note {note.id} was signed and cannot be changed; add a "
            "signed addendum to correct it",
            field="note_id",
            value=note.id,
        )
    fields = {
        k: v or "" for k, v in content.items() if k in SOAP_FIELDS and v is not None
    }
    changed = _assign(note, fields)
    if changed:
        note.updated_at = utcnow()
        db_session.flush()
        audit.record(
            db_session,
            actor,
            "note.update",
            "soap_note",
            note.id,
            horse_id=note.visit.horse_id,
            detail={"fields": changed},
        )
    return note


def sign_note(
    db_session: Session,
    actor: audit.Actor,
    note: SoapNote,
    *,
    signer_id: int,
    at: dt.datetime | None = None,
) -> SoapNote:
    """Sign a draft: it becomes immutable and its content SHA-256 is kept.

    ``at`` (now by default) is for importing notes signed elsewhere.
    """
    if note.status == NoteStatus.SIGNED:
        raise Conflict(
            f"SOAP note {note.id} is already signed; add a signed addendum to "
            "correct it",
            field="note_id",
            value=note.id,
        )
    if not any((getattr(note, name) or "").strip() for name in SOAP_FIELDS):
        raise DomainError(
            f"SOAP note {note.id} is empty; write at least one of subjective, "
            "objective, assessment or plan before signing",
            field="subjective",
            value="",
        )
    note.status = NoteStatus.SIGNED.value
    note.signed_at = at or utcnow()
    note.signed_by_id = signer_id
    note.content_sha256 = note_digest(note)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "note.sign",
        "soap_note",
        note.id,
        horse_id=note.visit.horse_id,
        detail={"sha256": note.content_sha256},
    )
    return note


def verify_note(note: SoapNote) -> bool:
    """Return True when a signed note's content matches its recorded SHA-256."""
    return note.content_sha256 is not None and note.content_sha256 == note_digest(note)
