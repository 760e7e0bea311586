"""Rules for the procedure catalog, remote modalities, imaging orders and MPPS.

Every function takes the caller's ``db_session`` and leaves committing to the
caller, so a change, its audit event and its billing charge share one
transaction. Errors are ``fetlock.web.errors.DomainError`` subclasses naming
the field, the value and the fix. Nothing here speaks HTTP or DIMSE: the web
routes and the DICOM SCPs call these functions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from pydicom.uid import generate_uid
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from fetlock.audit import service as audit
from fetlock.auth.models import Role, User
from fetlock.billing import hooks
from fetlock.config import Settings
from fetlock.db.base import lock_for_seeding, utcnow
from fetlock.db.counters import next_value
from fetlock.imaging.models import (
    ImagingOrder,
    Limb,
    MppsInstance,
    OrderStatus,
    OrderView,
    PerformedProcedureStepStatus,
    Procedure,
    ProcedureView,
    RemoteAE,
    RequestedProcedurePriority,
    ScheduledProcedureStep,
    ScheduledProcedureStepStatus,
)
from fetlock.imaging.schemas import OrderCreate, OrderEdit, ProcedureIn, StationIn
from fetlock.practice import service as practice
from fetlock.practice.models import Client, Horse, Ownership, Visit, VisitKind
from fetlock.web.errors import Conflict, DomainError, NotFound

logger = logging.getLogger(__name__)

# Counters and formats of the identifiers allocated once per order. The
# Accession Number and the Requested Procedure ID share one counter, so
# FA00000042 and RP00000042 belong to the same order. All fit VR SH (16).
ACCESSION_COUNTER = "imaging.accession"
SPS_COUNTER = "imaging.sps"
ACCESSION_FORMAT = "FA{:08d}"
REQUESTED_PROCEDURE_FORMAT = "RP{:08d}"
SPS_ID_FORMAT = "SP{:08d}"

CATALOG_FILE = "catalog.json"

# Roles whose members may be named as the requesting clinician of an order.
REQUESTING_ROLES = frozenset({Role.VETERINARIAN, Role.RADIOLOGIST, Role.ADMIN})

# (0040,0007) Scheduled Procedure Step Description is LO: 64 characters.
SPS_DESCRIPTION_MAX = 64


# --------------------------------------------------------------------------
# Procedure catalog
# --------------------------------------------------------------------------


def load_catalog_data() -> dict[str, Any]:
    """Return the seed catalog shipped with Fetlock (``imaging/catalog.json``)."""
    text = resources.files("fetlock.imaging").joinpath(CATALOG_FILE).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def fee_codes() -> dict[str, str]:
    """Return the fee codes the seed catalog uses, with their descriptions."""
    codes: dict[str, str] = load_catalog_data()["fee_codes"]
    return codes


def seed_catalog(db_session: Session, actor: audit.Actor = audit.SYSTEM) -> int:
    """Add the seed procedures whose code is not in the catalog yet.

    Rows an administrator has edited or deactivated are left alone. Returns the
    number of procedures added.
    """
    lock_for_seeding(db_session)
    existing = set(db_session.execute(select(Procedure.code)).scalars())
    added = 0
    for ordinal, entry in enumerate(load_catalog_data()["procedures"]):
        if entry["code"] in existing:
            continue
        data = ProcedureIn.model_validate(
            {k: v for k, v in entry.items() if k != "ordinal"}
        )
        _save_procedure_rows(db_session, Procedure(ordinal=ordinal), data)
        added += 1
    if added:
        db_session.flush()
        audit.record(
            db_session,
            actor,
            "procedure.seed",
            "procedure_catalog",
            CATALOG_FILE,
            detail={"added": added},
        )
    return added


def ensure_catalog(db_session: Session) -> None:
    """Seed the catalog on first use, when it has no procedures at all."""
    if db_session.execute(select(func.count(Procedure.id))).scalar_one():
        return
    lock_for_seeding(db_session)
    if db_session.execute(select(func.count(Procedure.id))).scalar_one() == 0:
        seed_catalog(db_session)  # takes the lock again, which is allowed


def list_procedures(
    db_session: Session, *, include_inactive: bool = False
) -> list[Procedure]:
    ensure_catalog(db_session)
    query = (
        select(Procedure)
        .options(selectinload(Procedure.views))
        .order_by(Procedure.ordinal, Procedure.code)
    )
    if not include_inactive:
        query = query.where(Procedure.active.is_(True))
    return list(db_session.execute(query).scalars())


def get_procedure(db_session: Session, procedure_id: int) -> Procedure:
    procedure = db_session.get(Procedure, procedure_id)
    if procedure is None:
        raise NotFound(
            f"procedure {procedure_id} does not exist; see /api/v1/procedures",
            field="procedure_id",
            value=procedure_id,
        )
    return procedure


def get_procedure_by_code(
    db_session: Session, code: str, *, field_name: str = "procedure_code"
) -> Procedure:
    """Return the active procedure ``code`` or raise naming the known codes."""
    ensure_catalog(db_session)
    procedure = db_session.execute(
        select(Procedure).where(Procedure.code == code.strip().upper())
    ).scalar_one_or_none()
    if procedure is None or not procedure.active:
        known = db_session.execute(
            select(Procedure.code)
            .where(Procedure.active.is_(True))
            .order_by(Procedure.code)
        ).scalars()
        state = "is inactive" if procedure is not None else "is not in the catalog"
        raise DomainError(
            f"procedure {code!r} {state}; choose one of: {', '.join(known)}",
            field=field_name,
            value=code,
        )
    return procedure


def save_procedure(
    db_session: Session,
    actor: audit.Actor,
    data: ProcedureIn,
    *,
    procedure: Procedure | None = None,
) -> Procedure:
    """Create a catalog entry, or replace ``procedure`` (its views included)."""
    clash = db_session.execute(
        select(Procedure).where(Procedure.code == data.code)
    ).scalar_one_or_none()
    if clash is not None and clash is not procedure:
        raise Conflict(
            f"procedure code {data.code!r} is already used by {clash.name!r}; "
            "choose another code or edit that procedure",
            field="code",
            value=data.code,
        )
    creating = procedure is None
    if procedure is None:
        next_ordinal = db_session.execute(
            select(func.coalesce(func.max(Procedure.ordinal), 0))
        ).scalar_one()
        procedure = Procedure(ordinal=next_ordinal + 1)
    _save_procedure_rows(db_session, procedure, data)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "procedure.create" if creating else "procedure.update",
        "procedure",
        procedure.id,
        detail={"code": procedure.code, "views": len(procedure.views)},
    )
    return procedure


def _save_procedure_rows(
    db_session: Session, procedure: Procedure, data: ProcedureIn
) -> None:
    seen: set[tuple[str | None, str]] = set()
    for view in data.views:
        key = (view.limb, view.projection)
        if key in seen:
            raise DomainError(
                f"view {view_code(view.limb, view.projection)!r} is listed twice; "
                "list each view once",
                field="views",
                value=view_code(view.limb, view.projection),
            )
        seen.add(key)
    procedure.code = data.code
    procedure.name = data.name
    procedure.modality = data.modality
    procedure.body_region = data.body_region
    procedure.body_part_examined = data.body_part_examined
    procedure.limb_choice = " ".join(limb.value for limb in data.limb_choice)
    procedure.fee_code = data.fee_code
    procedure.per_view_fee_code = data.per_view_fee_code
    procedure.description = data.description
    procedure.active = data.active
    procedure.updated_at = utcnow()
    if procedure.id is None:
        db_session.add(procedure)
    procedure.views.clear()
    db_session.flush()
    for ordinal, view in enumerate(data.views):
        procedure.views.append(
            ProcedureView(
                projection=view.projection,
                limb=view.limb.value if view.limb else None,
                description=view.description,
                default_selected=view.default_selected,
                ordinal=ordinal,
            )
        )


# --------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewSpec:
    """A view as ordered: ``code`` is ``LIMB-PROJECTION`` or ``PROJECTION``."""

    code: str
    limb: str | None
    projection: str
    description: str


def view_code(limb: str | None, projection: str) -> str:
    """Return the order code of a view, such as ``LF-LM`` or ``NP``."""
    return f"{limb}-{projection}" if limb else projection


def parse_view_code(code: str) -> tuple[str | None, str]:
    head, _, rest = code.partition("-")
    if rest and head.upper() in Limb.__members__:
        return head.upper(), rest
    return None, code


def _procedure_views(procedure: Procedure, limb: str | None) -> list[ViewSpec]:
    """Return every view of the procedure's set, limbs resolved for ``limb``."""
    specs = []
    for view in procedure.views:
        view_limb = view.limb or limb
        specs.append(
            ViewSpec(
                code=view_code(view_limb, view.projection),
                limb=view_limb,
                projection=view.projection,
                description=view.description,
            )
        )
    return specs


