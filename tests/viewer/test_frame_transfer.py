"""Frames travel compressed and come back exact, as the viewer asks for them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jpeg_ls
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, generate_uid
from tests.viewer.studydata import ACTOR, StudyStore, cat_radiograph, radiograph_copy

from fetlock.auth.models import Role
from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.practice import service as practice
from fetlock.viewer.settings import DEFAULT_FRAME_ACCEPT

SIDE = 256


def _parts(response) -> list[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    """(Content-Type, body) of each part of a multipart/related response."""
    boundary = re.search(r'boundary="?([^";]+)', response.headers["content-type"])
    assert boundary, response.headers["content-type"]
    delimiter = b"--" + boundary.group(1).encode()
    parts = []
    for chunk in response.content.split(delimiter)[1:-1]:
        head, _, body = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(
            line.split(": ", 1) for line in head.decode().split("\r\n") if line
        )
        parts.append((headers["Content-Type"], body))
    return parts


@pytest.fixture
def stored(settings: Settings, database: Database, database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Two copies of a 256 x 256 radiograph crop: uncompressed and JPEG 2000."""
    with database.session() as db_session:
        horse = practice.create_horse(db_session, ACTOR, barn_name="Hazel")
        db_session.expunge(horse)
    store = StudyStore(database_url, settings.data_dir)
    result = {}
    for form in ("native", "j2k"):
        path = radiograph_copy(
            cat_radiograph(),
            tmp_path / f"{form}.dcm",
            horse,
            study_uid=generate_uid(),
            series_uid=generate_uid(),
            study_date="20250101",
            description="Foot",
            body_part="HOOF",
            view="LF-LM",
            instance_number=1,
            crop=(SIDE, SIDE),
        )
        if form == "j2k":
            ds = pydicom.dcmread(path)
            ds.compress(JPEG2000Lossless)
            ds.save_as(path, enforce_file_format=True)
        store.store([path], horse)
        result[form] = pydicom.dcmread(path)
    store.close()
    return result


def _frame_url(ds: pydicom.Dataset) -> str:
    return (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/1"
    )


def test_native_frame__sent_as_jpeg_ls_lossless_and_decodes_exactly(
    login_as, stored
) -> None:
    vet = login_as(Role.VETERINARIAN)
    ds = stored["native"]
    response = vet.get(_frame_url(ds), headers={"Accept": DEFAULT_FRAME_ACCEPT})
    assert response.status_code == 200, response.text
    ((content_type, body),) = _parts(response)
    assert content_type == f"image/jls; transfer-syntax={JPEGLSLossless}"
    raw_size = SIDE * SIDE * 2
    assert len(body) < 0.8 * raw_size

    # CharLS, the codec the viewer runs as WebAssembly, reads it back exactly.
    decoded = jpeg_ls.decode(np.frombuffer(body, dtype=np.uint8))
    np.testing.assert_array_equal(decoded, ds.pixel_array)


def test_jpeg_2000_frame__stored_bytes_passed_through(login_as, stored) -> None:
    vet = login_as(Role.VETERINARIAN)
    ds = stored["j2k"]
    response = vet.get(_frame_url(ds), headers={"Accept": DEFAULT_FRAME_ACCEPT})
    assert response.status_code == 200, response.text
    ((content_type, body),) = _parts(response)
    assert (
        content_type == f"application/octet-stream; transfer-syntax={JPEG2000Lossless}"
    )
    stored_frame = pydicom.encaps.get_frame(ds.PixelData, 0, number_of_frames=1)
    assert body == stored_frame


def test_native_frame__raw_when_client_does_not_ask_for_jpeg_ls(
    login_as, stored
) -> None:
    vet = login_as(Role.VETERINARIAN)
    ds = stored["native"]
    response = vet.get(
        _frame_url(ds),
        headers={"Accept": 'multipart/related; type="application/octet-stream"'},
    )
    ((content_type, body),) = _parts(response)
    assert content_type.startswith("application/octet-stream; transfer-syntax=")
    assert body == ds.pixel_array.astype("<u2").tobytes()


def _blobs(settings: Settings):  # type: ignore[no-untyped-def]
    from fetlock.storage import get_blob_store

    return get_blob_store(settings)


