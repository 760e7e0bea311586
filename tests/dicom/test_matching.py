"""C-FIND matching rules, Latin-1 fallback and horse-to-DICOM mapping."""

from __future__ import annotations

import datetime as dt

import pytest

from fetlock.dicom import mapping
from fetlock.dicom.matching import (
    DateTimeRange,
    InvalidQuery,
    date_range,
    match_string,
    match_uid_list,
    match_value,
    time_range,
)
from fetlock.dicom.worklist import to_latin1
from fetlock.imaging.service import PatientRecord


@pytest.mark.parametrize(
    ("query", "value", "expected"),
    [
        ("", "anything", True),
        ("*", "anything", True),
        ("DR_STALL1", "DR_STALL1", True),
        ("DR_STALL1", "dr_stall1", False),
        ("DR_*", "DR_STALL1", True),
        ("DR_STALL?", "DR_STALL1", True),
        ("DR_STALL?", "DR_STALL12", False),
        ("US*", "DR_STALL1", False),
        ("DR_STALL1 ", "DR_STALL1", True),
    ],
)
def test_string_matching_is_case_sensitive(
    query: str, value: str, expected: bool
) -> None:
    assert match_string(query, value) is expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("MULLER^MONTY", True),
        ("Müller^Monty", True),
        ("müller*", True),
        ("*^MONTY", True),
        ("MUL?ER^*", True),
        ("MULLER^MONTY^^^", True),
        ("MULLER", False),
        ("SMITH*", False),
    ],
)
def test_patient_name_folds_case_and_accents(query: str, expected: bool) -> None:
    assert match_string(query, "Müller^Monty", person_name=True) is expected


def test_uid_list_matches_any_listed_uid() -> None:
    assert match_uid_list("1.2.3\\1.2.4", "1.2.4")
    assert not match_uid_list("1.2.3\\1.2.4", "1.2.5")
    assert match_uid_list("", "1.2.5")


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("20261204", dt.date(2026, 12, 4), dt.date(2026, 12, 4)),
        ("20261201-20261205", dt.date(2026, 12, 1), dt.date(2026, 12, 5)),
        ("-20261205", None, dt.date(2026, 12, 5)),
        ("20261201-", dt.date(2026, 12, 1), None),
    ],
)
def test_date_range_forms(
    value: str, low: dt.date | None, high: dt.date | None
) -> None:
    found = date_range(value, "ScheduledProcedureStepStartDate")

    assert found is not None
    assert found.low == low
    assert found.high == high


@pytest.mark.parametrize(
    "value",
    ["2026-12-01", "20261301", "20261205-20261201", "-", "2026120", "a-b", "1-2-3"],
)
def test_malformed_date_range_raises(value: str) -> None:
    with pytest.raises(InvalidQuery) as raised:
        date_range(value, "ScheduledProcedureStepStartDate")

    assert raised.value.comment.startswith("(0040,0002)")
    assert len(raised.value.comment) <= 64
    assert raised.value.tag == 0x00400002
    assert value in str(raised.value)


def test_time_upper_bound_covers_its_precision() -> None:
    found = time_range("-1700", "ScheduledProcedureStepStartTime")

    assert found is not None
    assert found.contains(dt.time(17, 0, 59))
    assert not found.contains(dt.time(17, 1))


def test_combined_date_time_range() -> None:
    window = DateTimeRange(
        date_range("20261201-20261203", "ScheduledProcedureStepStartDate"),
        time_range("0800-1700", "ScheduledProcedureStepStartTime"),
    )

    assert window.contains(dt.datetime(2026, 12, 2, 6, 0))
    assert window.contains(dt.datetime(2026, 12, 1, 8, 0))
    assert not window.contains(dt.datetime(2026, 12, 1, 7, 59))
    assert not window.contains(dt.datetime(2026, 12, 3, 17, 2))


def test_time_range_without_date_applies_every_day() -> None:
    window = DateTimeRange(None, time_range("0800-0900", "X"))

    assert window.contains(dt.datetime(2030, 1, 1, 8, 30))
    assert not window.contains(dt.datetime(2030, 1, 1, 9, 30))