def standard_views(procedure: Procedure, limb: str | None) -> list[ViewSpec]:
    """Return the views pre-ticked on the order form for ``procedure``."""
    selected = {v.id for v in procedure.views if v.default_selected}
    return [
        spec
        for spec, view in zip(
            _procedure_views(procedure, limb), procedure.views, strict=True
        )
        if view.id in selected
    ]


def _check_limb(procedure: Procedure, limb: str | None) -> str | None:
    limbs = procedure.limbs
    if limbs and limb is None:
        raise DomainError(
            f"procedure {procedure.code} needs a limb; choose one of "
            f"{', '.join(limbs)}",
            field="limb",
            value=limb,
        )
    if not limbs and limb is not None:
        raise DomainError(
            f"procedure {procedure.code} names its own limbs (or none); "
            "leave the limb empty",
            field="limb",
            value=limb,
        )
    if limb is not None and limb not in limbs:
        raise DomainError(
            f"limb {limb!r} is not imaged by {procedure.code}; choose one of "
            f"{', '.join(limbs)}",
            field="limb",
            value=limb,
        )
    return limb


def resolve_views(
    db_session: Session,
    procedure: Procedure,
    limb: str | None,
    codes: Sequence[str] | None,
) -> list[ViewSpec]:
    """Turn requested view codes into views, or the standard set when None.

    A code is accepted when it is in the procedure's set, for the order's limb.
    It is also accepted as an extra view when its projection is in the set of
    any active procedure of the same modality and it names a limb wherever
    that set does.
    """
    if codes is None:
        return standard_views(procedure, limb)
    if not codes:
        raise DomainError(
            "no views are selected; tick at least one view of the set",
            field="views",
            value=[],
        )

    own = {spec.code: spec for spec in _procedure_views(procedure, limb)}
    vocabulary = _projection_vocabulary(db_session, procedure.modality)
    specs: list[ViewSpec] = []
    seen: set[str] = set()
    for raw in codes:
        code = raw.strip()
        view_limb, projection = parse_view_code(code)
        code = view_code(view_limb, projection)
        if code in seen:
            raise DomainError(
                f"view {code!r} is listed twice; list each view once",
                field="views",
                value=code,
            )
        seen.add(code)
        if code in own:
            specs.append(own[code])
            continue
        known = vocabulary.get(projection)
        if known is None or known[0] != (view_limb is not None):
            raise DomainError(
                f"view {raw!r} is not in any {procedure.modality} view set; write "
                "views as LIMB-PROJECTION (LIMB one of LF, RF, LH, RH) or as a "
                "projection without a limb where the set has none; this "
                f"procedure's set is {', '.join(own) or 'empty'}",
                field="views",
                value=raw,
            )
        specs.append(ViewSpec(code, view_limb, projection, known[1]))
    return specs


