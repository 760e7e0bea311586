"""WADO-RS over the stored sample studies: instances byte for byte, metadata,
frames stored and decoded, rendered images and thumbnails, CORS."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import get_frame
from pydicom.uid import ExplicitVRLittleEndian
from tests.dicomweb.conftest import Archive, SampleInstance, split_multipart

DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def instance_path(instance: SampleInstance) -> str:
    return (
        f"/dicomweb/studies/{instance.study_uid}/series/{instance.series_uid}"
        f"/instances/{instance.sop_uid}"
    )


def get(archive: Archive, path: str, accept: str | None = None, **params: Any):  # type: ignore[no-untyped-def]
    headers = archive.headers(**({"Accept": accept} if accept else {}))
    return archive.http.get(path, headers=headers, params=params)


def image(data: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(data))
    picture.load()
    return picture


class TestInstances:
    def test_instance_bytes_are_the_stored_original(self, archive: Archive) -> None:
        for instance in archive.studies[0].instances:
            response = get(archive, instance_path(instance), DICOM_ANY)
            assert response.status_code == 200
            ((headers, body),) = split_multipart(
                response.headers["content-type"], response.content
            )
            assert body == instance.path.read_bytes()
            assert headers["content-type"] == (
                f"application/dicom; transfer-syntax={instance.transfer_syntax}"
            )

    def test_without_accept_returns_as_stored(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("US1_J2KR.dcm")
        response = get(archive, instance_path(instance))
        ((headers, body),) = split_multipart(
            response.headers["content-type"], response.content
        )
        assert body == instance.path.read_bytes()
        assert response.headers["content-type"].startswith(
            'multipart/related; type="application/dicom"'
        )

    def test_study_retrieval_returns_every_instance(self, archive: Archive) -> None:
        study = archive.studies[0]
        response = get(archive, f"/dicomweb/studies/{study.study_uid}", DICOM_ANY)
        parts = split_multipart(response.headers["content-type"], response.content)

        assert sorted(body for _, body in parts) == sorted(
            i.path.read_bytes() for i in study.instances
        )
        assert all(
            h["content-location"].startswith("http://127.0.0.1/") for h, _ in parts
        )

    def test_series_retrieval(self, archive: Archive) -> None:
        study = archive.studies[0]
        series = study.series_uids()[2]
        response = get(
            archive, f"/dicomweb/studies/{study.study_uid}/series/{series}", DICOM_ANY
        )
        parts = split_multipart(response.headers["content-type"], response.content)
        assert len(parts) == 2

    def test_explicit_little_endian_is_decompressed(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("US1_J2KR.dcm")
        response = get(
            archive,
            instance_path(instance),
            'multipart/related; type="application/dicom"; '
            f"transfer-syntax={ExplicitVRLittleEndian}",
        )
        ((headers, body),) = split_multipart(
            response.headers["content-type"], response.content
        )
        ds = pydicom.dcmread(io.BytesIO(body))
        original = pydicom.dcmread(instance.path)

        assert headers["content-type"].endswith(ExplicitVRLittleEndian)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert np.array_equal(ds.pixel_array, original.pixel_array)

    def test_unavailable_syntax_is_not_acceptable(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("MR_small.dcm")
        response = get(
            archive,
            instance_path(instance),
            'multipart/related; type="application/dicom"; '
            "transfer-syntax=1.2.840.10008.1.2.4.50",
        )
        assert response.status_code == 406
        assert "transfer-syntax=*" in response.json()["detail"]

    def test_unknown_uids_are_named(self, archive: Archive) -> None:
        study = archive.studies[0]
        response = get(archive, "/dicomweb/studies/1.2.3.4")
        wrong_series = get(archive, f"/dicomweb/studies/{study.study_uid}/series/9.9")
        wrong_instance = get(
            archive,
            f"/dicomweb/studies/{study.study_uid}/series/"
            f"{study.series_uids()[0]}/instances/9.8.7",
        )

        assert response.status_code == 404
        assert "Study Instance UID 1.2.3.4" in response.json()["detail"]
        assert "Series Instance UID 9.9" in wrong_series.json()["detail"]
        assert "SOP Instance UID 9.8.7" in wrong_instance.json()["detail"]


class TestMetadata:
    def test_study_metadata_has_every_instance(self, archive: Archive) -> None:
        study = archive.studies[0]
        response = get(archive, f"/dicomweb/studies/{study.study_uid}/metadata")
        datasets = response.json()

        assert response.headers["content-type"] == "application/dicom+json"
        assert sorted(d["00080018"]["Value"][0] for d in datasets) == sorted(
            i.sop_uid for i in study.instances
        )

    def test_pixel_data_is_a_bulk_data_uri(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("emri_small_jpeg_ls_lossless.dcm")
        (dataset,) = get(archive, instance_path(instance) + "/metadata").json()

        pixel_data = dataset["7FE00010"]
        assert "Value" not in pixel_data
        assert "InlineBinary" not in pixel_data
        assert pixel_data["BulkDataURI"].endswith("/frames/1,2,3,4,5,6,7,8,9,10")
        assert dataset["00083002"]["Value"] == [instance.transfer_syntax]
        assert dataset["00280010"]["Value"] == [64]
        assert dataset["00100010"]["Value"] == [{"Alphabetic": "Smith^Dobbin"}]

    def test_bulk_data_uri_retrieves_the_frames(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("MR_small.dcm")
        (dataset,) = get(archive, instance_path(instance) + "/metadata").json()
        uri = dataset["7FE00010"]["BulkDataURI"].replace("http://127.0.0.1", "")

        response = get(archive, uri)
        ((_, body),) = split_multipart(
            response.headers["content-type"], response.content
        )
        expected = pydicom.dcmread(instance.path).pixel_array
        assert body == expected.astype("<i2").tobytes()

    def test_palette_tables_are_inline(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("OBXXXX1A_rle.dcm")
        (dataset,) = get(archive, instance_path(instance) + "/metadata").json()
        # (0028,1201-1203) Palette Color Lookup Table Data: inline whatever
        # their size, since a viewer needs them to draw any frame.
        original = pydicom.dcmread(instance.path)
        for tag, keyword in (
            ("00281201", "RedPaletteColorLookupTableData"),
            ("00281202", "GreenPaletteColorLookupTableData"),
            ("00281203", "BluePaletteColorLookupTableData"),
        ):
            assert "BulkDataURI" not in dataset[tag]
            inline = base64.b64decode(dataset[tag]["InlineBinary"])
            assert inline == original[keyword].value


class TestFrames:
    def test_native_frame_is_the_stored_pixel_bytes(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("MR_small.dcm")
        response = get(archive, instance_path(instance) + "/frames/1")
        ((headers, body),) = split_multipart(
            response.headers["content-type"], response.content
        )
        assert headers["content-type"] == (
            f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
        )
        assert body == pydicom.dcmread(instance.path).PixelData

    def test_compressed_frames_as_stored(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("emri_small_jpeg_ls_lossless.dcm")
        response = get(
            archive,
            instance_path(instance) + "/frames/2,10",
            'multipart/related; type="image/jls"',
        )
        parts = split_multipart(response.headers["content-type"], response.content)
        ds = pydicom.dcmread(instance.path)

        assert [body for _, body in parts] == [
            get_frame(ds.PixelData, 1, number_of_frames=10),
            get_frame(ds.PixelData, 9, number_of_frames=10),
        ]
        assert parts[0][0]["content-type"] == (
            f"image/jls; transfer-syntax={instance.transfer_syntax}"
        )

    def test_transfer_syntax_star_gives_stored_bytes(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("US1_J2KR.dcm")
        response = get(
            archive,
            instance_path(instance) + "/frames/1",
            "multipart/related; type=application/octet-stream; transfer-syntax=*",
        )
        ((headers, body),) = split_multipart(
            response.headers["content-type"], response.content
        )
        assert headers["content-type"].endswith(instance.transfer_syntax)
        pixel_data = pydicom.dcmread(instance.path).PixelData
        assert body == get_frame(pixel_data, 0, number_of_frames=1)

    def test_compressed_frame_decoded_on_request(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("emri_small_jpeg_ls_lossless.dcm")
        response = get(
            archive,
            instance_path(instance) + "/frames/4",
            'multipart/related; type="application/octet-stream"',
        )
        ((_, body),) = split_multipart(
            response.headers["content-type"], response.content
        )
        expected = pydicom.dcmread(instance.path).pixel_array[3]
        assert len(body) == 64 * 64 * 2
        assert np.array_equal(np.frombuffer(body, "<u2").reshape(64, 64), expected)

    def test_wrong_compressed_type_is_not_acceptable(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("US1_J2KR.dcm")
        response = get(
            archive,
            instance_path(instance) + "/frames/1",
            'multipart/related; type="image/jpeg"',
        )
        assert response.status_code == 406
        assert 'type="image/jp2"' in response.json()["detail"]

    @pytest.mark.parametrize(
        ("frames", "status"), [("11", 404), ("0", 422), ("1,x", 422)]
    )
    def test_bad_frame_numbers(
        self, archive: Archive, frames: str, status: int
    ) -> None:
        instance = archive.studies[0].by_source("emri_small_jpeg_ls_lossless.dcm")
        response = get(archive, instance_path(instance) + f"/frames/{frames}")
        assert response.status_code == status
        assert "frame" in response.json()["detail"]


class TestRendered:
    def test_rendered_instance_is_a_jpeg_of_full_size(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("US1_J2KR.dcm")
        response = get(archive, instance_path(instance) + "/rendered")
        picture = image(response.content)

        assert response.headers["content-type"] == "image/jpeg"
        assert picture.size == (640, 480)
        assert np.asarray(picture).std() > 10

    def test_rendered_png_with_viewport(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("RG3_J2KI.dcm")
        response = get(
            archive,
            instance_path(instance) + "/rendered",
            "image/png",
            viewport="300,200",
        )
        picture = image(response.content)
        assert picture.format == "PNG"
        assert picture.size == (200, 200)

    def test_window_parameter_changes_the_image(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("MR_small.dcm")
        default = np.asarray(
            image(get(archive, instance_path(instance) + "/rendered").content)
        )
        narrow = np.asarray(
            image(
                get(
                    archive, instance_path(instance) + "/rendered", window="200,100"
                ).content
            )
        )
        assert np.abs(default.astype(int) - narrow.astype(int)).mean() > 10

    def test_bad_window_names_the_format(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("MR_small.dcm")
        response = get(archive, instance_path(instance) + "/rendered", window="wide")
        assert response.status_code == 422
        assert "center,width" in response.json()["detail"]

    def test_rendered_frame(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("emri_small_jpeg_ls_lossless.dcm")
        first = image(
            get(archive, instance_path(instance) + "/frames/1/rendered").content
        )
        last = image(
            get(archive, instance_path(instance) + "/frames/10/rendered").content
        )
        assert first.size == last.size == (64, 64)
        assert np.abs(np.asarray(first, int) - np.asarray(last, int)).mean() > 3

    def test_rendered_series_has_one_image_per_instance(self, archive: Archive) -> None:
        study = archive.studies[0]
        series = study.series_uids()[1]
        response = get(
            archive, f"/dicomweb/studies/{study.study_uid}/series/{series}/rendered"
        )
        parts = split_multipart(response.headers["content-type"], response.content)
        assert [image(body).size for _, body in parts] == [(800, 600), (640, 480)]

    def test_unsupported_image_type(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("MR_small.dcm")
        response = get(archive, instance_path(instance) + "/rendered", "image/gif")
        assert response.status_code == 406


class TestThumbnails:
    def test_study_thumbnail(self, archive: Archive) -> None:
        study = archive.studies[0]
        response = get(archive, f"/dicomweb/studies/{study.study_uid}/thumbnail")
        picture = image(response.content)
        assert response.headers["content-type"] == "image/jpeg"
        assert max(picture.size) == 256
        # The first image is the MONOCHROME1 radiograph: not blank.
        assert np.asarray(picture).std() > 20

    def test_series_thumbnail_is_colour_for_ultrasound(self, archive: Archive) -> None:
        study = archive.studies[0]
        series = study.series_uids()[1]
        response = get(
            archive, f"/dicomweb/studies/{study.study_uid}/series/{series}/thumbnail"
        )
        rgb = np.asarray(image(response.content).convert("RGB"), dtype=float)
        assert np.abs(rgb[..., 0] - rgb[..., 2]).mean() > 2

    def test_instance_and_frame_thumbnails(self, archive: Archive) -> None:
        instance = archive.studies[0].by_source("emri_small_jpeg_ls_lossless.dcm")
        whole = image(get(archive, instance_path(instance) + "/thumbnail").content)
        frame = image(
            get(
                archive, instance_path(instance) + "/frames/3/thumbnail", "image/png"
            ).content
        )
        assert whole.size == (256, 256)
        assert frame.format == "PNG"

    def test_instance_thumbnail_is_kept_for_next_request(
        self, archive: Archive
    ) -> None:
        from fetlock.imaging.jobs import thumbnail_blob_key

        study = archive.studies[0]
        instance = study.by_source("MR_small.dcm")
        key = thumbnail_blob_key(study.study_uid, instance.sop_uid)
        archive.blobs.delete(key)

        first = get(archive, instance_path(instance) + "/thumbnail")

        assert archive.blobs.exists(key)
        with archive.blobs.open(key) as kept:
            assert kept.read() == first.content
        second = get(archive, instance_path(instance) + "/thumbnail")
        assert second.content == first.content

    def test_codec_process_failure_is_503_naming_instance(
        self, archive: Archive, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from fetlock.jobs import codec_process

        def died(function: object, *args: object, **kwargs: object) -> object:
            raise codec_process.CodecProcessDied(
                "the image codec process ended twice during render_frame"
            )

        from fetlock.imaging.jobs import thumbnail_blob_key

        monkeypatch.setattr(codec_process, "run", died)
        study = archive.studies[0]
        instance = study.by_source("MR_small.dcm")
        archive.blobs.delete(thumbnail_blob_key(study.study_uid, instance.sop_uid))

        for resource in ("/rendered", "/frames/1/rendered", "/thumbnail"):
            response = get(archive, instance_path(instance) + resource)
            assert response.status_code == 503, resource
            body = response.json()
            assert instance.sop_uid in body["detail"]
            assert "retry later" in body["detail"]


class TestCors:
    def test_allowed_origin_gets_headers(self, archive: Archive) -> None:
        response = archive.http.get(
            "/dicomweb/studies",
            headers=archive.headers(Origin="http://viewer.test"),
        )
        assert response.headers["access-control-allow-origin"] == "http://viewer.test"

    def test_errors_carry_cors_headers_too(self, archive: Archive) -> None:
        response = archive.http.get(
            "/dicomweb/studies/1.2.3",
            headers=archive.headers(Origin="http://viewer.test"),
        )
        assert response.status_code == 404
        assert response.headers["access-control-allow-origin"] == "http://viewer.test"

    def test_other_origin_gets_none(self, archive: Archive) -> None:
        response = archive.http.get(
            "/dicomweb/studies", headers=archive.headers(Origin="http://evil.test")
        )
        assert "access-control-allow-origin" not in response.headers

    def test_preflight_needs_no_login(self, archive: Archive) -> None:
        response = archive.http.options(
            "/dicomweb/studies",
            headers={
                "Origin": "http://viewer.test",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert response.status_code == 204
        assert response.headers["access-control-allow-headers"] == "authorization"
        assert "GET" in response.headers["access-control-allow-methods"]
