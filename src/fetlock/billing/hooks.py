"""Billing reactions to imaging events, called by the imaging services.

Each hook runs inside the caller's transaction, so a charge is posted (or
reversed) exactly when the order change commits, and never without it. A hook
that cannot price or split a charge (unknown fee code, owners' shares that do
not add up to 100 %) raises ``DomainError``, which rolls the order change back
with it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fetlock.audit.service import Actor
from fetlock.billing import service


def on_order_created(db_session: Session, order: Any, actor: Actor) -> None:
    """Post the order's charge lines to its visit."""
    service.post_order_charges(db_session, actor, order)


def on_order_edited(db_session: Session, order: Any, actor: Actor) -> None:
    """Re-price the order's charges after its views changed before acquisition."""
    service.reprice_order(db_session, actor, order)


def on_order_cancelled(db_session: Session, order: Any, actor: Actor) -> None:
    """Reverse (or keep, once images exist) the order's charges."""
    service.cancel_order_charges(db_session, actor, order)


def on_study_received(db_session: Session, study: Any, actor: Actor) -> None:
    """Note a received or newly linked study for views-beyond-order billing."""
    service.study_received(db_session, actor, study)