def _projection_vocabulary(
    db_session: Session, modality: str
) -> dict[str, tuple[bool, str]]:
    """Map each projection of the modality's sets to (limb-bound, description)."""
    rows = db_session.execute(
        select(ProcedureView, Procedure.limb_choice)
        .join(Procedure)
        .where(Procedure.active.is_(True), Procedure.modality == modality)
    ).all()
    vocabulary: dict[str, tuple[bool, str]] = {}
    for view, limb_choice in rows:
        limb_bound = view.limb is not None or bool(limb_choice)
        vocabulary.setdefault(view.projection, (limb_bound, view.description))
    return vocabulary


# --------------------------------------------------------------------------
# Remote modalities (AE configuration)
# --------------------------------------------------------------------------


def list_stations(
    db_session: Session, *, include_inactive: bool = True
) -> list[RemoteAE]:
    query = select(RemoteAE).order_by(RemoteAE.ae_title)
    if not include_inactive:
        query = query.where(RemoteAE.active.is_(True))
    return list(db_session.execute(query).scalars())


def get_station(db_session: Session, station_id: int) -> RemoteAE:
    station = db_session.get(RemoteAE, station_id)
    if station is None:
        raise NotFound(
            f"modality {station_id} does not exist; see /api/v1/modalities",
            field="station_id",
            value=station_id,
        )
    return station


def station_by_ae_title(
    db_session: Session, ae_title: str, *, field_name: str = "station_ae_title"
) -> RemoteAE:
    """Return the active station ``ae_title`` or raise naming the configured ones."""
    station = db_session.execute(
        select(RemoteAE).where(RemoteAE.ae_title == ae_title.strip())
    ).scalar_one_or_none()
    if station is None or not station.active:
        known = [s.ae_title for s in list_stations(db_session, include_inactive=False)]
        raise DomainError(
            f"performing station {ae_title!r} is not a configured, active modality; "
            f"choose one of: {', '.join(known) or 'none configured yet'} "
            "(administrators add modalities at /modalities)",
            field=field_name,
            value=ae_title,
        )
    return station


def save_station(
    db_session: Session,
    actor: audit.Actor,
    data: StationIn,
    *,
    station: RemoteAE | None = None,
) -> RemoteAE:
    """Create a remote modality, or replace ``station``'s settings."""
    clash = db_session.execute(
        select(RemoteAE).where(RemoteAE.ae_title == data.ae_title)
    ).scalar_one_or_none()
    if clash is not None and clash is not station:
        raise Conflict(
            f"AE title {data.ae_title!r} is already configured; edit that "
            "modality instead",
            field="ae_title",
            value=data.ae_title,
        )
    creating = station is None
    if station is None:
        station = RemoteAE()
        db_session.add(station)
    for name, value in data.model_dump().items():
        setattr(station, name, value.value if hasattr(value, "value") else value)
    station.updated_at = utcnow()
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "modality.create" if creating else "modality.update",
        "dicom_remote_ae",
        station.id,
        detail=data.model_dump(mode="json"),
    )
    return station


# --------------------------------------------------------------------------
# Orders
# --------------------------------------------------------------------------


def get_order(db_session: Session, order_id: int) -> ImagingOrder:
    order = db_session.get(ImagingOrder, order_id)
    if order is None:
        raise NotFound(
            f"imaging order {order_id} does not exist",
            field="order_id",
            value=order_id,
        )
    return order


def record_view(db_session: Session, actor: audit.Actor, order: ImagingOrder) -> None:
    """Audit that ``actor`` opened one order (the chart's polling is not audited)."""
    audit.record(
        db_session,
        actor,
        "imaging_order.view",
        "imaging_order",
        order.id,
        horse_id=order.horse_id,
        detail={"accession_number": order.accession_number},
    )


def find_orders(
    db_session: Session,
    *,
    accession_number: str | None = None,
    horse_id: int | None = None,
    status: str | None = None,
    limit: int = 200,
) -> list[ImagingOrder]:
    query = (
        select(ImagingOrder)
        .options(selectinload(ImagingOrder.views), selectinload(ImagingOrder.steps))
        .order_by(ImagingOrder.scheduled_start.desc(), ImagingOrder.id.desc())
        .limit(limit)
    )
    if accession_number is not None:
        query = query.where(ImagingOrder.accession_number == accession_number.strip())
    if horse_id is not None:
        query = query.where(ImagingOrder.horse_id == horse_id)
    if status is not None:
        query = query.where(ImagingOrder.status == status)
    return list(db_session.execute(query).scalars())


def orders_for_horse(db_session: Session, horse_id: int) -> list[ImagingOrder]:
    return find_orders(db_session, horse_id=horse_id)


def _local_start(
    settings: Settings, value: dt.datetime | None, *, field_name: str
) -> dt.datetime:
    """Return an aware UTC start; naive input is in the practice time zone.

    A start on a day before today (practice time) is rejected, because a
    modality would never show it on today's worklist.
    """
    zone = settings.zone
    now = utcnow()
    if value is None:
        return now.replace(second=0, microsecond=0)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    if value.astimezone(zone).date() < now.astimezone(zone).date():
        raise DomainError(
            f"scheduled start {value.isoformat()} is in the past; schedule today "
            "or later",
            field="scheduled_start",
            value=value.isoformat(),
        )
    return value.astimezone(dt.UTC)


def _requesting_clinician(db_session: Session, user_id: int) -> User:
    user = db_session.get(User, user_id)
    if user is None or not user.active:
        raise DomainError(
            f"requesting clinician {user_id} is not an active user; choose a "
            "veterinarian from the list",
            field="requesting_clinician_id",
            value=user_id,
        )
    if user.role_enum not in REQUESTING_ROLES:
        raise DomainError(
            f"{user.full_name} ({user.role}) cannot request imaging; choose a "
            "veterinarian or radiologist",
            field="requesting_clinician_id",
            value=user_id,
        )
    return user