def test_date_key_matching_on_items() -> None:
    assert match_value("PatientBirthDate", "DA", "20140101-", "20140502")
    assert not match_value("PatientBirthDate", "DA", "20150101-", "20140502")
    assert not match_value("PatientBirthDate", "DA", "20140101-", "")
    with pytest.raises(InvalidQuery):
        match_value("PatientBirthDate", "DA", "2014-", "20140502")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Müller^Monty", "Müller^Monty"),
        ("Wiśniewski^Żuk", "Wisniewski^Zuk"),
        ("Łukasz", "Lukasz"),
        ("Dvořák", "Dvorák"),
        ("馬", "?"),
    ],
)
def test_latin1_fallback(text: str, expected: str) -> None:
    converted = to_latin1(text)

    assert converted == expected
    converted.encode("latin-1")


def patient(**changes: object) -> PatientRecord:
    values: dict[str, object] = {
        "patient_id": "FL000001",
        "barn_name": "Monty",
        "registered_name": "Ballyhale Monarch",
        "species": "horse",
        "breed": "Irish Draught",
        "sex": "gelding",
        "date_of_birth": dt.date(2014, 5, 2),
        "microchip": "826041000012345",
        "ueln": None,
        "passport_number": None,
        "registry_name": None,
        "registry_number": None,
        "owner_kind": "person",
        "owner_family_name": "Müller",
        "owner_given_name": "Anna",
        "owner_organisation_name": None,
    }
    values.update(changes)
    return PatientRecord(**values)  # type: ignore[arg-type]


def test_patient_name_has_two_components() -> None:
    assert mapping.patient_name(patient()) == "Müller^Monty"
    assert (
        mapping.patient_name(patient(owner_family_name="Smith^Jones", barn_name="A=B"))
        == "Smith Jones^A B"
    )
    assert mapping.patient_name(patient(owner_kind=None, owner_family_name=None)) == (
        "^Monty"
    )


def test_organisation_owner_mapping() -> None:
    attributes = mapping.patient_record_attributes(
        patient(
            owner_kind="organisation",
            owner_family_name=None,
            owner_given_name=None,
            owner_organisation_name="Oakridge Racing Syndicate",
        )
    )

    assert attributes["PatientName"] == "Oakridge Racing Syndicate^Monty"
    assert attributes["ResponsibleOrganization"] == "Oakridge Racing Syndicate"
    assert attributes["ResponsiblePerson"] == ""
    assert attributes["ResponsiblePersonRole"] == ""


@pytest.mark.parametrize(
    ("sex", "dicom_sex", "neutered"),
    [
        ("gelding", "M", "ALTERED"),
        ("stallion", "M", "UNALTERED"),
        ("rig", "M", "UNALTERED"),
        ("mare", "F", ""),
        (None, "O", ""),
    ],
)
def test_sex_and_neutered(sex: str | None, dicom_sex: str, neutered: str) -> None:
    attributes = mapping.patient_record_attributes(patient(sex=sex))

    assert attributes["PatientSex"] == dicom_sex
    assert attributes["PatientSexNeutered"] == neutered


@pytest.mark.parametrize(
    ("species", "code"),
    [("horse", "35354009"), ("pony", "35354009"), ("donkey", "85626006")],
)
def test_species_code_items_are_complete(species: str, code: str) -> None:
    attributes = mapping.patient_record_attributes(patient(species=species))

    item = attributes["PatientSpeciesCodeSequence"][0]
    assert item["CodeValue"] == code
    assert item["CodingSchemeDesignator"] == "SCT"
    assert item["CodeMeaning"]


def test_breed_codes_come_from_cid_7480() -> None:
    assert mapping.breed_code("Irish Draught") == (
        "131908002",
        "Irish Draft horse breed",
    )
    assert mapping.breed_code("shetland") == ("69067004", "Shetland pony horse breed")
    assert mapping.breed_code("Unicorn") is None
    assert mapping.breed_code(None) is None
