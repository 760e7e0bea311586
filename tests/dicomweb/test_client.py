"""The ``dicomweb-client`` package against a live Fetlock over real HTTP.

uvicorn serves the app on a free loopback port; the client authenticates
with an API bearer token, as an integration or an external viewer would.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.encaps import get_frame
from tests.dicomweb.conftest import Archive, SampleInstance, split_multipart


@pytest.fixture(scope="module")
def reader(archive: Archive, archive_url: str) -> DICOMwebClient:
    return DICOMwebClient(
        archive_url, headers={"Authorization": f"Bearer {archive.reader}"}
    )


def retrieve_args(instance: SampleInstance) -> tuple[str, str, str]:
    return instance.study_uid, instance.series_uid, instance.sop_uid


def test_search_for_studies_with_filters(
    reader: DICOMwebClient, archive: Archive
) -> None:
    every = reader.search_for_studies()
    dated = reader.search_for_studies(search_filters={"StudyDate": "20240101-"})
    by_modality = reader.search_for_studies(
        search_filters={"ModalitiesInStudy": "DX"}, fields=["Manufacturer"]
    )

    assert [s["0020000D"]["Value"][0] for s in every] == [
        s.study_uid for s in archive.studies
    ]
    assert [s["00100020"]["Value"][0] for s in dated] == ["FLK-000101"]
    assert [s["00100020"]["Value"][0] for s in by_modality] == ["FLK-000202"]
    assert "00080070" in by_modality[0]


def test_paging_with_get_remaining(reader: DICOMwebClient) -> None:
    pages = reader.search_for_studies(limit=1, get_remaining=True)
    assert len(pages) == 2


def test_search_for_series_and_instances(
    reader: DICOMwebClient, archive: Archive
) -> None:
    study = archive.studies[0]
    series = reader.search_for_series(study.study_uid)
    instances = reader.search_for_instances(study.study_uid, study.series_uids()[2])

    assert [s["0020000E"]["Value"][0] for s in series] == study.series_uids()
    assert [i["00080018"]["Value"][0] for i in instances] == [
        i.sop_uid for i in study.instances if i.series_uid == study.series_uids()[2]
    ]


def test_retrieve_instance_matches_the_original(
    reader: DICOMwebClient, archive: Archive
) -> None:
    for instance in archive.studies[0].instances:
        ds = reader.retrieve_instance(*retrieve_args(instance))
        original = pydicom.dcmread(instance.path)

        assert ds.SOPInstanceUID == instance.sop_uid
        assert ds.file_meta.TransferSyntaxUID == instance.transfer_syntax
        assert ds.PixelData == original.PixelData


def test_retrieved_bytes_equal_the_original_over_http(
    archive: Archive, archive_url: str
) -> None:
    instance = archive.studies[0].by_source("RG3_J2KI.dcm")
    response = requests.get(
        f"{archive_url}/studies/{instance.study_uid}/series/{instance.series_uid}"
        f"/instances/{instance.sop_uid}",
        headers={
            "Authorization": f"Bearer {archive.reader}",
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*',
        },
        timeout=30,
    )
    ((_, body),) = split_multipart(response.headers["content-type"], response.content)
    assert body == instance.path.read_bytes()


def test_retrieve_series_and_metadata(reader: DICOMwebClient, archive: Archive) -> None:
    study = archive.studies[0]
    datasets = reader.retrieve_series(study.study_uid, study.series_uids()[1])
    metadata = reader.retrieve_study_metadata(study.study_uid)

    assert sorted(ds.SOPInstanceUID for ds in datasets) == sorted(
        i.sop_uid for i in study.instances if i.series_uid == study.series_uids()[1]
    )
    assert len(metadata) == len(study.instances)
    assert all("BulkDataURI" in m["7FE00010"] for m in metadata)


def test_retrieve_frames_uncompressed_and_compressed(
    reader: DICOMwebClient, archive: Archive
) -> None:
    instance = archive.studies[0].by_source("emri_small_jpeg_ls_lossless.dcm")
    original = pydicom.dcmread(instance.path)

    (decoded,) = reader.retrieve_instance_frames(*retrieve_args(instance), [5])
    stored = reader.retrieve_instance_frames(
        *retrieve_args(instance),
        [1, 2],
        media_types=(("image/jls", instance.transfer_syntax),),
    )

    assert np.array_equal(
        np.frombuffer(decoded, "<u2").reshape(64, 64), original.pixel_array[4]
    )
    assert stored == [
        get_frame(original.PixelData, 0, number_of_frames=10),
        get_frame(original.PixelData, 1, number_of_frames=10),
    ]


def test_retrieve_rendered(reader: DICOMwebClient, archive: Archive) -> None:
    instance = archive.studies[0].by_source("OBXXXX1A_rle.dcm")
    jpeg = reader.retrieve_instance_rendered(*retrieve_args(instance))
    png = reader.retrieve_instance_rendered(
        *retrieve_args(instance), media_types=("image/png",)
    )

    picture = Image.open(io.BytesIO(jpeg))
    assert picture.format == "JPEG"
    assert picture.size == (800, 600)
    assert Image.open(io.BytesIO(png)).format == "PNG"


def test_store_through_the_client(
    archive: Archive, archive_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    writer = DICOMwebClient(
        archive_url, headers={"Authorization": f"Bearer {archive.writer}"}
    )
    source = pydicom.dcmread(archive.studies[1].instances[0].path)
    source.SOPInstanceUID = pydicom.uid.generate_uid()
    source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID

    result = writer.store_instances([source])
    found = writer.search_for_instances(
        search_filters={"SOPInstanceUID": source.SOPInstanceUID}
    )

    assert result.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == (
        source.SOPInstanceUID
    )
    assert "FailedSOPSequence" not in result
    assert len(found) == 1