def _default_station(db_session: Session, modality: str) -> RemoteAE:
    """Return the one active station for ``modality``, or raise naming the choice."""
    stations = [
        s
        for s in list_stations(db_session, include_inactive=False)
        if s.modality == modality
    ]
    if len(stations) == 1:
        return stations[0]
    if not stations:
        message = (
            f"no active {modality} modality is configured, so the order cannot "
            "reach a worklist; an administrator adds one at /modalities"
        )
    else:
        message = (
            f"several {modality} stations are configured; choose the performing "
            f"station: {', '.join(s.ae_title for s in stations)}"
        )
    raise DomainError(message, field="station_ae_title", value=None)


def _check_station_modality(station: RemoteAE | None, modality: str) -> None:
    if station is not None and station.modality != modality:
        raise DomainError(
            f"performing station {station.ae_title} is configured for "
            f"{station.modality}, not {modality}; choose a {modality} station or "
            "change the modality",
            field="station_ae_title",
            value=station.ae_title,
        )


def _order_visit(
    db_session: Session,
    actor: audit.Actor,
    settings: Settings,
    horse: Horse,
    visit_id: int | None,
    start: dt.datetime,
    clinician: User,
    procedure: Procedure,
) -> Visit:
    """Return the visit the order belongs to, opening an outpatient visit if none."""
    if visit_id is not None:
        visit = db_session.get(Visit, visit_id)
        if visit is None or visit.horse_id != horse.id:
            raise DomainError(
                f"visit {visit_id} is not a visit of horse {horse.id}; leave the "
                "visit empty to use the horse's current visit",
                field="visit_id",
                value=visit_id,
            )
        return visit
    return practice.open_or_create_visit(
        db_session,
        actor,
        horse,
        start,
        kind=VisitKind.OUTPATIENT,
        attending_vet_id=clinician.id
        if clinician.role_enum is Role.VETERINARIAN
        else None,
        reason=f"Imaging: {procedure.name}",
        zone=settings.zone,
    )


def _sps_description(procedure: Procedure, limb: str | None) -> str:
    text = f"{procedure.name} {limb}" if limb else procedure.name
    return text[:SPS_DESCRIPTION_MAX]


def create_order(
    db_session: Session,
    actor: audit.Actor,
    settings: Settings,
    horse_id: int,
    data: OrderCreate,
    *,
    default_clinician_id: int | None = None,
) -> ImagingOrder:
    """Create an order with its identifiers, views and worklist step.

    The Accession Number, Requested Procedure ID, Scheduled Procedure Step ID
    and Study Instance UID are allocated here, once. The billing hook posts the
    order's charge in the same transaction.
    """
    horse = practice.get_horse(db_session, horse_id)

    # Validate every input before anything is written.
    procedure = get_procedure_by_code(db_session, data.procedure_code)
    limb = _check_limb(procedure, data.limb.value if data.limb else None)
    views = resolve_views(db_session, procedure, limb, data.views)
    modality = data.modality or procedure.modality
    clinician_id = data.requesting_clinician_id or default_clinician_id
    if clinician_id is None:
        raise DomainError(
            "the requesting clinician is missing; choose the veterinarian who "
            "requests the study",
            field="requesting_clinician_id",
            value=None,
        )
    clinician = _requesting_clinician(db_session, clinician_id)
    station = (
        station_by_ae_title(db_session, data.station_ae_title)
        if data.station_ae_title
        else _default_station(db_session, modality)
    )
    _check_station_modality(station, modality)
    start = _local_start(settings, data.scheduled_start, field_name="scheduled_start")
    visit = _order_visit(
        db_session, actor, settings, horse, data.visit_id, start, clinician, procedure
    )

    # Allocate the identifiers; a rolled-back transaction never used them.
    number = next_value(db_session, ACCESSION_COUNTER)
    order = ImagingOrder(
        horse_id=horse.id,
        visit_id=visit.id,
        procedure_id=procedure.id,
        modality=modality,
        status=OrderStatus.SCHEDULED,
        accession_number=ACCESSION_FORMAT.format(number),
        requested_procedure_id=REQUESTED_PROCEDURE_FORMAT.format(number),
        study_instance_uid=generate_uid(prefix=settings.uid_root),
        limb=limb,
        requesting_clinician_id=clinician.id,
        station_id=station.id if station else None,
        scheduled_start=start,
        priority=data.priority.value,
        clinical_history=data.clinical_history,
        created_by_id=actor.user_id,
    )
    order.procedure = procedure
    order.station = station
    _set_views(order, views)
    order.steps.append(
        ScheduledProcedureStep(
            sps_id=SPS_ID_FORMAT.format(next_value(db_session, SPS_COUNTER)),
            station_ae_title=station.ae_title if station else None,
            station_name=station.station_name if station else None,
            modality=modality,
            scheduled_start=start,
            description=_sps_description(procedure, limb),
            status=ScheduledProcedureStepStatus.SCHEDULED,
        )
    )
    db_session.add(order)
    db_session.flush()

    audit.record(
        db_session,
        actor,
        "imaging_order.create",
        "imaging_order",
        order.id,
        horse_id=horse.id,
        detail={
            "accession_number": order.accession_number,
            "procedure": procedure.code,
            "views": [v.code for v in views],
            "station": station.ae_title if station else None,
            "scheduled_start": start.isoformat(),
            "study_instance_uid": order.study_instance_uid,
        },
    )
    hooks.on_order_created(db_session, order, actor)
    return order


def _set_views(order: ImagingOrder, views: Iterable[ViewSpec]) -> None:
    order.views.clear()
    for ordinal, spec in enumerate(views):
        order.views.append(
            OrderView(
                code=spec.code,
                limb=spec.limb,
                projection=spec.projection,
                description=spec.description,
                ordinal=ordinal,
            )
        )


def _require_scheduled(order: ImagingOrder, doing: str) -> None:
    if order.status != OrderStatus.SCHEDULED:
        raise Conflict(
            f"order {order.accession_number} is {order.status.replace('_', ' ')}; "
            f"only a scheduled order can be {doing} (before acquisition starts)",
            field="status",
            value=order.status,
        )


