"""Modality Worklist C-FIND against Fetlock's DICOM service, with pynetdicom."""

from __future__ import annotations

import datetime as dt

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityWorklistInformationFind,
)
from tests.imaging_testdata import (
    DR_STATION,
    LATIN1_STATION,
    US_STATION,
    EquinePractice,
    bulk_worklist,
    place_order,
)

from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.dicom.server import DicomService
from fetlock.imaging import service
from fetlock.imaging.schemas import OrderEdit

PENDING = 0xFF00
SUCCESS = 0x0000


def sps_query(**sps: object) -> Dataset:
    """A worklist identifier with the usual return keys and SPS ``sps`` keys."""
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = ""
    ds.AccessionNumber = ""
    ds.StudyInstanceUID = ""
    item = Dataset()
    item.ScheduledStationAETitle = ""
    item.ScheduledProcedureStepStartDate = ""
    item.ScheduledProcedureStepStartTime = ""
    item.Modality = ""
    for keyword, value in sps.items():
        setattr(item, keyword, value)
    ds.ScheduledProcedureStepSequence = [item]
    return ds


def find(
    dicom: DicomService,
    identifier: Dataset,
    *,
    calling_ae: str = DR_STATION,
    transfer_syntax: str | None = None,
) -> list[tuple[int, Dataset | None]]:
    """Send one C-FIND and return every (status, identifier) response."""
    ae = AE(ae_title=calling_ae)
    if transfer_syntax:
        ae.add_requested_context(ModalityWorklistInformationFind, transfer_syntax)
    else:
        ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", dicom.port, ae_title="FETLOCK")
    assert assoc.is_established, f"association from {calling_ae} was not accepted"
    responses = []
    try:
        for status, ds in assoc.send_c_find(
            identifier, ModalityWorklistInformationFind
        ):
            assert status is not None, "no response from the worklist SCP"
            responses.append((int(status.Status), ds, status))
    finally:
        assoc.release()
    return [(code, ds) for code, ds, _ in responses]


def matches_of(responses: list[tuple[int, Dataset | None]]) -> list[Dataset]:
    assert responses, "no C-FIND responses"
    final_status, final_identifier = responses[-1]
    assert final_status == SUCCESS
    assert final_identifier is None, "the final Success response carries no identifier"
    pending = [ds for status, ds in responses[:-1]]
    assert all(status == PENDING for status, _ in responses[:-1])
    assert all(ds is not None for ds in pending)
    return [ds for ds in pending if ds is not None]


@pytest.fixture
def orders(
    practice: EquinePractice, database: Database, scp_settings: Settings
) -> dict[str, str]:
    """Today: Monty navicular LF on DR, Star fetlock RF on DR, Żuk tendon US."""
    zone = scp_settings.zone
    today = dt.datetime.now(zone).replace(hour=23, minute=0, second=0, microsecond=0)
    with database.session() as db_session:
        nav = place_order(
            db_session, scp_settings, practice.monty, practice.vet, start=today
        )
        fet = place_order(
            db_session,
            scp_settings,
            practice.ballyhale_star,
            practice.vet,
            procedure_code="RAD-FET",
            limb="RF",
            start=today,
        )
        ten = place_order(
            db_session,
            scp_settings,
            practice.lukasz_pony,
            practice.vet,
            procedure_code="US-TEN",
            limb="LF",
            station=US_STATION,
            start=today,
        )
        accessions = {
            "nav": nav.accession_number,
            "fet": fet.accession_number,
            "ten": ten.accession_number,
        }
    return accessions


