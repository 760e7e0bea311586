"""DCMTK as the modality: order on the chart, then echoscu and findscu -W.

A vet orders a study through the web API; the DR station (DCMTK's ``findscu``
with the DR station's AE title) then finds it on Fetlock's worklist with the
equine patient attributes. ``findscu -X`` writes each response to a file that
pydicom reads for the checks.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from tests.imaging_testdata import (
    DR_STATION,
    US_STATION,
    EquinePractice,
    build_practice,
    dicom_settings,
    start_dicom,
)

from fetlock.auth.models import Role
from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.dicom.server import DicomService

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(
        shutil.which("findscu") is None or shutil.which("echoscu") is None,
        reason="DCMTK's findscu and echoscu are not installed",
    ),
]

# DCMTK tools wait for a full TCP segment otherwise.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}

# Keys a DR console typically requests, with SPS keys in the sequence item.
WORKLIST_KEYS = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientSexNeutered",
    "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence",
    "PatientBreedDescription",
    "PatientBreedCodeSequence",
    "BreedRegistrationSequence",
    "ResponsiblePerson",
    "ResponsiblePersonRole",
    "ResponsibleOrganization",
    "OtherPatientIDsSequence",
    "AccessionNumber",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "StudyInstanceUID",
    "ReferringPhysicianName",
    "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepSequence[0].Modality",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription",
    "ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence",
)


@pytest.fixture
def practice(database: Database) -> EquinePractice:
    with database.session() as db_session:
        return build_practice(db_session)


@pytest.fixture
def dicom(settings: Settings, database: Database) -> Iterator[DicomService]:
    service = start_dicom(dicom_settings(settings), database)
    yield service
    service.stop()


def findscu(
    port: int, out_dir: Path, keys: list[str], *, calling_ae: str = DR_STATION
) -> tuple[subprocess.CompletedProcess[str], list[Dataset]]:
    """Run ``findscu -W`` and return the process and the response datasets."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "findscu",
        "-v",
        "-W",
        "-aet",
        calling_ae,
        "-aec",
        "FETLOCK",
        "-X",
        "-od",
        str(out_dir),
    ]
    for key in keys:
        args += ["-k", key if "=" in key else f"{key}="]
    args += ["127.0.0.1", str(port)]
    result = subprocess.run(
        args, env=DCMTK_ENV, capture_output=True, text=True, timeout=60, check=False
    )
    responses = [dcmread(path) for path in sorted(out_dir.glob("rsp*.dcm"))]
    return result, responses


