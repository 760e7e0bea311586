"""Reference data seeded by two processes at once on a new database."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from fetlock.billing.fees import ensure_fee_schedule
from fetlock.billing.models import FeeItem
from fetlock.db.session import Database
from fetlock.imaging.models import Procedure
from fetlock.imaging.service import ensure_catalog
from fetlock.reporting import vocabulary
from fetlock.reporting.models import ReportTerm


def test_concurrent_first_use_seeds_once(database: Database) -> None:
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def seed() -> None:
        try:
            start.wait(timeout=10)
            with database.session() as db_session:
                ensure_fee_schedule(db_session)
                ensure_catalog(db_session)
                vocabulary.ensure_loaded(db_session)
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=seed) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    with database.session() as db_session:
        fees = db_session.scalar(select(func.count(FeeItem.id)))
        procedures = db_session.scalar(select(func.count(Procedure.id)))
        terms = db_session.scalar(select(func.count(ReportTerm.id)))
        distinct_fees = db_session.scalar(
            select(func.count(func.distinct(FeeItem.code)))
        )
    assert fees and fees == distinct_fees
    assert procedures
    assert terms