def test_worklist_item_carries_equine_patient(
    dicom: DicomService, orders: dict[str, str], practice: EquinePractice
) -> None:
    query = sps_query()
    for keyword in (
        "OtherPatientIDsSequence",
        "PatientSpeciesCodeSequence",
        "PatientBreedCodeSequence",
        "BreedRegistrationSequence",
        "RequestedProcedureCodeSequence",
    ):
        setattr(query, keyword, [])
    for keyword in (
        "PatientBirthDate",
        "PatientSex",
        "PatientSexNeutered",
        "PatientSpeciesDescription",
        "PatientBreedDescription",
        "ResponsiblePerson",
        "ResponsiblePersonRole",
        "ResponsibleOrganization",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
        "RequestedProcedurePriority",
        "ReferringPhysicianName",
    ):
        setattr(query, keyword, "")
    query.AccessionNumber = orders["nav"]

    found = matches_of(find(dicom, query))

    assert len(found) == 1
    ds = found[0]
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == "Müller^Monty"
    assert ds.PatientID == practice.monty.patient_id
    assert ds.PatientBirthDate == "20140502"
    assert ds.PatientSex == "M"
    assert ds.PatientSexNeutered == "ALTERED"
    assert ds.PatientSpeciesDescription == "Horse"
    species = ds.PatientSpeciesCodeSequence[0]
    assert (species.CodeValue, species.CodingSchemeDesignator) == ("35354009", "SCT")
    assert species.CodeMeaning == "Equus caballus"
    breed = ds.PatientBreedCodeSequence[0]
    assert (breed.CodeValue, breed.CodingSchemeDesignator) == ("66168008", "SCT")
    assert breed.CodeMeaning
    registration = ds.BreedRegistrationSequence[0]
    assert registration.BreedRegistrationNumber == "DE 331310412514"
    registry = registration.BreedRegistryCodeSequence[0]
    assert registry.CodeValue
    assert registry.CodingSchemeDesignator
    assert registry.CodeMeaning == "Hanoverian Society"
    other_ids = {
        item.IssuerOfPatientID: item.PatientID for item in ds.OtherPatientIDsSequence
    }
    assert other_ids["MICROCHIP"] == "826041000012345"
    assert other_ids["UELN"] == "826002000098765"
    assert other_ids["PASSPORT"] == "GBR-2014-00001"
    assert str(ds.ResponsiblePerson) == "Müller^Anna"
    assert ds.ResponsiblePersonRole == "OWNER"
    assert ds.ResponsibleOrganization in (None, "")
    assert ds.RequestedProcedurePriority == "ROUTINE"
    assert ds.RequestedProcedureCodeSequence[0].CodeValue == "RAD-NAV"
    assert str(ds.ReferringPhysicianName) == "Whitfield^Sarah^^Dr"


def test_required_sps_keys_returned_even_when_not_asked(
    dicom: DicomService, orders: dict[str, str]
) -> None:
    query = Dataset()
    query.AccessionNumber = orders["nav"]
    item = Dataset()
    item.Modality = "DX"
    item.ScheduledProtocolCodeSequence = []
    query.ScheduledProcedureStepSequence = [item]

    found = matches_of(find(dicom, query))

    assert len(found) == 1
    assert len(found[0].ScheduledProcedureStepSequence) == 1
    step = found[0].ScheduledProcedureStepSequence[0]
    assert step.ScheduledStationAETitle == DR_STATION
    assert step.Modality == "DX"
    assert len(step.ScheduledProcedureStepStartDate) == 8
    assert len(step.ScheduledProcedureStepStartTime) >= 4
    assert step.ScheduledProcedureStepID.startswith("SP")
    assert "ScheduledPerformingPhysicianName" in step
    codes = [code.CodeValue for code in step.ScheduledProtocolCodeSequence]
    assert codes == ["LF-LM", "LF-D65Pr-PaDiO", "LF-PaPr-PaDiO"]
    assert all(
        code.CodingSchemeDesignator for code in step.ScheduledProtocolCodeSequence
    )
    assert all(code.CodeMeaning for code in step.ScheduledProtocolCodeSequence)
    assert str(found[0].PatientName) == "Müller^Monty"


def test_organisation_owner_is_responsible_organization(
    dicom: DicomService, orders: dict[str, str]
) -> None:
    query = sps_query()
    query.ResponsibleOrganization = ""
    query.ResponsiblePerson = ""
    query.AccessionNumber = orders["fet"]

    found = matches_of(find(dicom, query))

    assert str(found[0].PatientName) == "Ballyhale Stud^Star"
    assert found[0].ResponsibleOrganization == "Ballyhale Stud"
    assert found[0].ResponsiblePerson in (None, "")


def test_ultrasound_query_with_zero_length_keys(
    dicom: DicomService, orders: dict[str, str]
) -> None:
    """An ultrasound sends nearly every key empty and its own AE title."""
    query = Dataset()
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "PatientWeight",
        "AccessionNumber",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
        "StudyInstanceUID",
        "ReferringPhysicianName",
        "AdmissionID",
        "MedicalAlerts",
        "Allergies",
        "PregnancyStatus",
        "OtherPatientIDs",
    ):
        setattr(query, keyword, None)
    query.ReferencedStudySequence = []
    query.RequestedProcedureCodeSequence = []
    item = Dataset()
    for keyword in (
        "ScheduledStationAETitle",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "Modality",
        "ScheduledPerformingPhysicianName",
        "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepID",
        "ScheduledStationName",
        "ScheduledProcedureStepLocation",
    ):
        setattr(item, keyword, None)
    item.ScheduledProtocolCodeSequence = []
    query.ScheduledProcedureStepSequence = [item]

    found = matches_of(find(dicom, query, calling_ae=US_STATION))

    # US_VET1 is configured to see only its own items when it names no station.
    assert [ds.AccessionNumber for ds in found] == [orders["ten"]]
    ds = found[0]
    assert str(ds.PatientName) == "Wiśniewski^Żuk"
    assert ds.ScheduledProcedureStepSequence[0].Modality == "US"
    assert ds.ReferencedStudySequence == []
    assert ds.RequestedProcedureCodeSequence[0].CodeValue == "US-TEN"


