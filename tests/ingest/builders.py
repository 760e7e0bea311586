"""Builders shared by ingest and interop tests: a clinic, real files with new UIDs."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from fetlock.audit.service import Actor
from fetlock.auth.models import Role, User
from fetlock.auth.service import create_user
from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.imaging import service as imaging_service
from fetlock.imaging.models import ImagingOrder
from fetlock.imaging.schemas import OrderCreate, StationIn
from fetlock.practice import service as practice
from fetlock.practice.models import Horse

ACTOR = Actor(name="tester")
MODALITY = Actor(name="dicom:DR_STALL1", source_ae_title="DR_STALL1")
DR_STATION = "DR_STALL1"


@dataclass
class Clinic:
    """A vet, two horses with owners, and one navicular order for Monty's LF."""

    vet: User
    monty: Horse
    star: Horse
    order: ImagingOrder


def build_clinic(database: Database, settings: Settings) -> Clinic:
    with database.session() as db_session:
        vet = create_user(
            db_session,
            username="dr-whitfield",
            full_name="Dr Sarah Whitfield",
            role=Role.VETERINARIAN,
            password="correct-horse-battery",
        )
        imaging_service.save_station(
            db_session,
            ACTOR,
            StationIn(ae_title=DR_STATION, host="127.0.0.1", port=104, modality="DX"),
        )
        owner = practice.create_client(
            db_session, ACTOR, kind="person", given_name="Anna", family_name="Müller"
        )
        monty = practice.create_horse(
            db_session, ACTOR, barn_name="Monty", species="horse", sex="gelding"
        )
        star = practice.create_horse(
            db_session, ACTOR, barn_name="Star", species="horse", sex="mare"
        )
        for horse in (monty, star):
            practice.set_owners_from(
                db_session,
                ACTOR,
                horse,
                dt.date(2020, 1, 1),
                [practice.ShareInput(owner.id, 10000)],
            )
        order = imaging_service.create_order(
            db_session,
            ACTOR,
            settings,
            monty.id,
            OrderCreate(
                procedure_code="RAD-NAV",
                limb="LF",
                station_ae_title=DR_STATION,
                requesting_clinician_id=vet.id,
            ),
        )
        db_session.flush()
        return Clinic(vet=vet, monty=monty, star=star, order=order)


def write_instance(
    path: Path,
    source: str = "CT_small.dcm",
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    **attributes: object,
) -> Path:
    """Copy a real file with new (or given) UIDs and changed attributes.

    ``source`` is a path, or the name of a pydicom or pydicom-data test file.
    """
    found = source if Path(source).is_absolute() else get_testdata_file(source)
    assert found is not None, f"pydicom test file {source} is not installed"
    ds = pydicom.dcmread(found)
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