def _instance_key(database: Database, ds: pydicom.Dataset) -> tuple[int, str]:
    from sqlalchemy import select

    from fetlock.imaging.study_models import Instance

    with database.session() as db_session:
        row = db_session.execute(
            select(Instance.study_id, Instance.blob_key).where(
                Instance.sop_instance_uid == ds.SOPInstanceUID
            )
        ).one()
    return row.study_id, row.blob_key


def test_jpeg_ls_copy_is_kept_and_served_again(
    login_as, stored, settings: Settings, database: Database
) -> None:
    from fetlock.dicomweb.wado import jpeg_ls_frame_key

    vet = login_as(Role.VETERINARIAN)
    ds = stored["native"]
    _study_id, blob_key = _instance_key(database, ds)
    kept = jpeg_ls_frame_key(blob_key, 1)
    blobs = _blobs(settings)
    assert not blobs.exists(kept)

    first = vet.get(_frame_url(ds), headers={"Accept": DEFAULT_FRAME_ACCEPT})
    ((_type, body),) = _parts(first)
    with blobs.open(kept) as stream:
        assert stream.read() == body

    # The second request reads the kept copy instead of encoding again.
    marked = b"\xff\xd8 kept copy \xff\xd9"
    blobs.put_bytes(kept, marked)
    second = vet.get(_frame_url(ds), headers={"Accept": DEFAULT_FRAME_ACCEPT})
    ((_type, again),) = _parts(second)
    assert again == marked


def test_settled_study_gets_its_jpeg_ls_copies_made(
    login_as, stored, settings: Settings, database: Database
) -> None:
    from fetlock.dicomweb.wado import jpeg_ls_frame_key
    from fetlock.jobs import enqueue
    from fetlock.jobs.worker import Worker

    blobs = _blobs(settings)
    native_study, native_key = _instance_key(database, stored["native"])
    j2k_study, j2k_key = _instance_key(database, stored["j2k"])
    with database.session() as db_session:
        enqueue(db_session, "viewer_frames", study_id=native_study)
        enqueue(db_session, "viewer_frames", study_id=j2k_study)

    assert Worker(database, settings).run_pending() >= 2

    with blobs.open(jpeg_ls_frame_key(native_key, 1)) as stream:
        decoded = jpeg_ls.decode(np.frombuffer(stream.read(), dtype=np.uint8))
    np.testing.assert_array_equal(decoded, stored["native"].pixel_array)
    # Grey lossless JPEG 2000 gets a copy too, and the viewer then gets it.
    with blobs.open(jpeg_ls_frame_key(j2k_key, 1)) as stream:
        kept = stream.read()
    decoded = jpeg_ls.decode(np.frombuffer(kept, dtype=np.uint8))
    np.testing.assert_array_equal(decoded, stored["j2k"].pixel_array)
    vet = login_as(Role.VETERINARIAN)
    response = vet.get(
        _frame_url(stored["j2k"]), headers={"Accept": DEFAULT_FRAME_ACCEPT}
    )
    ((content_type, body),) = _parts(response)
    assert content_type == f"image/jls; transfer-syntax={JPEGLSLossless}"
    assert body == kept
    # A client that asks for the stored form still gets the stored bytes.
    stored_form = vet.get(
        _frame_url(stored["j2k"]),
        headers={
            "Accept": 'multipart/related; type="application/octet-stream"; '
            "transfer-syntax=*"
        },
    )
    ((_type, stored_body),) = _parts(stored_form)
    frame = pydicom.encaps.get_frame(stored["j2k"].PixelData, 0, number_of_frames=1)
    assert stored_body == frame