def test_calling_ae_filter_applies_only_when_configured(
    dicom: DicomService, orders: dict[str, str]
) -> None:
    everything = matches_of(find(dicom, sps_query(), calling_ae=DR_STATION))
    own_only = matches_of(find(dicom, sps_query(), calling_ae=US_STATION))
    named = matches_of(
        find(
            dicom, sps_query(ScheduledStationAETitle=DR_STATION), calling_ae=US_STATION
        )
    )

    assert sorted(ds.AccessionNumber for ds in everything) == sorted(orders.values())
    assert [ds.AccessionNumber for ds in own_only] == [orders["ten"]]
    assert sorted(ds.AccessionNumber for ds in named) == sorted(
        [orders["nav"], orders["fet"]]
    )


def test_date_ranges_open_at_either_end(
    dicom: DicomService, orders: dict[str, str], scp_settings: Settings
) -> None:
    today = dt.datetime.now(scp_settings.zone).date()
    yesterday = (today - dt.timedelta(days=1)).strftime("%Y%m%d")
    tomorrow = (today + dt.timedelta(days=1)).strftime("%Y%m%d")
    day = today.strftime("%Y%m%d")

    def count(date: str, time: str = "") -> int:
        query = sps_query(
            ScheduledProcedureStepStartDate=date, ScheduledProcedureStepStartTime=time
        )
        return len(matches_of(find(dicom, query)))

    assert count(day) == 3
    assert count(f"{yesterday}-") == 3
    assert count(f"-{tomorrow}") == 3
    assert count(f"{tomorrow}-") == 0
    assert count(f"-{yesterday}") == 0
    assert count(f"{yesterday}-{tomorrow}") == 3
    # Combined date and time: every order is at 23:00.
    assert count(day, "2200-2330") == 3
    assert count(day, "-2259") == 0
    assert count("", "2300") == 3


def test_patient_name_matching_ignores_case_and_accents(
    dicom: DicomService, orders: dict[str, str]
) -> None:
    def names(pattern: str) -> list[str]:
        query = sps_query()
        query.PatientName = pattern
        return [str(ds.PatientName) for ds in matches_of(find(dicom, query))]

    assert names("MULLER^MONTY") == ["Müller^Monty"]
    assert names("MÜLLER*") == ["Müller^Monty"]
    assert names("muller^*") == ["Müller^Monty"]
    assert names("*^ZUK") == ["Wiśniewski^Żuk"]
    assert names("BALLYHALE?STUD^STAR") == ["Ballyhale Stud^Star"]
    assert names("SMITH*") == []


def test_other_strings_match_case_sensitively(
    dicom: DicomService, orders: dict[str, str]
) -> None:
    upper = sps_query(ScheduledStationAETitle="US_VET*")
    lower = sps_query(ScheduledStationAETitle="us_vet*")

    assert len(matches_of(find(dicom, upper))) == 1
    assert matches_of(find(dicom, lower)) == []


def test_uid_list_matching(dicom: DicomService, orders: dict[str, str]) -> None:
    uids = []
    for accession in (orders["nav"], orders["fet"]):
        query = sps_query()
        query.AccessionNumber = accession
        uids.append(matches_of(find(dicom, query))[0].StudyInstanceUID)
    query = sps_query()
    query.StudyInstanceUID = uids

    found = matches_of(find(dicom, query))

    assert sorted(ds.StudyInstanceUID for ds in found) == sorted(uids)


def test_sequence_matching_on_protocol_code(
    dicom: DicomService, orders: dict[str, str]
) -> None:
    code = Dataset()
    code.CodeValue = "RF-FLM"
    query = sps_query(ScheduledProtocolCodeSequence=[code])

    found = matches_of(find(dicom, query))

    assert [ds.AccessionNumber for ds in found] == [orders["fet"]]


