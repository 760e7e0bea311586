"""MPPS N-CREATE and N-SET against Fetlock's DICOM service, with pynetdicom."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
)
from sqlalchemy import select
from tests.imaging_testdata import DR_STATION, EquinePractice, place_order

from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.dicom.server import DicomService
from fetlock.imaging import service
from fetlock.imaging.models import ImagingOrder, MppsInstance, OrderStatus


@pytest.fixture
def order(
    practice: EquinePractice, database: Database, scp_settings: Settings
) -> ImagingOrder:
    with database.session() as db_session:
        return place_order(db_session, scp_settings, practice.monty, practice.vet)


@pytest.fixture
def assoc(dicom: DicomService, practice: EquinePractice) -> Iterator[Association]:
    ae = AE(ae_title=DR_STATION)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    association = ae.associate("127.0.0.1", dicom.port, ae_title="FETLOCK")
    assert association.is_established
    yield association
    association.release()


def in_progress(order: ImagingOrder | None, *, accession: str | None = None) -> Dataset:
    """An N-CREATE attribute list as a DR console sends it."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = DR_STATION
    ds.PerformedProcedureStepStartDate = "20261204"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.Modality = "DX"
    ds.PatientName = "Müller^Monty"
    ds.PatientID = "FL000001"
    step = Dataset()
    step.AccessionNumber = accession or (order.accession_number if order else "")
    step.StudyInstanceUID = order.study_instance_uid if order else generate_uid()
    step.ScheduledProcedureStepID = order.steps[0].sps_id if order else ""
    step.RequestedProcedureID = order.requested_procedure_id if order else ""
    ds.ScheduledStepAttributesSequence = [step]
    ds.PerformedSeriesSequence = []
    return ds


def final(status: str) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261204"
    ds.PerformedProcedureStepEndTime = "103000"
    return ds


def order_status(database: Database, order_id: int) -> str:
    with database.session() as db_session:
        return service.get_order(db_session, order_id).status


def create(assoc: Association, ds: Dataset, uid: str | None) -> int:
    status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
    return int(status.Status)


def update(assoc: Association, ds: Dataset, uid: str) -> int:
    status, _ = assoc.send_n_set(ds, ModalityPerformedProcedureStep, uid)
    return int(status.Status)


def test_mpps_moves_order_to_in_progress_then_completed(
    assoc: Association, order: ImagingOrder, database: Database
) -> None:
    uid = generate_uid()

    assert create(assoc, in_progress(order), uid) == 0x0000
    assert order_status(database, order.id) == OrderStatus.IN_PROGRESS

    assert update(assoc, final("COMPLETED"), uid) == 0x0000
    assert order_status(database, order.id) == OrderStatus.COMPLETED
    with database.session() as db_session:
        row = service.get_mpps(db_session, uid)
        assert row is not None
        assert row.status == "COMPLETED"
        assert row.order_id == order.id
        assert row.unmatched is False
        assert row.ended_at is not None


def test_mpps_after_images_keeps_the_modality_start_time(
    assoc: Association, order: ImagingOrder, database: Database
) -> None:
    # The first images arrived first and started the order at "now".
    with database.session() as db_session:
        row = service.get_order(db_session, order.id)
        row.status = OrderStatus.IN_PROGRESS
        row.started_at = dt.datetime.now(dt.UTC)
    uid = generate_uid()

    assert create(assoc, in_progress(order), uid) == 0x0000
    assert update(assoc, final("COMPLETED"), uid) == 0x0000

    with database.session() as db_session:
        row = service.get_order(db_session, order.id)
        mpps = service.get_mpps(db_session, uid)
        assert mpps is not None
        assert row.status == OrderStatus.COMPLETED
        assert row.started_at == mpps.started_at
        assert row.ended_at is not None
        assert row.started_at <= row.ended_at


def test_mpps_discontinued_discontinues_order(
    assoc: Association, order: ImagingOrder, database: Database
) -> None:
    uid = generate_uid()
    assert create(assoc, in_progress(order), uid) == 0x0000

    assert update(assoc, final("DISCONTINUED"), uid) == 0x0000

    assert order_status(database, order.id) == OrderStatus.DISCONTINUED


def test_n_set_after_completed_is_processing_failure(
    assoc: Association, order: ImagingOrder, database: Database
) -> None:
    uid = generate_uid()
    assert create(assoc, in_progress(order), uid) == 0x0000
    assert update(assoc, final("COMPLETED"), uid) == 0x0000

    assert update(assoc, final("DISCONTINUED"), uid) == 0x0110

    assert order_status(database, order.id) == OrderStatus.COMPLETED


def test_n_create_must_be_in_progress(
    assoc: Association, order: ImagingOrder, database: Database
) -> None:
    ds = in_progress(order)
    ds.PerformedProcedureStepStatus = "COMPLETED"

    assert create(assoc, ds, generate_uid()) == 0x0106
    assert order_status(database, order.id) == OrderStatus.SCHEDULED


def test_duplicate_n_create_rejected(assoc: Association, order: ImagingOrder) -> None:
    uid = generate_uid()
    assert create(assoc, in_progress(order), uid) == 0x0000

    assert create(assoc, in_progress(order), uid) == 0x0111


def test_n_set_of_unknown_instance_rejected(assoc: Association) -> None:
    assert update(assoc, final("COMPLETED"), generate_uid()) == 0x0112


def test_n_create_without_uid_gets_one_assigned(
    assoc: Association,
    order: ImagingOrder,
    database: Database,
    scp_settings: Settings,
) -> None:
    assert create(assoc, in_progress(order), None) == 0x0000

    with database.session() as db_session:
        rows = list(db_session.execute(select(MppsInstance)).scalars())
    assert len(rows) == 1
    assert rows[0].sop_instance_uid.startswith(scp_settings.uid_root)
    assert rows[0].order_id == order.id


def test_mpps_for_unknown_accession_is_kept_and_flagged(
    assoc: Association, practice: EquinePractice, database: Database
) -> None:
    uid = generate_uid()

    status = create(assoc, in_progress(None, accession="WALKIN-77"), uid)

    assert status == 0x0000
    with database.session() as db_session:
        flagged = service.unmatched_mpps(db_session)
        assert [row.sop_instance_uid for row in flagged] == [uid]
        assert flagged[0].accession_number == "WALKIN-77"
        assert flagged[0].order_id is None
        assert flagged[0].calling_ae_title == DR_STATION
    assert update(assoc, final("COMPLETED"), uid) == 0x0000


def test_mpps_links_by_study_uid_when_accession_missing(
    assoc: Association, order: ImagingOrder, database: Database
) -> None:
    ds = in_progress(order)
    step = ds.ScheduledStepAttributesSequence[0]
    step.AccessionNumber = ""
    step.ScheduledProcedureStepID = ""

    assert create(assoc, ds, generate_uid()) == 0x0000

    assert order_status(database, order.id) == OrderStatus.IN_PROGRESS