def test_echoscu_verifies_fetlock(
    dicom: DicomService, practice: EquinePractice
) -> None:
    result = subprocess.run(
        [
            "echoscu",
            "-aet",
            DR_STATION,
            "-aec",
            "FETLOCK",
            "127.0.0.1",
            str(dicom.port),
        ],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def test_echoscu_from_unknown_ae_is_rejected(
    dicom: DicomService, practice: EquinePractice
) -> None:
    result = subprocess.run(
        ["echoscu", "-aet", "ROGUE", "-aec", "FETLOCK", "127.0.0.1", str(dicom.port)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stderr


def test_chart_order_appears_in_findscu_worklist(  # type: ignore[no-untyped-def]
    dicom: DicomService,
    practice: EquinePractice,
    login_as,
    settings: Settings,
    tmp_path: Path,
) -> None:
    vet = login_as(Role.VETERINARIAN, "vet-dcmtk")
    start = dt.datetime.now(settings.zone).replace(hour=23, minute=15, second=0)
    ordered = vet.post(
        f"/api/v1/horses/{practice.monty.id}/orders",
        json={
            "procedure_code": "RAD-NAV",
            "limb": "LF",
            "station_ae_title": DR_STATION,
            "scheduled_start": start.replace(tzinfo=None).isoformat(),
            "clinical_history": "LF lameness",
        },
    )
    assert ordered.status_code == 201, ordered.text
    order = ordered.json()
    today = start.strftime("%Y%m%d")

    result, responses = findscu(
        dicom.port,
        tmp_path / "dr",
        [
            *WORKLIST_KEYS,
            f"ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate={today}",
            "ScheduledProcedureStepSequence[0].Modality=DX",
        ],
    )

    assert result.returncode == 0, result.stderr
    assert len(responses) == 1, result.stderr
    ds = responses[0]
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == "Müller^Monty"
    assert ds.PatientID == practice.monty.patient_id
    assert ds.AccessionNumber == order["accession_number"]
    assert ds.StudyInstanceUID == order["study_instance_uid"]
    assert ds.RequestedProcedureID == order["requested_procedure_id"]
    assert ds.PatientBirthDate == "20140502"
    assert ds.PatientSex == "M"
    assert ds.PatientSexNeutered == "ALTERED"
    assert ds.PatientSpeciesDescription == "Horse"
    assert ds.PatientSpeciesCodeSequence[0].CodeValue == "35354009"
    assert ds.PatientSpeciesCodeSequence[0].CodingSchemeDesignator == "SCT"
    assert ds.PatientSpeciesCodeSequence[0].CodeMeaning == "Equus caballus"
    assert ds.PatientBreedDescription == "Hanoverian"
    assert ds.PatientBreedCodeSequence[0].CodeValue == "66168008"
    assert ds.BreedRegistrationSequence[0].BreedRegistrationNumber == "DE 331310412514"
    registry = ds.BreedRegistrationSequence[0].BreedRegistryCodeSequence[0]
    assert registry.CodeMeaning == "Hanoverian Society"
    assert str(ds.ResponsiblePerson) == "Müller^Anna"
    assert ds.ResponsiblePersonRole == "OWNER"
    issuers = {item.IssuerOfPatientID for item in ds.OtherPatientIDsSequence}
    assert issuers == {"MICROCHIP", "UELN", "PASSPORT", "Hanoverian Society"}
    step = ds.ScheduledProcedureStepSequence
    assert len(step) == 1
    assert step[0].ScheduledStationAETitle == DR_STATION
    assert step[0].ScheduledProcedureStepStartDate == today
    assert step[0].ScheduledProcedureStepStartTime.startswith("2315")
    assert step[0].Modality == "DX"
    assert (
        step[0].ScheduledProcedureStepID
        == order["scheduled_procedure_steps"][0]["sps_id"]
    )
    assert [c.CodeValue for c in step[0].ScheduledProtocolCodeSequence] == [
        "LF-LM",
        "LF-D65Pr-PaDiO",
        "LF-PaPr-PaDiO",
    ]
    assert "Received Final Find Response (Success)" in result.stderr


def test_cancelled_chart_order_leaves_findscu_worklist(  # type: ignore[no-untyped-def]
    dicom: DicomService,
    practice: EquinePractice,
    login_as,
    tmp_path: Path,
) -> None:
    vet = login_as(Role.VETERINARIAN, "vet-dcmtk2")
    order = vet.post(
        f"/api/v1/horses/{practice.ballyhale_star.id}/orders",
        json={"procedure_code": "US-TEN", "limb": "RF", "station_ae_title": US_STATION},
    ).json()
    keys = [*WORKLIST_KEYS[:4], f"AccessionNumber={order['accession_number']}"]

    _, before = findscu(dicom.port, tmp_path / "before", keys, calling_ae=US_STATION)
    vet.post(f"/api/v1/orders/{order['id']}/cancel", json={"reason": "rescheduled"})
    result, after = findscu(dicom.port, tmp_path / "after", keys, calling_ae=US_STATION)

    assert [str(ds.PatientName) for ds in before] == ["Ballyhale Stud^Star"]
    assert result.returncode == 0, result.stderr
    assert after == []


def test_findscu_malformed_date_gets_failure(
    dicom: DicomService, practice: EquinePractice, tmp_path: Path
) -> None:
    result, responses = findscu(
        dicom.port,
        tmp_path / "bad",
        [
            "PatientName",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=2026-12-01",
        ],
    )

    assert responses == []
    assert "Final Find Response (Error: DataSetDoesNotMatchSOPClass)" in result.stderr
