"""store_instance: bytes kept exactly, index filled, duplicates and bad input."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import func, select
from tests.ingest.conftest import MODALITY, MakeInstance

from fetlock.audit.models import AuditEvent
from fetlock.db.session import Database
from fetlock.imaging.dicomfile import read_layout
from fetlock.imaging.ingest import (
    RejectReason,
    StoreStatus,
    instance_blob_key,
    store_instance,
)
from fetlock.imaging.study_models import Instance, QuarantinedObject, Series, Study
from fetlock.jobs.models import Job
from fetlock.storage import LocalBlobStore

# Real files in the transfer syntaxes a practice's modalities send.
REAL_FILES = [
    ("CT_small.dcm", "1.2.840.10008.1.2.1"),
    ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
    ("image_dfl.dcm", "1.2.840.10008.1.2.1.99"),
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50"),
    ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51"),
    ("JPEG-LL.dcm", "1.2.840.10008.1.2.4.70"),
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    ("US1_J2KR.dcm", "1.2.840.10008.1.2.4.90"),
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),
    ("OBXXXX1A_rle.dcm", "1.2.840.10008.1.2.5"),
    ("emri_small_RLE.dcm", "1.2.840.10008.1.2.5"),
]


def _path(name: str) -> Path:
    found = get_testdata_file(name)
    assert found is not None, f"test file {name} is not installed"
    return Path(found)


def _count(database: Database, model: type) -> int:
    with database.session() as db_session:
        return int(
            db_session.execute(select(func.count()).select_from(model)).scalar_one()
        )


@pytest.mark.parametrize(("name", "transfer_syntax"), REAL_FILES)
def test_real_file_is_stored_byte_for_byte_and_indexed(
    database: Database, blobs: LocalBlobStore, name: str, transfer_syntax: str
) -> None:
    source = _path(name)
    ds = pydicom.dcmread(source, stop_before_pixels=True)

    result = store_instance(database, source, blobs=blobs, actor=MODALITY)

    assert result.status is StoreStatus.STORED, result.reason
    key = instance_blob_key(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    assert blobs.open(key).read() == source.read_bytes()
    with database.session() as db_session:
        instance = db_session.execute(select(Instance)).scalar_one()
        series = db_session.get(Series, instance.series_id)
        assert series is not None
        assert instance.sop_instance_uid == ds.SOPInstanceUID
        assert instance.sop_class_uid == ds.SOPClassUID
        assert instance.transfer_syntax_uid == transfer_syntax
        assert instance.rows == ds.Rows
        assert instance.columns == ds.Columns
        assert instance.number_of_frames == (
            int(ds.NumberOfFrames) if "NumberOfFrames" in ds else None
        )
        assert instance.size_bytes == source.stat().st_size
        assert instance.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
        assert instance.source_ae_title == "DR_STALL1"
        assert series.modality == ds.get("Modality")


def test_radiograph_attributes_reach_the_index(
    database: Database, blobs: LocalBlobStore, make_instance: MakeInstance
) -> None:
    path = make_instance(
        Modality="DX",
        BodyPartExamined="FOOT",
        ViewPosition="LM",
        ImageLaterality="L",
        AcquisitionDeviceProcessingDescription="LF LM",
        ImagerPixelSpacing=[0.139, 0.139],
        SeriesDescription="Navicular",
    )

    result = store_instance(database, path, blobs=blobs, actor=MODALITY)

    assert result.ok
    with database.session() as db_session:
        instance = db_session.execute(select(Instance)).scalar_one()
        series = db_session.execute(select(Series)).scalar_one()
        assert (instance.view_position, instance.image_laterality) == ("LM", "L")
        assert instance.view_label == "LF LM"
        assert instance.imager_pixel_spacing == "0.139\\0.139"
        assert instance.pixel_spacing == "0.661468\\0.661468"
        assert (series.modality, series.body_part_examined) == ("DX", "FOOT")


def test_same_object_sent_twice_is_stored_once_and_both_succeed(
    database: Database, blobs: LocalBlobStore, make_instance: MakeInstance
) -> None:
    path = make_instance()

    first = store_instance(database, path, blobs=blobs, actor=MODALITY)
    second = store_instance(database, path, blobs=blobs, actor=MODALITY)

    assert first.status is StoreStatus.STORED
    assert second.status is StoreStatus.DUPLICATE
    assert second.ok
    assert second.instance_id == first.instance_id
    assert _count(database, Instance) == 1


def test_same_data_set_with_other_file_meta_is_a_duplicate(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    tmp_path: Path,
) -> None:
    path = make_instance()
    ds = pydicom.dcmread(path)
    ds.file_meta.ImplementationVersionName = "OTHER_EXPORT"
    ds.file_meta.SourceApplicationEntityTitle = "USB_EXPORT"
    other = tmp_path / "other.dcm"
    ds.save_as(other, enforce_file_format=True)
    assert other.read_bytes() != path.read_bytes()

    store_instance(database, path, blobs=blobs, actor=MODALITY)
    result = store_instance(database, other, blobs=blobs, actor=MODALITY)

    assert result.status is StoreStatus.DUPLICATE


def test_other_object_with_a_stored_uid_is_quarantined_never_overwrites(
    database: Database, blobs: LocalBlobStore, make_instance: MakeInstance
) -> None:
    sop_uid = generate_uid()
    study_uid, series_uid = generate_uid(), generate_uid()
    original = make_instance(
        study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
    )
    impostor = make_instance(
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        PatientName="Someone^Else",
    )
    store_instance(database, original, blobs=blobs, actor=MODALITY)

    result = store_instance(database, impostor, blobs=blobs, actor=MODALITY)

    assert result.status is StoreStatus.REJECTED
    assert result.reject is RejectReason.UID_CONFLICT
    assert f"SOP Instance UID {sop_uid} is taken" in (result.reason or "")
    key = instance_blob_key(study_uid, series_uid, sop_uid)
    assert blobs.open(key).read() == original.read_bytes()
    with database.session() as db_session:
        quarantined = db_session.execute(select(QuarantinedObject)).scalar_one()
        assert blobs.open(quarantined.blob_key).read() == impostor.read_bytes()
        assert quarantined.source_ae_title == "DR_STALL1"
        actions = db_session.execute(select(AuditEvent.action)).scalars().all()
        assert "imaging.instance.quarantined" in actions
    assert _count(database, Instance) == 1


def test_stored_uid_arriving_in_another_study_is_quarantined(
    database: Database, blobs: LocalBlobStore, make_instance: MakeInstance
) -> None:
    sop_uid = generate_uid()
    original = make_instance(sop_uid=sop_uid)
    elsewhere = make_instance(sop_uid=sop_uid)  # new study and series UIDs
    store_instance(database, original, blobs=blobs, actor=MODALITY)

    result = store_instance(database, elsewhere, blobs=blobs, actor=MODALITY)

    assert result.reject is RejectReason.UID_CONFLICT
    ds = pydicom.dcmread(elsewhere, stop_before_pixels=True)
    key = instance_blob_key(ds.StudyInstanceUID, ds.SeriesInstanceUID, sop_uid)
    assert not blobs.exists(key), "no blob may stay under the other study's key"
    assert _count(database, Instance) == 1
    assert _count(database, QuarantinedObject) == 1


def test_blob_left_by_an_interrupted_store_is_indexed_on_retry(
    database: Database, blobs: LocalBlobStore, make_instance: MakeInstance
) -> None:
    path = make_instance()
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    key = instance_blob_key(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    # The process died after publishing the blob, before indexing it.
    assert blobs.publish(blobs.stage(path), key)

    result = store_instance(database, path, blobs=blobs, actor=MODALITY)

    assert result.status is StoreStatus.STORED
    assert _count(database, Instance) == 1


def test_truncated_file_is_refused_naming_the_file_and_the_cut(
    database: Database, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    whole = _path("JPEG2000.dcm").read_bytes()
    truncated = tmp_path / "IM0007"
    truncated.write_bytes(whole[:-500])

    result = store_instance(database, truncated, blobs=blobs, actor=MODALITY)

    assert result.status is StoreStatus.REJECTED
    assert result.reject is RejectReason.MALFORMED
    assert str(truncated) in (result.reason or "")
    assert "truncated" in (result.reason or "")
    assert _count(database, Instance) == 0
    assert _count(database, Study) == 0
    assert list(blobs.staging.iterdir()) == []


def test_truncated_uncompressed_pixel_data_is_refused(
    database: Database, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    whole = _path("CT_small.dcm").read_bytes()
    truncated = tmp_path / "ct.dcm"
    truncated.write_bytes(whole[:-1000])

    result = store_instance(database, truncated, blobs=blobs, actor=MODALITY)

    assert result.reject is RejectReason.MALFORMED
    assert "(7FE0,0010)" in (result.reason or "")


def test_file_that_is_not_dicom_is_refused(
    database: Database, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    text = tmp_path / "autorun.inf"
    text.write_text("[autorun]\nopen=viewer.exe\n")

    result = store_instance(database, text, blobs=blobs, actor=MODALITY)

    assert result.status is StoreStatus.REJECTED
    assert result.reject is RejectReason.MALFORMED
    assert "autorun.inf" in (result.reason or "")


@pytest.mark.parametrize(
    ("keyword", "tag"),
    [
        ("SOPInstanceUID", "(0008,0018) SOP Instance UID"),
        ("StudyInstanceUID", "(0020,000D) Study Instance UID"),
        ("SeriesInstanceUID", "(0020,000E) Series Instance UID"),
    ],
)
def test_object_without_a_key_uid_is_refused_naming_the_tag(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    keyword: str,
    tag: str,
) -> None:
    path = make_instance()
    ds = pydicom.dcmread(path)
    delattr(ds, keyword)
    ds.save_as(path, enforce_file_format=True)

    result = store_instance(database, path, blobs=blobs, actor=MODALITY)

    assert result.reject is RejectReason.MISSING_ATTRIBUTE
    assert f"has no {tag}" in (result.reason or "")


def test_uid_that_could_escape_the_store_is_refused(
    database: Database, blobs: LocalBlobStore, make_instance: MakeInstance
) -> None:
    path = make_instance(study_uid="1.2.3/../../etc")

    result = store_instance(database, path, blobs=blobs, actor=MODALITY)

    assert result.reject is RejectReason.INVALID_UID
    assert "'1.2.3/../../etc' is not a valid UID" in (result.reason or "")
    assert not (blobs.root.parent / "etc").exists()


def test_dicomdir_is_not_stored_as_an_instance(
    database: Database, blobs: LocalBlobStore
) -> None:
    result = store_instance(database, _path("DICOMDIR"), blobs=blobs, actor=MODALITY)

    assert result.reject is RejectReason.NOT_AN_INSTANCE
    assert "is a DICOMDIR" in (result.reason or "")


def test_bare_data_set_is_stored_with_file_meta_in_front(
    database: Database, blobs: LocalBlobStore, make_instance: MakeInstance
) -> None:
    path = make_instance()
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    data = path.read_bytes()
    with path.open("rb") as fp:
        layout = read_layout(fp, len(data))
    raw = data[layout.dataset_offset :]
    assert raw[128:132] != b"DICM"

    result = store_instance(
        database,
        io.BytesIO(raw),
        blobs=blobs,
        actor=MODALITY,
        transfer_syntax="1.2.840.10008.1.2.1",
    )

    assert result.status is StoreStatus.STORED, result.reason
    with database.session() as db_session:
        instance = db_session.execute(select(Instance)).scalar_one()
        stored = blobs.open(instance.blob_key).read()
    assert stored[128:132] == b"DICM"
    assert stored.endswith(raw)
    reread = pydicom.dcmread(io.BytesIO(stored))
    assert reread.SOPInstanceUID == ds.SOPInstanceUID


def test_storing_in_the_callers_session_commits_with_the_caller(
    database: Database, blobs: LocalBlobStore, make_instance: MakeInstance
) -> None:
    path = make_instance()

    with pytest.raises(RuntimeError), database.session() as db_session:
        result = store_instance(db_session, path, blobs=blobs, actor=MODALITY)
        assert result.status is StoreStatus.STORED
        raise RuntimeError("the caller's request failed afterwards")

    assert _count(database, Instance) == 0
    # The bytes were durable already; sending again indexes them.
    again = store_instance(database, path, blobs=blobs, actor=MODALITY)
    assert again.status is StoreStatus.STORED


def test_image_enqueues_thumbnail_and_settled_check(
    database: Database, blobs: LocalBlobStore, make_instance: MakeInstance
) -> None:
    study_uid = generate_uid()
    for _ in range(3):
        store_instance(
            database, make_instance(study_uid=study_uid), blobs=blobs, actor=MODALITY
        )

    with database.session() as db_session:
        names = sorted(db_session.execute(select(Job.name)).scalars())
    assert names == ["study_settled", "thumbnail"]


def test_staging_is_empty_after_every_outcome(
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    tmp_path: Path,
) -> None:
    path = make_instance()
    copy = tmp_path / "copy.dcm"
    shutil.copy(path, copy)
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"DICM" * 10)

    for source in (path, copy, bad):
        store_instance(database, source, blobs=blobs, actor=MODALITY)

    assert list(blobs.staging.iterdir()) == []
