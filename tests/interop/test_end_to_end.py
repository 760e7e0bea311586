"""One study from order to chart, with DCMTK and pynetdicom as the DR station.

A vet orders a navicular series on Monty's chart; the DR console takes the
item from the worklist (``findscu -W``), reports MPPS IN PROGRESS, sends its
radiographs with ``storescu`` under a Study Instance UID it made up itself
but with the worklist's Accession Number, and reports MPPS COMPLETED. The
chart's studies fragment then shows the study, its views and its thumbnail
without anyone touching it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
)
from tests.imaging_testdata import (
    DR_STATION,
    EquinePractice,
    build_practice,
    dicom_settings,
    start_dicom,
)
from tests.ingest.builders import write_instance

from fetlock.auth.models import Role
from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.dicom.server import DicomService
from fetlock.jobs.worker import Worker

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(
        shutil.which("findscu") is None or shutil.which("storescu") is None,
        reason="DCMTK's findscu and storescu are needed",
    ),
]

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
# What the plate software writes in (0018,1400) for each view it takes.
VIEWS_TAKEN = ["LF LM", "LF D65Pr-PaDiO", "LF PaPr-PaDiO"]


@pytest.fixture
def practice(database: Database) -> EquinePractice:
    with database.session() as db_session:
        return build_practice(db_session)


@pytest.fixture
def dicom(settings: Settings, database: Database) -> Iterator[DicomService]:
    service = start_dicom(dicom_settings(settings), database)
    yield service
    service.stop()


@pytest.fixture
def worker(settings: Settings, database: Database) -> Iterator[Worker]:
    """The job worker, running as it does inside ``fetlock serve``."""
    running = Worker(database, settings)
    running.start()
    yield running
    running.stop()


def _worklist_item(port: int, out_dir: Path, accession: str) -> Dataset:
    out_dir.mkdir(parents=True)
    keys = [
        f"AccessionNumber={accession}",
        "PatientName=",
        "PatientID=",
        "StudyInstanceUID=",
        "RequestedProcedureID=",
        "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID=",
        "ScheduledProcedureStepSequence[0].Modality=",
    ]
    args = ["findscu", "-W", "-aet", DR_STATION, "-aec", "FETLOCK", "-X", "-od",
            str(out_dir)]  # fmt: skip
    for key in keys:
        args += ["-k", key]
    result = subprocess.run(
        [*args, "127.0.0.1", str(port)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    responses = [pydicom.dcmread(p) for p in sorted(out_dir.glob("rsp*.dcm"))]
    assert len(responses) == 1, f"expected one worklist item, got {len(responses)}"
    return responses[0]


def _mpps(port: int) -> AE:
    ae = AE(ae_title=DR_STATION)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    return ae


def _mpps_in_progress(item: Dataset) -> Dataset:
    sps = item.ScheduledProcedureStepSequence[0]
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepID = "PPS-E2E"
    ds.PerformedStationAETitle = DR_STATION
    now = dt.datetime.now()
    ds.PerformedProcedureStepStartDate = now.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = now.strftime("%H%M%S")
    ds.Modality = "DX"
    ds.PatientName = item.PatientName
    ds.PatientID = item.PatientID
    step = Dataset()
    step.AccessionNumber = item.AccessionNumber
    step.StudyInstanceUID = item.StudyInstanceUID
    step.RequestedProcedureID = item.RequestedProcedureID
    step.ScheduledProcedureStepID = sps.ScheduledProcedureStepID
    ds.ScheduledStepAttributesSequence = [step]
    ds.PerformedSeriesSequence = []
    return ds


def _mpps_completed(series_uid: str, images: list[Path]) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    now = dt.datetime.now()
    ds.PerformedProcedureStepEndDate = now.strftime("%Y%m%d")
    ds.PerformedProcedureStepEndTime = now.strftime("%H%M%S")
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    series.PerformingPhysicianName = ""
    series.ProtocolName = "Navicular"
    series.OperatorsName = ""
    series.SeriesDescription = "Navicular LF"
    series.RetrieveAETitle = ""
    references = []
    for path in images:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        reference = Dataset()
        reference.ReferencedSOPClassUID = header.SOPClassUID
        reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
        references.append(reference)
    series.ReferencedImageSequence = references
    series.ReferencedNonImageCompositeSOPInstanceSequence = []
    ds.PerformedSeriesSequence = [series]
    return ds


def test_order_worklist_mpps_images_reach_the_chart_by_themselves(
    practice: EquinePractice,
    dicom: DicomService,
    worker: Worker,
    login_as,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    # The vet orders the study on Monty's chart.
    vet = login_as(Role.VETERINARIAN)
    response = vet.post(
        f"/api/v1/horses/{practice.monty.id}/orders",
        json={
            "procedure_code": "RAD-NAV",
            "limb": "LF",
            "station_ae_title": DR_STATION,
        },
    )
    assert response.status_code == 201, response.text
    order = response.json()
    chart = f"/horses/{practice.monty.id}/studies-section"
    assert "No studies received yet" in vet.get(chart).text

    # The DR console takes the worklist item and starts the procedure.
    item = _worklist_item(dicom.port, tmp_path / "worklist", order["accession_number"])
    assert item.StudyInstanceUID == order["study_instance_uid"]
    mpps_uid = generate_uid()
    assoc = _mpps(dicom.port).associate("127.0.0.1", dicom.port, ae_title="FETLOCK")
    assert assoc.is_established
    try:
        status, _ = assoc.send_n_create(
            _mpps_in_progress(item), ModalityPerformedProcedureStep, mpps_uid
        )
        assert status.Status == 0x0000
    finally:
        assoc.release()

    # It takes three views under a Study Instance UID of its own making.
    study_uid, series_uid = generate_uid(), generate_uid()
    images = [
        write_instance(
            tmp_path / "plate" / f"IM{number:04d}",
            "RG1_UNCR.dcm" if number == 1 else "CT_small.dcm",
            study_uid=study_uid,
            series_uid=series_uid,
            SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1",
            Modality="DX",
            PatientID=item.PatientID,
            PatientName=item.PatientName,
            AccessionNumber=item.AccessionNumber,
            InstanceNumber=number,
            AcquisitionDeviceProcessingDescription=view,
        )
        for number, view in enumerate(VIEWS_TAKEN, start=1)
    ]
    for path in images:
        ds = pydicom.dcmread(path)
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.save_as(path, enforce_file_format=True)
    sent = subprocess.run(
        ["storescu", "-aet", DR_STATION, "-aec", "FETLOCK", "127.0.0.1",
         str(dicom.port), *map(str, images)],
        env=DCMTK_ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr

    # ... and reports the procedure done.
    assoc = _mpps(dicom.port).associate("127.0.0.1", dicom.port, ae_title="FETLOCK")
    try:
        status, _ = assoc.send_n_set(
            _mpps_completed(series_uid, images),
            ModalityPerformedProcedureStep,
            mpps_uid,
        )
        assert status.Status == 0x0000
    finally:
        assoc.release()

    # The chart shows the study with its thumbnail, nobody having clicked.
    deadline = time.monotonic() + 60
    fragment = vet.get(chart).text
    while '<img class="study-thumbnail"' not in fragment:
        assert time.monotonic() < deadline, f"no thumbnail on the chart:\n{fragment}"
        time.sleep(0.2)
        fragment = vet.get(chart).text
    assert f'data-study-uid="{study_uid}"' in fragment
    assert '<span class="image-count">3</span> images' in fragment
    assert "Views: 3 of 3 ordered" in fragment
    assert "Missing" not in fragment
    assert "completed" in fragment
    assert "DX" in fragment
    thumbnail = fragment.split('<img class="study-thumbnail" src="', 1)[1].split('"')[0]
    image = vet.get(thumbnail)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/jpeg"