def edit_order(
    db_session: Session,
    actor: audit.Actor,
    settings: Settings,
    order: ImagingOrder,
    data: OrderEdit,
) -> ImagingOrder:
    """Change a scheduled order; its worklist item is updated in place.

    The order keeps its Accession Number, Requested Procedure ID, Study
    Instance UID and SPS ID, so a modality that already fetched the worklist
    still finds the same item.
    """
    _require_scheduled(order, "edited")
    given = data.model_fields_set
    changed: list[str] = []

    # Validate every changed input before touching the order.
    procedure = order.procedure
    if "procedure_code" in given and data.procedure_code:
        procedure = get_procedure_by_code(db_session, data.procedure_code)
    limb = order.limb
    if "limb" in given:
        limb = data.limb.value if data.limb else None
    elif (
        procedure is not order.procedure
        and procedure.limbs
        and limb not in procedure.limbs
    ):
        limb = None
    limb = _check_limb(procedure, limb)
    views: list[ViewSpec] | None = None
    if "views" in given or procedure is not order.procedure or limb != order.limb:
        requested = data.views if "views" in given else None
        views = resolve_views(db_session, procedure, limb, requested)
    modality = data.modality if "modality" in given and data.modality else None
    if modality is None:
        modality = (
            procedure.modality if procedure is not order.procedure else order.modality
        )
    station = order.station
    if "station_ae_title" in given:
        station = (
            station_by_ae_title(db_session, data.station_ae_title)
            if data.station_ae_title
            else _default_station(db_session, modality)
        )
    _check_station_modality(station, modality)
    clinician_id = order.requesting_clinician_id
    if "requesting_clinician_id" in given and data.requesting_clinician_id:
        clinician_id = _requesting_clinician(
            db_session, data.requesting_clinician_id
        ).id
    start = order.scheduled_start
    if "scheduled_start" in given and data.scheduled_start is not None:
        start = _local_start(
            settings, data.scheduled_start, field_name="scheduled_start"
        )

    # Apply.
    def assign(name: str, value: Any) -> None:
        if getattr(order, name) != value:
            setattr(order, name, value)
            changed.append(name)

    if procedure is not order.procedure:
        order.procedure = procedure
        order.procedure_id = procedure.id
        changed.append("procedure")
    assign("limb", limb)
    assign("modality", modality)
    assign("requesting_clinician_id", clinician_id)
    if station is not order.station:
        order.station = station
        order.station_id = station.id if station else None
        changed.append("station")
    assign("scheduled_start", start)
    if "priority" in given and data.priority is not None:
        assign("priority", data.priority.value)
    if "clinical_history" in given:
        assign("clinical_history", data.clinical_history)
    if views is not None and [v.code for v in views] != [v.code for v in order.views]:
        _set_views(order, views)
        changed.append("views")

    for step in order.steps:
        step.station_ae_title = station.ae_title if station else None
        step.station_name = station.station_name if station else None
        step.modality = modality
        step.scheduled_start = start
        step.description = _sps_description(procedure, limb)

    if not changed:
        return order
    order.updated_at = utcnow()
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "imaging_order.update",
        "imaging_order",
        order.id,
        horse_id=order.horse_id,
        detail={"accession_number": order.accession_number, "fields": changed},
    )
    hooks.on_order_edited(db_session, order, actor)
    return order


def cancel_order(
    db_session: Session,
    actor: audit.Actor,
    order: ImagingOrder,
    reason: str | None = None,
) -> ImagingOrder:
    """Cancel an order not yet completed; its worklist item disappears at once.

    An order in progress (images or an MPPS have arrived) may still be
    cancelled. Billing then requires a reason and keeps the charge unless it
    is waived.
    """
    if not order.open_for_cancel:
        raise Conflict(
            f"order {order.accession_number} is {order.status.replace('_', ' ')}; "
            "only a scheduled or in-progress order can be cancelled",
            field="status",
            value=order.status,
        )
    now = utcnow()
    order.status = OrderStatus.CANCELLED
    order.cancelled_at = now
    order.cancel_reason = reason
    order.updated_at = now
    for step in order.steps:
        step.status = ScheduledProcedureStepStatus.CANCELED
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "imaging_order.cancel",
        "imaging_order",
        order.id,
        horse_id=order.horse_id,
        detail={"accession_number": order.accession_number, "reason": reason},
    )
    hooks.on_order_cancelled(db_session, order, actor)
    return order


# --------------------------------------------------------------------------
# Worklist
# --------------------------------------------------------------------------


@dataclass
class WorklistFilter:
    """Criteria the database applies before the DICOM matching rules run.

    Every field is an exact or range criterion; None means no restriction.
    ``start_from`` and ``start_to`` are inclusive UTC bounds.
    """

    start_from: dt.datetime | None = None
    start_to: dt.datetime | None = None
    station_ae_titles: Sequence[str] | None = None
    modality: str | None = None
    statuses: Sequence[str] = (ScheduledProcedureStepStatus.SCHEDULED,)
    accession_number: str | None = None
    patient_id: str | None = None
    sps_id: str | None = None
    requested_procedure_id: str | None = None
    study_instance_uids: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """A horse and its principal owner, as plain values for DICOM mapping."""

    patient_id: str
    barn_name: str
    registered_name: str | None
    species: str
    breed: str | None
    sex: str | None
    date_of_birth: dt.date | None
    microchip: str | None
    ueln: str | None
    passport_number: str | None
    registry_name: str | None
    registry_number: str | None
    owner_kind: str | None = None
    owner_family_name: str | None = None
    owner_given_name: str | None = None
    owner_organisation_name: str | None = None

    @classmethod
    def from_models(cls, horse: Horse, owner: Client | None) -> PatientRecord:
        return cls(
            patient_id=horse.patient_id,
            barn_name=horse.barn_name,
            registered_name=horse.registered_name,
            species=horse.species,
            breed=horse.breed,
            sex=horse.sex,
            date_of_birth=horse.date_of_birth,
            microchip=horse.microchip,
            ueln=horse.ueln,
            passport_number=horse.passport_number,
            registry_name=horse.registry_name,
            registry_number=horse.registry_number,
            owner_kind=owner.kind if owner else None,
            owner_family_name=owner.family_name if owner else None,
            owner_given_name=owner.given_name if owner else None,
            owner_organisation_name=owner.organisation_name if owner else None,
        )


