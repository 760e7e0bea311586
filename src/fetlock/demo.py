"""The demo practice: staff accounts, owners, horses, visits and orders."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from fetlock.auth.models import Role, User
from fetlock.auth.service import create_user
from fetlock.config import Settings

logger = logging.getLogger(__name__)

# (username, full name, role); every account gets the same demo password.
DEMO_STAFF = (
    ("admin", "Practice Administrator", Role.ADMIN),
    ("vet", "Dr Sarah Whitfield", Role.VETERINARIAN),
    ("vet2", "Dr Tomás Ibáñez", Role.VETERINARIAN),
    ("vet3", "Dr Aoife Brennan", Role.VETERINARIAN),
    ("radiologist", "Dr Jürgen Falk", Role.RADIOLOGIST),
    ("tech", "Kelly Marsh", Role.TECHNICIAN),
    ("reception", "Priya Nair", Role.RECEPTION),
)


def seed_demo(db_session: Session, settings: Settings, *, password: str) -> bool:
    """Create the demo practice once; return False when it already exists."""
    if db_session.execute(select(User).where(User.username == "vet")).first():
        return False
    users = {
        username: create_user(
            db_session, username=username, full_name=name, role=role, password=password
        )
        for username, name, role in DEMO_STAFF
    }
    from fetlock.practice.demo import seed_practice

    seed_practice(db_session, settings, users)

    from fetlock.imaging.demo import seed_imaging

    seed_imaging(db_session, settings, users)

    from fetlock.reporting.demo import seed_reporting

    seed_reporting(db_session, settings, users)

    # Billing last: it issues older visits' drafts once every order exists.
    from fetlock.billing.demo import seed_billing

    seed_billing(db_session, settings, users)
    logger.info("demo practice seeded")
    return True
