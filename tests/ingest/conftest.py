"""Fixtures for ingest tests: real DICOM files with fresh UIDs, a clinic, a worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.ingest.builders import (
    ACTOR,
    DR_STATION,
    MODALITY,
    Clinic,
    build_clinic,
    write_instance,
)

from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.jobs.worker import Worker
from fetlock.storage import LocalBlobStore, get_blob_store

__all__ = ["ACTOR", "DR_STATION", "MODALITY", "Clinic", "MakeInstance"]


@pytest.fixture
def clinic(database: Database, settings: Settings) -> Clinic:
    return build_clinic(database, settings)


@pytest.fixture
def blobs(settings: Settings) -> LocalBlobStore:
    return get_blob_store(settings)


@pytest.fixture
def worker(database: Database, settings: Settings) -> Worker:
    """A job worker that tests drive with ``run_pending()``."""
    return Worker(database, settings)


MakeInstance = Callable[..., Path]


@pytest.fixture
def make_instance(tmp_path: Path) -> Iterator[MakeInstance]:
    counter = iter(range(1_000_000))

    def make(source: str = "CT_small.dcm", **kwargs: object) -> Path:
        return write_instance(
            tmp_path / "in" / f"{next(counter)}.dcm", source, **kwargs
        )

    yield make