@dataclass(frozen=True, slots=True)
class WorklistRecord:
    """One worklist item (a scheduled step with its order) as plain values.

    ``views`` contains (code, description) pairs in order.
    """

    order_id: int
    sps_id: str
    station_ae_title: str | None
    station_name: str | None
    modality: str
    scheduled_start: dt.datetime
    description: str
    sps_status: str
    accession_number: str
    requested_procedure_id: str
    study_instance_uid: str
    priority: str
    clinical_history: str | None
    visit_id: int
    visit_location: str | None
    procedure_code: str
    procedure_name: str
    clinician_name: str | None
    views: tuple[tuple[str, str], ...]
    patient: PatientRecord


_HORSE_COLUMNS = (
    Horse.patient_id,
    Horse.barn_name,
    Horse.registered_name,
    Horse.species,
    Horse.breed,
    Horse.sex,
    Horse.date_of_birth,
    Horse.microchip,
    Horse.ueln,
    Horse.passport_number,
    Horse.registry_name,
    Horse.registry_number,
)


_PATIENT_FIELDS = tuple(PatientRecord.__dataclass_fields__)


def worklist_records(
    db_session: Session,
    criteria: WorklistFilter,
    *,
    day: dt.date,
    with_views: bool = True,
) -> list[WorklistRecord]:
    """Return the worklist items meeting ``criteria``, ordered by start time.

    Plain column queries, not ORM entities, because a worklist query may look
    at every scheduled item: one query for the steps, then one per 500 items
    for owners (those in force on ``day``) and for views. With ``with_views``
    False the views are left empty, for ``add_views`` to fill in once the
    caller has narrowed the records down.
    """
    query = (
        select(
            ScheduledProcedureStep.sps_id,
            ScheduledProcedureStep.station_ae_title,
            ScheduledProcedureStep.station_name,
            ScheduledProcedureStep.modality,
            ScheduledProcedureStep.scheduled_start,
            ScheduledProcedureStep.description,
            ScheduledProcedureStep.status,
            ImagingOrder.id,
            ImagingOrder.accession_number,
            ImagingOrder.requested_procedure_id,
            ImagingOrder.study_instance_uid,
            ImagingOrder.priority,
            ImagingOrder.clinical_history,
            ImagingOrder.visit_id,
            Visit.location,
            Procedure.code,
            Procedure.name,
            User.full_name,
            Horse.id,
            *_HORSE_COLUMNS,
        )
        .join(ImagingOrder, ScheduledProcedureStep.order_id == ImagingOrder.id)
        .join(Horse, ImagingOrder.horse_id == Horse.id)
        .join(Procedure, ImagingOrder.procedure_id == Procedure.id)
        .outerjoin(User, ImagingOrder.requesting_clinician_id == User.id)
        .outerjoin(Visit, ImagingOrder.visit_id == Visit.id)
        .order_by(ScheduledProcedureStep.scheduled_start, ScheduledProcedureStep.id)
    )
    if criteria.statuses:
        query = query.where(ScheduledProcedureStep.status.in_(list(criteria.statuses)))
    if criteria.start_from is not None:
        query = query.where(
            ScheduledProcedureStep.scheduled_start >= criteria.start_from
        )
    if criteria.start_to is not None:
        query = query.where(ScheduledProcedureStep.scheduled_start <= criteria.start_to)
    if criteria.station_ae_titles is not None:
        query = query.where(
            ScheduledProcedureStep.station_ae_title.in_(
                list(criteria.station_ae_titles)
            )
        )
    if criteria.modality is not None:
        query = query.where(ScheduledProcedureStep.modality == criteria.modality)
    if criteria.accession_number is not None:
        query = query.where(ImagingOrder.accession_number == criteria.accession_number)
    if criteria.patient_id is not None:
        query = query.where(Horse.patient_id == criteria.patient_id)
    if criteria.sps_id is not None:
        query = query.where(ScheduledProcedureStep.sps_id == criteria.sps_id)
    if criteria.requested_procedure_id is not None:
        query = query.where(
            ImagingOrder.requested_procedure_id == criteria.requested_procedure_id
        )
    if criteria.study_instance_uids is not None:
        query = query.where(
            ImagingOrder.study_instance_uid.in_(list(criteria.study_instance_uids))
        )
    rows = db_session.execute(query).all()
    if not rows:
        return []

    owners = _owner_rows(db_session, {row[18] for row in rows}, day)
    views = _view_rows(db_session, {row[7] for row in rows}) if with_views else {}
    records = []
    for row in rows:
        horse_id = row[18]
        owner = owners.get(horse_id, (None, None, None, None))
        values: tuple[Any, ...] = (*row[19:], *owner)
        patient = PatientRecord(**dict(zip(_PATIENT_FIELDS, values, strict=True)))
        records.append(
            WorklistRecord(
                order_id=row[7],
                sps_id=row[0],
                station_ae_title=row[1],
                station_name=row[2],
                modality=row[3],
                scheduled_start=row[4],
                description=row[5],
                sps_status=row[6],
                accession_number=row[8],
                requested_procedure_id=row[9],
                study_instance_uid=row[10],
                priority=row[11],
                clinical_history=row[12],
                visit_id=row[13],
                visit_location=row[14],
                procedure_code=row[15],
                procedure_name=row[16],
                clinician_name=row[17],
                views=views.get(row[7], ()),
                patient=patient,
            )
        )
    return records


