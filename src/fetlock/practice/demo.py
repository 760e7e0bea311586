"""Demo owners, horses, ownership, visits and notes."""

from __future__ import annotations

from sqlalchemy.orm import Session

from fetlock.auth.models import User
from fetlock.config import Settings


def seed_practice(
    db_session: Session, settings: Settings, users: dict[str, User]
) -> None:
    """Create the demo clients and horses."""
