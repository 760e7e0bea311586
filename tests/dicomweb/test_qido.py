"""QIDO-RS over the stored sample studies: matching, paging, return attributes."""

from __future__ import annotations

from typing import Any

import pytest
from tests.dicomweb.conftest import Archive

STUDIES = "/dicomweb/studies"


def values(results: list[dict[str, Any]], tag: str) -> list[Any]:
    return [r.get(tag, {}).get("Value", [None])[0] for r in results]


def search(archive: Archive, path: str, **params: Any) -> list[dict[str, Any]]:
    response = archive.http.get(path, params=params, headers=archive.headers())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    result: list[dict[str, Any]] = response.json()
    return result


class TestStudySearch:
    def test_all_studies_newest_first(self, archive: Archive) -> None:
        results = search(archive, STUDIES)
        assert values(results, "0020000D") == [s.study_uid for s in archive.studies]
        assert values(results, "00080020") == ["20240315", "20231101"]

    def test_standard_return_attributes(self, archive: Archive) -> None:
        (study,) = search(archive, STUDIES, PatientID="FLK-000101")
        radiographs = archive.studies[0]

        assert study["00080061"]["Value"] == ["CR", "MR", "US"]
        assert study["00201206"]["Value"] == [3]
        assert study["00201208"]["Value"] == [5]
        assert study["00100010"]["Value"] == [{"Alphabetic": "Smith^Dobbin"}]
        assert study["00080050"]["Value"] == ["ACC0101"]
        assert study["00080056"]["Value"] == ["ONLINE"]
        assert study["00080005"]["Value"] == ["ISO_IR 192"]
        assert study["00081190"]["Value"] == [
            f"http://127.0.0.1/dicomweb/studies/{radiographs.study_uid}"
        ]
        # Required return keys the index does not hold are present, empty.
        assert study["00100030"] == {"vr": "DA"}
        assert study["00080090"] == {"vr": "PN"}

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"PatientID": "FLK-000202"}, ["FLK-000202"]),
            ({"00100020": "FLK-000101"}, ["FLK-000101"]),
            ({"PatientID": "FLK-*"}, ["FLK-000101", "FLK-000202"]),
            ({"PatientID": "FLK-00010?"}, ["FLK-000101"]),
            ({"PatientID": "flk-*"}, []),  # case-sensitive (PS3.4 C.2.2.2.4)
            ({"AccessionNumber": "ACC0202"}, ["FLK-000202"]),
            ({"StudyDate": "20240101-"}, ["FLK-000101"]),
            ({"StudyDate": "-20231231"}, ["FLK-000202"]),
            ({"StudyDate": "20231101-20240315"}, ["FLK-000101", "FLK-000202"]),
            ({"StudyDate": "20231101"}, ["FLK-000202"]),
            ({"ModalitiesInStudy": "US"}, ["FLK-000101"]),
            ({"ModalitiesInStudy": "DX,MR"}, ["FLK-000101", "FLK-000202"]),
            ({"ModalitiesInStudy": "XA"}, []),
            ({"PatientName": "muller*"}, ["FLK-000202"]),  # accents and case
            ({"PatientName": "SMITH^DOBBIN"}, ["FLK-000101"]),
            ({"PatientName": "*zephyr"}, ["FLK-000202"]),
        ],
    )
    def test_matching(
        self, archive: Archive, params: dict[str, str], expected: list[str]
    ) -> None:
        assert values(search(archive, STUDIES, **params), "00100020") == expected

    def test_study_uid_list(self, archive: Archive) -> None:
        uids = [s.study_uid for s in archive.studies]
        both = search(archive, STUDIES, StudyInstanceUID=",".join(reversed(uids)))
        one = search(archive, STUDIES, StudyInstanceUID=uids[1])

        assert sorted(values(both, "0020000D")) == sorted(uids)
        assert values(one, "0020000D") == [uids[1]]

    def test_limit_and_offset_page_through(self, archive: Archive) -> None:
        first = search(archive, STUDIES, limit=1)
        second = search(archive, STUDIES, limit=1, offset=1)
        beyond = search(archive, STUDIES, limit=1, offset=2)

        assert values(first + second, "0020000D") == [
            s.study_uid for s in archive.studies
        ]
        assert beyond == []

    def test_limit_with_name_filter(self, archive: Archive) -> None:
        assert len(search(archive, STUDIES, PatientName="*", limit=1)) == 1
        assert search(archive, STUDIES, PatientName="*^*", offset=1, limit=5) != []

    def test_includefield_reads_the_stored_header(self, archive: Archive) -> None:
        (study,) = search(
            archive,
            STUDIES,
            PatientID="FLK-000101",
            includefield="Manufacturer,00081090",
        )
        # Manufacturer of the study's first instance (RG3_J2KI.dcm).
        assert study["00080070"]["Value"] == ["FUJI PHOTO FILM CO. LTD."]
        assert study["00081090"]["Value"] == ["IRS"]

    def test_includefield_all(self, archive: Archive) -> None:
        (study,) = search(archive, STUDIES, PatientID="FLK-000202", includefield="all")
        assert "00080070" in study  # from the header
        assert study["00201208"]["Value"] == [1]  # from the index