def add_views(
    db_session: Session, records: Sequence[WorklistRecord]
) -> list[WorklistRecord]:
    """Return ``records`` with their ordered views filled in."""
    views = _view_rows(db_session, {r.order_id for r in records})
    return [replace(r, views=views.get(r.order_id, ())) for r in records]


_CHUNK = 500


def _chunks(values: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(values)
    for index in range(0, len(ordered), _CHUNK):
        yield ordered[index : index + _CHUNK]


def _owner_rows(
    db_session: Session, horse_ids: Iterable[int], day: dt.date
) -> dict[int, tuple[str | None, str | None, str | None, str | None]]:
    """Return each horse's principal owner on ``day`` (largest share, then id).

    The same rule as ``fetlock.practice.service.owners_on``, for many horses in
    a few queries; values are (kind, family, given, organisation name).
    """
    best: dict[int, tuple[tuple[int, int], tuple[Any, ...]]] = {}
    for chunk in _chunks(horse_ids):
        rows = db_session.execute(
            select(
                Ownership.horse_id,
                Ownership.share,
                Ownership.client_id,
                Client.kind,
                Client.family_name,
                Client.given_name,
                Client.organisation_name,
            )
            .join(Client, Ownership.client_id == Client.id)
            .where(
                Ownership.horse_id.in_(chunk),
                Ownership.effective_from <= day,
                or_(Ownership.effective_to.is_(None), Ownership.effective_to > day),
            )
        ).all()
        for horse_id, share, client_id, *names in rows:
            rank = (-share, client_id)
            current = best.get(horse_id)
            if current is None or rank < current[0]:
                best[horse_id] = (rank, tuple(names))
    return {horse_id: entry[1] for horse_id, entry in best.items()}


def _view_rows(
    db_session: Session, order_ids: Iterable[int]
) -> dict[int, tuple[tuple[str, str], ...]]:
    views: dict[int, list[tuple[str, str]]] = {}
    for chunk in _chunks(order_ids):
        rows = db_session.execute(
            select(OrderView.order_id, OrderView.code, OrderView.description)
            .where(OrderView.order_id.in_(chunk))
            .order_by(OrderView.order_id, OrderView.ordinal)
        ).all()
        for order_id, code, description in rows:
            views.setdefault(order_id, []).append((code, description))
    return {order_id: tuple(items) for order_id, items in views.items()}


# --------------------------------------------------------------------------
# Modality Performed Procedure Step
# --------------------------------------------------------------------------


class MppsRejected(DomainError):
    """An MPPS request breaks the life-cycle rules of PS3.4 F.7.

    ``reason`` is one of ``duplicate``, ``invalid_status``, ``not_in_progress``
    and ``no_such_instance``; the DICOM adapter maps it to a DIMSE status.
    """

    status_code = 409

    def __init__(self, message: str, *, reason: str, value: Any = None) -> None:
        super().__init__(message, field="PerformedProcedureStepStatus", value=value)
        self.reason = reason


@dataclass
class MppsReport:
    """The attributes of an MPPS instance that Fetlock acts on.

    ``attributes_json`` is the whole current dataset as DICOM JSON.
    """

    sop_instance_uid: str
    status: str
    accession_number: str | None = None
    study_instance_uid: str | None = None
    scheduled_procedure_step_id: str | None = None
    performed_procedure_step_id: str | None = None
    performed_station_ae_title: str | None = None
    modality: str | None = None
    patient_id: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    attributes_json: str = "{}"


def get_mpps(db_session: Session, sop_instance_uid: str) -> MppsInstance | None:
    return db_session.execute(
        select(MppsInstance).where(MppsInstance.sop_instance_uid == sop_instance_uid)
    ).scalar_one_or_none()


def _match_order(
    db_session: Session, report: MppsReport
) -> tuple[ImagingOrder | None, ScheduledProcedureStep | None]:
    """Find the order an MPPS is for: by SPS ID, Accession Number, then UID."""
    step = None
    if report.scheduled_procedure_step_id:
        step = db_session.execute(
            select(ScheduledProcedureStep).where(
                ScheduledProcedureStep.sps_id == report.scheduled_procedure_step_id
            )
        ).scalar_one_or_none()
    order = step.order if step is not None else None
    if order is None and report.accession_number:
        order = db_session.execute(
            select(ImagingOrder).where(
                ImagingOrder.accession_number == report.accession_number
            )
        ).scalar_one_or_none()
    if order is None and report.study_instance_uid:
        order = db_session.execute(
            select(ImagingOrder).where(
                ImagingOrder.study_instance_uid == report.study_instance_uid
            )
        ).scalar_one_or_none()
    if order is not None and step is None and order.steps:
        step = order.steps[0]
    return order, step


def mpps_create(
    db_session: Session, actor: audit.Actor, report: MppsReport
) -> MppsInstance:
    """Record an N-CREATE: a step the modality has started (PS3.4 F.7.2.1).

    Only IN PROGRESS is accepted. An MPPS that names no known order is kept
    with ``unmatched`` set, for the practice to reconcile.
    """
    if get_mpps(db_session, report.sop_instance_uid) is not None:
        raise MppsRejected(
            f"MPPS {report.sop_instance_uid} already exists; a modality creates "
            "each performed procedure step once",
            reason="duplicate",
            value=report.sop_instance_uid,
        )
    if report.status != PerformedProcedureStepStatus.IN_PROGRESS:
        raise MppsRejected(
            f"(0040,0252) Performed Procedure Step Status {report.status!r} is "
            "invalid in N-CREATE; it must be IN PROGRESS",
            reason="invalid_status",
            value=report.status,
        )

    order, step = _match_order(db_session, report)
    now = utcnow()
    instance = MppsInstance(
        sop_instance_uid=report.sop_instance_uid,
        status=report.status,
        order_id=order.id if order else None,
        step_id=step.id if step else None,
        unmatched=order is None,
        calling_ae_title=actor.source_ae_title or actor.name,
        created_at=now,
        updated_at=now,
    )
    _copy_report(instance, report)
    db_session.add(instance)
    db_session.flush()

    if order is not None and order.status == OrderStatus.SCHEDULED:
        order.status = OrderStatus.IN_PROGRESS
        order.started_at = report.started_at or now
        order.updated_at = now
        if step is not None:
            step.status = ScheduledProcedureStepStatus.STARTED
    elif (
        order is not None
        and order.status == OrderStatus.IN_PROGRESS
        and report.started_at is not None
        and _first_mpps_of(db_session, order, instance)
    ):
        # Started when its first images arrived: the modality's own start
        # time is the better record.
        order.started_at = report.started_at
        order.updated_at = now
    if order is None:
        logger.warning(
            "MPPS %s from %s names no known order (accession %r, SPS %r, study "
            "%r); kept for reconciliation",
            report.sop_instance_uid,
            instance.calling_ae_title,
            report.accession_number,
            report.scheduled_procedure_step_id,
            report.study_instance_uid,
        )
    audit.record(
        db_session,
        actor,
        "mpps.create" if order is not None else "mpps.create_unmatched",
        "mpps_instance",
        instance.id,
        horse_id=order.horse_id if order else None,
        detail={
            "sop_instance_uid": report.sop_instance_uid,
            "status": report.status,
            "accession_number": report.accession_number,
            "order_id": order.id if order else None,
        },
    )
    db_session.flush()
    return instance


def mpps_set(
    db_session: Session, actor: audit.Actor, report: MppsReport
) -> MppsInstance:
    """Record an N-SET on an IN PROGRESS step (PS3.4 F.7.2.2).

    A step that is COMPLETED or DISCONTINUED can no longer change. The order
    follows the final state.
    """
    instance = get_mpps(db_session, report.sop_instance_uid)
    if instance is None:
        raise MppsRejected(
            f"MPPS {report.sop_instance_uid} does not exist; send N-CREATE first",
            reason="no_such_instance",
            value=report.sop_instance_uid,
        )
    if instance.status != PerformedProcedureStepStatus.IN_PROGRESS:
        raise MppsRejected(
            f"MPPS {report.sop_instance_uid} is already {instance.status}; a "
            "performed procedure step cannot change once it is final",
            reason="not_in_progress",
            value=instance.status,
        )
    if report.status not in set(PerformedProcedureStepStatus):
        raise MppsRejected(
            f"(0040,0252) Performed Procedure Step Status {report.status!r} is "
            "invalid; use IN PROGRESS, COMPLETED or DISCONTINUED",
            reason="invalid_status",
            value=report.status,
        )

    now = utcnow()
    previous = instance.status
    instance.status = report.status
    instance.updated_at = now
    _copy_report(instance, report)
    order = instance.order
    if order is not None and report.status != PerformedProcedureStepStatus.IN_PROGRESS:
        _finish_order(db_session, order, instance, report, now)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "mpps.update",
        "mpps_instance",
        instance.id,
        horse_id=order.horse_id if order else None,
        detail={
            "sop_instance_uid": instance.sop_instance_uid,
            "from": previous,
            "to": report.status,
            "order_id": order.id if order else None,
        },
    )
    return instance


