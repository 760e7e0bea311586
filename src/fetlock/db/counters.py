"""Named counters for identifiers that are allocated once and never reused.

Patient IDs, accession numbers and invoice numbers come from here. A counter
row is locked for the rest of the transaction, so two nodes never hand out the
same value; a value whose transaction rolls back was never seen by anyone.
"""

from __future__ import annotations

from sqlalchemy import Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from fetlock.db.base import Base


class Counter(Base):
    __tablename__ = "counter"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_value: Mapped[int] = mapped_column(Integer, nullable=False)


def next_value(db_session: Session, name: str, *, start: int = 1) -> int:
    """Allocate and return the next value of counter ``name``."""
    counter = db_session.execute(
        select(Counter).where(Counter.name == name).with_for_update()
    ).scalar_one_or_none()
    if counter is None:
        counter = Counter(name=name, next_value=start)
        db_session.add(counter)
        db_session.flush()
    value = counter.next_value
    counter.next_value = value + 1
    db_session.flush()
    return value
