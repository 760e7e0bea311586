"""Fixtures for DICOM tests: a small equine practice and a running DICOM service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.imaging_testdata import (
    EquinePractice,
    build_practice,
    dicom_settings,
    start_dicom,
)

from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.dicom.server import DicomService


@pytest.fixture
def practice(database: Database) -> EquinePractice:
    """Committed practice data, visible to the DICOM service's own sessions."""
    with database.session() as db_session:
        return build_practice(db_session)


@pytest.fixture
def scp_settings(settings: Settings) -> Settings:
    return dicom_settings(settings)


@pytest.fixture
def dicom(scp_settings: Settings, database: Database) -> Iterator[DicomService]:
    """Fetlock's DICOM service listening on a free loopback port."""
    service = start_dicom(scp_settings, database)
    yield service
    service.stop()