def test_query_under_implicit_vr_little_endian(
    dicom: DicomService, orders: dict[str, str]
) -> None:
    query = sps_query()
    query.PatientName = "MÜLLER^MONTY"

    found = matches_of(find(dicom, query, transfer_syntax=ImplicitVRLittleEndian))

    assert [str(ds.PatientName) for ds in found] == ["Müller^Monty"]


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_malformed_date_range_fails_without_items(
    dicom: DicomService, orders: dict[str, str]
) -> None:
    query = sps_query(ScheduledProcedureStepStartDate="2026-12-01")

    responses = find(dicom, query)

    assert len(responses) == 1
    status, identifier = responses[0]
    assert status == 0xA900
    assert identifier is None or "PatientName" not in identifier


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_malformed_date_failure_names_attribute(
    dicom: DicomService, orders: dict[str, str]
) -> None:
    ae = AE(ae_title=DR_STATION)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", dicom.port, ae_title="FETLOCK")
    assert assoc.is_established
    query = sps_query(ScheduledProcedureStepStartDate="20261301-20261302")
    statuses = [
        status
        for status, _ in assoc.send_c_find(query, ModalityWorklistInformationFind)
    ]
    assoc.release()

    assert len(statuses) == 1
    assert statuses[0].Status == 0xA900
    assert "(0040,0002)" in statuses[0].ErrorComment


def test_latin1_station_gets_latin1_responses(
    dicom: DicomService, orders: dict[str, str]
) -> None:
    query = sps_query()
    query.ResponsiblePerson = ""

    found = matches_of(find(dicom, query, calling_ae=LATIN1_STATION))

    assert {ds.SpecificCharacterSet for ds in found} == {"ISO_IR 100"}
    names = sorted(str(ds.PatientName) for ds in found)
    # Latin-1 has "ü" but neither "ś" nor "Ż" nor "Ł".
    assert names == ["Ballyhale Stud^Star", "Müller^Monty", "Wisniewski^Zuk"]
    people = {str(ds.ResponsiblePerson) for ds in found}
    assert "Wisniewski^Lukasz" in people


def test_cancelled_order_leaves_worklist(
    dicom: DicomService,
    orders: dict[str, str],
    database: Database,
) -> None:
    with database.session() as db_session:
        order = service.find_orders(db_session, accession_number=orders["nav"])[0]
        service.cancel_order(db_session, service_actor(), order, "owner declined")
    query = sps_query()
    query.AccessionNumber = orders["nav"]

    assert matches_of(find(dicom, query)) == []


def test_edited_order_updates_item_in_place(
    dicom: DicomService,
    orders: dict[str, str],
    database: Database,
    scp_settings: Settings,
) -> None:
    query = sps_query()
    query.AccessionNumber = orders["nav"]
    query.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID = ""
    query.ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence = []
    before = matches_of(find(dicom, query))[0]
    with database.session() as db_session:
        order = service.find_orders(db_session, accession_number=orders["nav"])[0]
        service.edit_order(
            db_session,
            service_actor(),
            scp_settings,
            order,
            OrderEdit(limb="RF", views=["RF-LM", "RF-D65Pr-PaDiO"]),
        )

    after = matches_of(find(dicom, query))[0]

    assert after.StudyInstanceUID == before.StudyInstanceUID
    step_before = before.ScheduledProcedureStepSequence[0]
    step_after = after.ScheduledProcedureStepSequence[0]
    assert step_after.ScheduledProcedureStepID == step_before.ScheduledProcedureStepID
    codes = [c.CodeValue for c in step_after.ScheduledProtocolCodeSequence]
    assert codes == ["RF-LM", "RF-D65Pr-PaDiO"]
    assert step_after.ScheduledProcedureStepDescription.endswith("RF")


def test_c_cancel_stops_pending_responses(
    dicom: DicomService,
    practice: EquinePractice,
    database: Database,
    scp_settings: Settings,
) -> None:
    start = dt.datetime.now(scp_settings.zone).replace(hour=23, minute=30)
    with database.session() as db_session:
        bulk_worklist(
            db_session,
            scp_settings,
            [practice.monty, practice.ballyhale_star],
            practice.vet,
            [start] * 300,
            station=practice.dr,
        )
    ae = AE(ae_title=DR_STATION)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", dicom.port, ae_title="FETLOCK")
    assert assoc.is_established
    statuses = []
    responses = assoc.send_c_find(
        sps_query(), ModalityWorklistInformationFind, msg_id=7
    )
    for status, _identifier in responses:
        statuses.append(int(status.Status))
        if len(statuses) == 2:
            assoc.send_c_cancel(7, query_model=ModalityWorklistInformationFind)
    assoc.release()

    assert statuses[-1] == 0xFE00
    assert len(statuses) < 301


def service_actor():  # type: ignore[no-untyped-def]
    from tests.imaging_testdata import ACTOR

    return ACTOR
