"""Real DICOM files for the viewer tests, stored the way a modality's would be.

The images come from packages: ``deid-data``'s ``animals/cat.dcm`` (a 3072 x
2614 12-bit DX with (0028,0030) Pixel Spacing 0.14 mm) and its multi-frame
ultrasound clip. Each copy gets new UIDs and the horse's identifiers, is
stored through Fetlock's ingest service into a database and blob store, and
is attached to the horse as staff would from the reconciliation queue.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import select

from fetlock.audit.service import Actor
from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.imaging import linking
from fetlock.imaging.ingest import store_instance
from fetlock.imaging.study_models import Study
from fetlock.practice.models import Horse
from fetlock.storage import get_blob_store

ACTOR = Actor(name="viewer-tests")
CAT_PIXEL_SPACING_MM = 0.14


def deid_file(relative: str) -> Path:
    """Path of a file shipped in the ``deid-data`` package."""
    return Path(str(files("deid_data") / "data" / relative))


def cat_radiograph() -> Path:
    return deid_file("animals/cat.dcm")


def ultrasound_clip() -> Path:
    return deid_file("ultrasounds/ultrasound-multiframe.dcm")


@dataclass(frozen=True)
class StoredStudy:
    StudyInstanceUID: str
    horse_id: int
    files: list[Path]


def _identify(ds: Dataset, horse: Horse, study_uid: str, study_date: str) -> None:
    ds.PatientID = horse.patient_id
    ds.PatientName = f"Demo^{horse.barn_name}"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = ""


def radiograph_copy(
    source: Path,
    target: Path,
    horse: Horse,
    *,
    study_uid: str,
    series_uid: str,
    study_date: str,
    description: str,
    body_part: str,
    view: str,
    instance_number: int,
    calibrated: bool = True,
    crop: tuple[int, int] | None = None,
) -> Path:
    """Write a re-identified copy of a radiograph, optionally cropped."""
    ds = pydicom.dcmread(source)
    _identify(ds, horse, study_uid, study_date)
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDescription = description
    ds.SeriesDescription = description
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.BodyPartExamined = body_part
    ds.AcquisitionDeviceProcessingDescription = view
    ds.ImageLaterality = view[:2][1] if view[:2] in ("LF", "RF", "LH", "RH") else "U"
    if crop is not None:
        rows, columns = crop
        pixels = ds.pixel_array[:rows, :columns]
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds.Rows, ds.Columns = pixels.shape
    if not calibrated:
        for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
            if keyword in ds:
                delattr(ds, keyword)
    ds.save_as(target, enforce_file_format=True)
    return target


def ultrasound_copy(
    source: Path, target: Path, horse: Horse, *, study_uid: str, study_date: str
) -> Path:
    ds = pydicom.dcmread(source)
    _identify(ds, horse, study_uid, study_date)
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDescription = "Tendon ultrasound"
    ds.BodyPartExamined = "LIMB"
    ds.save_as(target, enforce_file_format=True)
    return target


class StudyStore:
    """Stores files into one Fetlock database and blob store, then links them."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.settings = Settings(data_dir=data_dir, database_url=database_url)
        self.database = Database(database_url)
        self.blobs = get_blob_store(self.settings)

    def close(self) -> None:
        self.database.dispose()

    def horse(self, barn_name: str) -> Horse:
        with self.database.session() as db_session:
            horse = db_session.execute(
                select(Horse).where(Horse.barn_name == barn_name)
            ).scalar_one()
            db_session.expunge(horse)
            return horse

    def store(self, paths: list[Path], horse: Horse) -> StoredStudy:
        study_uids = set()
        for path in paths:
            result = store_instance(
                self.database, path, blobs=self.blobs, actor=ACTOR, name=path.name
            )
            assert result.ok, f"storing {path.name} failed: {result.reason}"
            study_uids.add(result.study_instance_uid)
        assert len(study_uids) == 1, f"files span several studies: {study_uids}"
        (study_uid,) = study_uids
        with self.database.session() as db_session:
            study = db_session.execute(
                select(Study).where(Study.study_instance_uid == study_uid)
            ).scalar_one()
            if study.horse_id != horse.id:
                linking.attach(
                    db_session, study, horse_id=horse.id, order_id=None, actor=ACTOR
                )
        return StoredStudy(str(study_uid), horse.id, paths)


def today_minus(days: int) -> str:
    return (dt.date.today() - dt.timedelta(days=days)).strftime("%Y%m%d")