def _first_mpps_of(
    db_session: Session, order: ImagingOrder, instance: MppsInstance
) -> bool:
    """True if ``instance`` is the only MPPS recorded for ``order``."""
    others = db_session.execute(
        select(func.count(MppsInstance.id)).where(
            MppsInstance.order_id == order.id, MppsInstance.id != instance.id
        )
    ).scalar_one()
    return others == 0


def _finish_order(
    db_session: Session,
    order: ImagingOrder,
    instance: MppsInstance,
    report: MppsReport,
    now: dt.datetime,
) -> None:
    if order.status not in (OrderStatus.SCHEDULED, OrderStatus.IN_PROGRESS):
        return
    completed = report.status == PerformedProcedureStepStatus.COMPLETED
    order.status = OrderStatus.COMPLETED if completed else OrderStatus.DISCONTINUED
    order.ended_at = report.ended_at or now
    order.started_at = order.started_at or report.started_at or now
    order.updated_at = now
    step_status = (
        ScheduledProcedureStepStatus.COMPLETED
        if completed
        else ScheduledProcedureStepStatus.DISCONTINUED
    )
    for step in order.steps:
        if instance.step_id is None or step.id == instance.step_id:
            step.status = step_status


def _copy_report(instance: MppsInstance, report: MppsReport) -> None:
    instance.accession_number = report.accession_number
    instance.study_instance_uid = report.study_instance_uid
    instance.scheduled_procedure_step_id = report.scheduled_procedure_step_id
    instance.performed_procedure_step_id = report.performed_procedure_step_id
    instance.performed_station_ae_title = report.performed_station_ae_title
    instance.modality = report.modality
    instance.patient_id = report.patient_id
    instance.started_at = report.started_at
    instance.ended_at = report.ended_at
    instance.attributes_json = report.attributes_json


def mpps_for_order(db_session: Session, order_id: int) -> list[MppsInstance]:
    return list(
        db_session.execute(
            select(MppsInstance)
            .where(MppsInstance.order_id == order_id)
            .order_by(MppsInstance.created_at)
        ).scalars()
    )


def unmatched_mpps(db_session: Session, *, limit: int = 100) -> list[MppsInstance]:
    """Return MPPS instances that name no known order, newest first."""
    return list(
        db_session.execute(
            select(MppsInstance)
            .where(MppsInstance.unmatched.is_(True))
            .order_by(MppsInstance.created_at.desc())
            .limit(limit)
        ).scalars()
    )


def priority_terms() -> list[str]:
    return [p.value for p in RequestedProcedurePriority]
