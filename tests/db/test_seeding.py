"""Reference data seeded by two processes at once on a new database."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fetlock.billing.fees import ensure_fee_schedule
from fetlock.billing.models import FeeItem
from fetlock.db.session import Database
from fetlock.imaging.models import Procedure
from fetlock.imaging.service import ensure_catalog, seed_catalog
from fetlock.reporting import vocabulary
from fetlock.reporting.models import ReportTerm


def _fees_first(db_session: Session) -> None:
    ensure_fee_schedule(db_session)
    ensure_catalog(db_session)
    vocabulary.ensure_loaded(db_session)


def _catalog_first(db_session: Session) -> None:
    # As the demo and an order do: the catalog, then the fees.
    seed_catalog(db_session)
    ensure_fee_schedule(db_session)
    vocabulary.ensure_loaded(db_session)


@pytest.mark.parametrize(
    "orders",
    [(_fees_first, _fees_first), (_fees_first, _catalog_first)],
    ids=["same order", "opposite orders"],
)
def test_concurrent_first_use_seeds_once(
    database: Database, orders: tuple[Callable[[Session], None], ...]
) -> None:
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def seed(steps: Callable[[Session], None]) -> None:
        try:
            start.wait(timeout=10)
            with database.session() as db_session:
                steps(db_session)
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=seed, args=(steps,)) for steps in orders]
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


def test_start_up_seeds_reference_data(database: Database) -> None:
    from fetlock.server import seed_reference_data

    seed_reference_data(database)
    seed_reference_data(database)  # a second start adds nothing

    with database.session() as db_session:
        fees = db_session.scalar(select(func.count(FeeItem.id)))
        distinct_fees = db_session.scalar(
            select(func.count(func.distinct(FeeItem.code)))
        )
        assert fees and fees == distinct_fees
        assert db_session.scalar(select(func.count(Procedure.id)))
        assert db_session.scalar(select(func.count(ReportTerm.id)))
