"""WADO-RS for objects that are not ordinary images: undecodable pixel data,
video, and an encapsulated PDF."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG4HP41, ExplicitVRLittleEndian, generate_uid
from tests.dicomweb.conftest import ACTOR, sample_path

from fetlock.auth.models import Role
from fetlock.db.session import Database
from fetlock.imaging.ingest import store_instance
from fetlock.storage import LocalBlobStore


def store(database: Database, blobs: LocalBlobStore, ds: Dataset, path: Path) -> str:
    ds.save_as(path, enforce_file_format=True)
    result = store_instance(database, path, blobs=blobs, actor=ACTOR)
    assert result.ok, result.reason
    return (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def renamed(ds: Dataset) -> Dataset:
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


@pytest.fixture
def headers(token_for) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {token_for(Role.RADIOLOGIST)}"}


def test_undecodable_frames_give_406_not_a_cut_body(
    client: TestClient,
    headers: dict[str, str],
    database: Database,
    blobs: LocalBlobStore,
    tmp_path: Path,
) -> None:
    # A 12-bit JPEG Extended file that none of the installed decoders reads.
    ds = renamed(pydicom.dcmread(sample_path("JPEG-lossy.dcm")))
    url = store(database, blobs, ds, tmp_path / "lossy.dcm")

    decoded = client.get(url + "/frames/1", headers=headers)
    as_stored = client.get(
        url + "/frames/1",
        headers={
            **headers,
            "Accept": "multipart/related; type=application/octet-stream; "
            "transfer-syntax=*",
        },
    )
    rendered = client.get(url + "/rendered", headers=headers)

    assert decoded.status_code == 406
    assert "transfer-syntax=*" in decoded.json()["detail"]
    assert as_stored.status_code == 200
    assert rendered.status_code == 422
    assert "cannot be rendered" in rendered.json()["detail"]


def test_video_has_no_frames_but_a_poster(
    client: TestClient,
    headers: dict[str, str],
    database: Database,
    blobs: LocalBlobStore,
    tmp_path: Path,
) -> None:
    ds = renamed(pydicom.dcmread(sample_path("emri_small_jpeg_ls_lossless.dcm")))
    # Not a real H.264 stream: ffmpeg, if installed, fails on it, so the
    # poster is the "Video" placeholder either way.
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.PixelData = encapsulate([b"\x00\x00\x00\x01" + b"\x42" * 400])
    url = store(database, blobs, ds, tmp_path / "clip.dcm")

    frames = client.get(url + "/frames/1", headers=headers)
    poster = client.get(url + "/rendered", headers=headers)
    instance = client.get(url, headers=headers)

    assert frames.status_code == 406
    assert "is a video" in frames.json()["detail"]
    assert poster.status_code == 200
    picture = Image.open(io.BytesIO(poster.content))
    assert picture.size[0] == picture.size[1]  # the square placeholder
    assert instance.content.count((tmp_path / "clip.dcm").read_bytes()) == 1


def test_pdf_renders_as_placeholder_and_has_no_frames(
    client: TestClient,
    headers: dict[str, str],
    database: Database,
    blobs: LocalBlobStore,
    tmp_path: Path,
) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.Modality = "DOC"
    ds.PatientID = "FLK-000303"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n" + b"%" * 3000 + b"\n%%EOF\n"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    renamed(ds)
    url = store(database, blobs, ds, tmp_path / "report.dcm")

    frames = client.get(url + "/frames/1", headers=headers)
    thumbnail = client.get(url + "/thumbnail", headers=headers)
    metadata = client.get(url + "/metadata", headers=headers).json()[0]
    bulk = metadata["00420011"]["BulkDataURI"].replace("http://127.0.0.1", "")
    document = client.get(bulk, headers=headers)

    assert frames.status_code == 404
    assert "no pixel data" in frames.json()["detail"]
    grey = np.asarray(Image.open(io.BytesIO(thumbnail.content)).convert("L"))
    assert grey.shape == (256, 256)
    assert ds.EncapsulatedDocument in document.content