def test_stopping_worker_puts_viewer_frames_back(
    stored, settings: Settings, database: Database
) -> None:
    from sqlalchemy import select

    from fetlock.dicomweb.wado import jpeg_ls_frame_key
    from fetlock.imaging.jobs import prepare_viewer_frames
    from fetlock.jobs.models import Job
    from fetlock.jobs.registry import JobContext

    blobs = _blobs(settings)
    study_id, key = _instance_key(database, stored["native"])
    blobs.delete(jpeg_ls_frame_key(key, 1))
    with database.session() as db_session:
        context = JobContext(
            db_session=db_session,
            database=database,
            settings=settings,
            blobs=blobs,
            job_id=0,
            attempt=1,
            stopping=lambda: True,
        )
        prepare_viewer_frames(context, study_id=study_id)

    assert not blobs.exists(jpeg_ls_frame_key(key, 1))
    with database.session() as db_session:
        queued = (
            db_session.execute(select(Job.args_json).where(Job.name == "viewer_frames"))
            .scalars()
            .all()
        )
    assert {"study_id": study_id} in [json.loads(args) for args in queued]


@pytest.mark.parametrize(
    "damage", [b"", b"\xff\xd8\xff\xf7 cut short", b"not a codestream\xff\xd9"]
)
def test_damaged_jpeg_ls_copy_is_encoded_again(
    login_as, stored, settings: Settings, database: Database, damage: bytes
) -> None:
    from fetlock.dicomweb.wado import jpeg_ls_frame_key

    vet = login_as(Role.VETERINARIAN)
    ds = stored["native"]
    _study_id, blob_key = _instance_key(database, ds)
    blobs = _blobs(settings)
    kept = jpeg_ls_frame_key(blob_key, 1)
    blobs.put_bytes(kept, damage)

    response = vet.get(_frame_url(ds), headers={"Accept": DEFAULT_FRAME_ACCEPT})

    assert response.status_code == 200, response.text
    ((_type, body),) = _parts(response)
    decoded = jpeg_ls.decode(np.frombuffer(body, dtype=np.uint8))
    np.testing.assert_array_equal(decoded, ds.pixel_array)
    with blobs.open(kept) as stream:
        assert stream.read() == body, "the damaged copy is replaced"


def test_unreadable_jpeg_ls_copy_falls_back_to_encoding(
    login_as, stored, settings: Settings, database: Database
) -> None:
    from fetlock.dicomweb.wado import jpeg_ls_frame_key

    vet = login_as(Role.VETERINARIAN)
    ds = stored["native"]
    _study_id, blob_key = _instance_key(database, ds)
    path = _blobs(settings).local_path(jpeg_ls_frame_key(blob_key, 1))
    assert path is not None
    path.mkdir(parents=True)  # a directory where the copy should be

    response = vet.get(_frame_url(ds), headers={"Accept": DEFAULT_FRAME_ACCEPT})

    assert response.status_code == 200, response.text
    ((_type, body),) = _parts(response)
    decoded = jpeg_ls.decode(np.frombuffer(body, dtype=np.uint8))
    np.testing.assert_array_equal(decoded, ds.pixel_array)


def test_image_that_cannot_be_encoded_spares_the_rest(
    settings: Settings, database: Database, database_url: str, tmp_path: Path
) -> None:
    from fetlock.dicomweb.wado import jpeg_ls_frame_key
    from fetlock.jobs import enqueue
    from fetlock.jobs.worker import Worker

    with database.session() as db_session:
        horse = practice.create_horse(db_session, ACTOR, barn_name="Juniper")
        db_session.expunge(horse)
    store = StudyStore(database_url, settings.data_dir)
    study_uid, series_uid = generate_uid(), generate_uid()
    paths = []
    for number in (1, 2):
        path = radiograph_copy(
            cat_radiograph(),
            tmp_path / f"{number}.dcm",
            horse,
            study_uid=study_uid,
            series_uid=series_uid,
            study_date="20250101",
            description="Foot",
            body_part="HOOF",
            view="LF-LM",
            instance_number=number,
            crop=(SIDE, SIDE),
        )
        if number == 1:
            # Rows is larger than the pixel data allows.
            ds = pydicom.dcmread(path)
            ds.Rows = SIDE * 2
            ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    stored_study = store.store(paths, horse)
    store.close()
    good = pydicom.dcmread(paths[1])
    study_id, good_key = _instance_key(database, good)
    with database.session() as db_session:
        enqueue(db_session, "viewer_frames", study_id=study_id)

    assert Worker(database, settings).run_pending() >= 1

    assert stored_study is not None
    assert _blobs(settings).exists(jpeg_ls_frame_key(good_key, 1))
