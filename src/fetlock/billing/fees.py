"""The fee schedule and the practice's billing settings.

The schedule is seeded from ``fee_schedule.json`` the first time billing needs
it and is then edited through the API; an item is never deleted, only made
inactive, so charges always name a code that still exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.billing.models import (
    FEE_CODE_MAX,
    BillingSetting,
    ExtraViewsPolicy,
    FeeItem,
)
from fetlock.db.base import lock_for_seeding, utcnow
from fetlock.web.errors import Conflict, DomainError, NotFound

FEE_SCHEDULE_FILE = Path(__file__).with_name("fee_schedule.json")

# A fee code: capital letters, digits and hyphens, starting with a letter.
FEE_CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9-]*$")

# Tax rates are hundredths of a percent; 100 % is the ceiling.
MAX_TAX_RATE = 10_000

# Columns an API caller may set, besides the code.
EDITABLE_FIELDS = (
    "description",
    "unit_price",
    "view_price",
    "tax_rate",
    "unscheduled_modalities",
    "active",
)

EXTRA_VIEWS_POLICY = "extra_views_policy"
DEFAULT_SETTINGS = {EXTRA_VIEWS_POLICY: ExtraViewsPolicy.REVIEW.value}


@lru_cache
def load_fee_data(path: Path = FEE_SCHEDULE_FILE) -> tuple[dict[str, Any], ...]:
    """Return the items of a fee schedule data file, checked."""
    items = json.loads(path.read_text(encoding="utf-8"))["items"]
    for item in items:
        _check_fields(item, code=item["code"])
    return tuple(items)


def ensure_fee_schedule(db_session: Session) -> int:
    """Seed the schedule from the data file when the table is empty.

    Return the number of items added (0 when the schedule already exists).
    """
    present = db_session.execute(select(func.count(FeeItem.id))).scalar_one()
    if present:
        return 0
    lock_for_seeding(db_session)
    if db_session.execute(select(func.count(FeeItem.id))).scalar_one():
        return 0  # seeded by another transaction while this one waited
    now = utcnow()
    items = load_fee_data()
    for item in items:
        db_session.add(FeeItem(**item, created_at=now, updated_at=now))
    db_session.flush()
    audit.record(
        db_session,
        audit.SYSTEM,
        "fee.seed",
        "fee_schedule",
        FEE_SCHEDULE_FILE.name,
        detail={"codes": [item["code"] for item in items]},
    )
    return len(items)


def list_fees(db_session: Session, *, include_inactive: bool = True) -> list[FeeItem]:
    ensure_fee_schedule(db_session)
    query = select(FeeItem).order_by(FeeItem.code)
    if not include_inactive:
        query = query.where(FeeItem.active.is_(True))
    return list(db_session.execute(query).scalars())


def find_fee(db_session: Session, code: str) -> FeeItem | None:
    ensure_fee_schedule(db_session)
    return db_session.execute(
        select(FeeItem).where(FeeItem.code == code)
    ).scalar_one_or_none()


def get_fee(db_session: Session, code: str) -> FeeItem:
    """Return the fee item ``code``; 404 naming the code when there is none."""
    item = find_fee(db_session, code)
    if item is None:
        raise NotFound(
            f"fee code {code!r} is not in the fee schedule; add it under "
            "/billing/fees or pick an existing code",
            field="fee_code",
            value=code,
        )
    return item


def fee_for_charge(db_session: Session, code: str, *, field: str) -> FeeItem:
    """Return the active fee item ``code`` to price a charge; 422 otherwise.

    ``field`` names the input that carried the code (for example
    ``procedure.fee_code``), so the error points at it.
    """
    item = find_fee(db_session, code)
    if item is None:
        raise DomainError(
            f"fee code {code!r} is not in the fee schedule, so the charge cannot "
            "be priced; add the code to the fee schedule or correct the "
            "procedure's fee code",
            field=field,
            value=code,
        )
    if not item.active:
        raise DomainError(
            f"fee code {code!r} is inactive in the fee schedule; reactivate it "
            "or correct the procedure's fee code",
            field=field,
            value=code,
        )
    return item


def _check_fields(fields: Mapping[str, Any], *, code: str) -> None:
    """Raise ``DomainError`` naming the first field with a value out of range."""
    for name in ("unit_price", "view_price"):
        value = fields.get(name)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise DomainError(
                f"{name} of fee {code!r} is {value!r}; prices are whole minor "
                "units (pence, cents) and cannot be negative",
                field=name,
                value=value,
            )
    rate = fields.get("tax_rate")
    if rate is not None and (
        not isinstance(rate, int) or not 0 <= rate <= MAX_TAX_RATE
    ):
        raise DomainError(
            f"tax_rate of fee {code!r} is {rate!r}; give hundredths of a percent "
            f"between 0 and {MAX_TAX_RATE} (2000 is 20 %)",
            field="tax_rate",
            value=rate,
        )
    description = fields.get("description")
    if description is not None and not str(description).strip():
        raise DomainError(
            f"description of fee {code!r} is empty; describe the service",
            field="description",
            value=description,
        )


def _check_code(code: str) -> None:
    if len(code) > FEE_CODE_MAX or not FEE_CODE_PATTERN.match(code):
        raise DomainError(
            f"fee code {code!r} is not valid; use up to {FEE_CODE_MAX} capital "
            "letters, digits and hyphens, starting with a letter (e.g. 'RAD-FET')",
            field="code",
            value=code,
        )


def create_fee(
    db_session: Session, actor: audit.Actor, *, code: str, **fields: Any
) -> FeeItem:
    """Add a fee item; 409 when the code exists already."""
    _check_code(code)
    _check_fields(fields, code=code)
    if find_fee(db_session, code) is not None:
        raise Conflict(
            f"fee code {code!r} exists already; change it with PATCH "
            f"/api/v1/fees/{code}",
            field="code",
            value=code,
        )
    now = utcnow()
    item = FeeItem(code=code, created_at=now, updated_at=now)
    for name in EDITABLE_FIELDS:
        if fields.get(name) is not None:
            setattr(item, name, fields[name])
    db_session.add(item)
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "fee.create",
        "fee_item",
        code,
        detail={name: getattr(item, name) for name in EDITABLE_FIELDS},
    )
    return item


def update_fee(
    db_session: Session, actor: audit.Actor, code: str, **fields: Any
) -> FeeItem:
    """Change a fee item. Charges already posted keep the prices they had."""
    item = get_fee(db_session, code)
    _check_fields(fields, code=code)
    changes: dict[str, Any] = {}
    for name in EDITABLE_FIELDS:
        if name in fields and fields[name] is not None:
            if getattr(item, name) != fields[name]:
                changes[name] = {"from": getattr(item, name), "to": fields[name]}
                setattr(item, name, fields[name])
    if changes:
        item.updated_at = utcnow()
        db_session.flush()
        audit.record(db_session, actor, "fee.update", "fee_item", code, detail=changes)
    return item


# --------------------------------------------------------------------------
# Practice billing settings
# --------------------------------------------------------------------------


def get_setting(db_session: Session, name: str) -> str:
    row = db_session.get(BillingSetting, name)
    return row.value if row is not None else DEFAULT_SETTINGS[name]


def extra_views_policy(db_session: Session) -> ExtraViewsPolicy:
    """Return whether views received beyond the order are charged or flagged."""
    return ExtraViewsPolicy(get_setting(db_session, EXTRA_VIEWS_POLICY))


def set_extra_views_policy(
    db_session: Session, actor: audit.Actor, value: str
) -> ExtraViewsPolicy:
    try:
        policy = ExtraViewsPolicy(value)
    except ValueError:
        choices = ", ".join(repr(p.value) for p in ExtraViewsPolicy)
        raise DomainError(
            f"extra_views_policy {value!r} is not a policy; use one of {choices}",
            field=EXTRA_VIEWS_POLICY,
            value=value,
        ) from None
    row = db_session.get(BillingSetting, EXTRA_VIEWS_POLICY)
    previous = row.value if row is not None else DEFAULT_SETTINGS[EXTRA_VIEWS_POLICY]
    if row is None:
        row = BillingSetting(name=EXTRA_VIEWS_POLICY, value=policy.value)
        db_session.add(row)
    row.value = policy.value
    row.updated_at = utcnow()
    row.updated_by_id = actor.user_id
    db_session.flush()
    audit.record(
        db_session,
        actor,
        "billing.setting",
        "billing_setting",
        EXTRA_VIEWS_POLICY,
        detail={"from": previous, "to": policy.value},
    )
    return policy