class TestSeriesAndInstances:
    def test_series_of_a_study(self, archive: Archive) -> None:
        study = archive.studies[0]
        results = search(archive, f"{STUDIES}/{study.study_uid}/series")

        assert values(results, "0020000E") == study.series_uids()
        assert values(results, "00080060") == ["CR", "US", "MR"]
        assert values(results, "00201209") == [1, 2, 2]
        assert values(results, "00200011") == [1, 2, 3]

    def test_series_by_modality(self, archive: Archive) -> None:
        study = archive.studies[0]
        results = search(archive, f"{STUDIES}/{study.study_uid}/series", Modality="MR")
        assert values(results, "00080060") == ["MR"]

    def test_series_of_all_studies(self, archive: Archive) -> None:
        results = search(archive, "/dicomweb/series", Modality="DX")
        assert values(results, "0020000D") == [archive.studies[1].study_uid]
        assert values(results, "00100020") == ["FLK-000202"]

    def test_instances_of_a_series(self, archive: Archive) -> None:
        study = archive.studies[0]
        us_series = study.series_uids()[1]
        results = search(
            archive, f"{STUDIES}/{study.study_uid}/series/{us_series}/instances"
        )
        expected = [i for i in study.instances if i.series_uid == us_series]

        assert values(results, "00080018") == [i.sop_uid for i in expected]
        assert values(results, "00280010") == [i.rows for i in expected]
        assert values(results, "00080016") == [i.sop_class_uid for i in expected]
        assert values(results, "00081190")[0].endswith(
            f"/series/{us_series}/instances/{expected[0].sop_uid}"
        )

    def test_instances_of_a_study(self, archive: Archive) -> None:
        study = archive.studies[0]
        results = search(archive, f"{STUDIES}/{study.study_uid}/instances")
        assert sorted(values(results, "00080018")) == sorted(
            i.sop_uid for i in study.instances
        )
        multi = study.by_source("emri_small_jpeg_ls_lossless.dcm")
        by_uid = dict(zip(values(results, "00080018"), results, strict=True))
        assert by_uid[multi.sop_uid]["00280008"]["Value"] == [10]

    def test_instance_by_sop_uid(self, archive: Archive) -> None:
        target = archive.studies[0].instances[2]
        results = search(archive, "/dicomweb/instances", SOPInstanceUID=target.sop_uid)
        assert values(results, "00080018") == [target.sop_uid]


class TestErrors:
    def test_unknown_attribute_names_it(self, archive: Archive) -> None:
        response = archive.http.get(
            STUDIES, params={"HorseColour": "bay"}, headers=archive.headers()
        )
        assert response.status_code == 422
        assert "'HorseColour' is not a DICOM attribute" in response.json()["detail"]

    def test_malformed_date_names_the_value(self, archive: Archive) -> None:
        response = archive.http.get(
            STUDIES, params={"StudyDate": "2024-03-15"}, headers=archive.headers()
        )
        assert response.status_code == 422
        detail = response.json()["detail"]
        assert "(0008,0020) StudyDate '2024-03-15'" in detail
        assert "20240101-20241231" in detail

    def test_bad_limit(self, archive: Archive) -> None:
        response = archive.http.get(
            STUDIES, params={"limit": "-3"}, headers=archive.headers()
        )
        assert response.status_code == 422
        assert "limit='-3'" in response.json()["detail"]

    def test_unsupported_key_is_ignored_with_a_warning(self, archive: Archive) -> None:
        response = archive.http.get(
            STUDIES,
            params={"ReferringPhysicianName": "Vet^Anna"},
            headers=archive.headers(),
        )
        assert response.status_code == 200
        assert len(response.json()) == 2
        assert "(0008,0090) ReferringPhysicianName" in response.headers["warning"]

    def test_needs_authentication(self, archive: Archive) -> None:
        response = archive.http.get(STUDIES)
        assert response.status_code == 401
        assert "Bearer" in response.headers["www-authenticate"]

    def test_bad_token(self, archive: Archive) -> None:
        response = archive.http.get(STUDIES, headers=archive.headers("flk_wrong"))
        assert response.status_code == 401

    def test_xml_is_not_acceptable(self, archive: Archive) -> None:
        response = archive.http.get(
            STUDIES,
            headers=archive.headers(
                Accept='multipart/related; type="application/dicom+xml"'
            ),
        )
        assert response.status_code == 406


def test_ohif_study_list_query(archive: Archive) -> None:
    # The request OHIF's study list sends (its default QIDO parameters).
    results = search(
        archive,
        STUDIES,
        limit=101,
        offset=0,
        fuzzymatching="false",
        includefield="00081030,00080060",
        StudyDate="20000101-20991231",
    )
    assert len(results) == 2
    assert values(results, "00080060") == ["CR", "DX"]  # from each first instance
