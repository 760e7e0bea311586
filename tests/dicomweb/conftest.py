"""Fixtures for DICOMweb: real DICOM files in two studies, stored through
ingest, API tokens per role, and a live server for ``dicomweb-client``.

The files are pydicom's public test images, given new UIDs and patient
attributes so that they form two studies of two horses.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
import uvicorn
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from tests.conftest import make_user

from fetlock.audit.service import Actor
from fetlock.auth.models import Role
from fetlock.auth.service import create_api_token
from fetlock.config import Settings
from fetlock.db.base import Base
from fetlock.db.session import Database
from fetlock.imaging.ingest import store_instance
from fetlock.storage import LocalBlobStore, get_blob_store

ACTOR = Actor(name="dicomweb-tests")


@dataclass
class SampleInstance:
    path: Path
    source: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    modality: str
    rows: int
    columns: int
    frames: int


@dataclass
class SampleStudy:
    study_uid: str
    patient_id: str
    patient_name: str
    accession: str
    study_date: str
    instances: list[SampleInstance] = field(default_factory=list)

    def series_uids(self) -> list[str]:
        return list(dict.fromkeys(i.series_uid for i in self.instances))

    def by_source(self, name: str) -> SampleInstance:
        return next(i for i in self.instances if i.source == name)


def sample_path(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is not installed"
    return Path(path)


def write_instance(
    directory: Path,
    source: str,
    study: SampleStudy,
    series_uid: str,
    *,
    modality: str,
    series_number: int,
    instance_number: int,
) -> SampleInstance:
    """Copy a test file into `study` with fresh UIDs; pixel data untouched."""
    ds = pydicom.dcmread(sample_path(source))

    # New identity: this study, this series, a fresh SOP Instance UID.
    sop_uid = generate_uid()
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.PatientID = study.patient_id
    ds.PatientName = study.patient_name
    ds.AccessionNumber = study.accession
    ds.StudyDate = study.study_date
    ds.StudyTime = "101500"
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.SpecificCharacterSet = "ISO_IR 192"

    path = directory / f"{sop_uid}.dcm"
    ds.save_as(path, enforce_file_format=True)
    instance = SampleInstance(
        path=path,
        source=source,
        study_uid=study.study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        modality=modality,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        frames=int(ds.get("NumberOfFrames") or 1),
    )
    study.instances.append(instance)
    return instance


def build_sample_studies(directory: Path) -> list[SampleStudy]:
    """Write two studies of two horses into `directory` (not yet stored)."""
    directory.mkdir(parents=True, exist_ok=True)
    radiographs = SampleStudy(
        study_uid=generate_uid(),
        patient_id="FLK-000101",
        patient_name="Smith^Dobbin",
        accession="ACC0101",
        study_date="20240315",
    )
    cr, us, mr = generate_uid(), generate_uid(), generate_uid()
    write_instance(
        directory,
        "RG3_J2KI.dcm",
        radiographs,
        cr,
        modality="CR",
        series_number=1,
        instance_number=1,
    )
    write_instance(
        directory,
        "OBXXXX1A_rle.dcm",
        radiographs,
        us,
        modality="US",
        series_number=2,
        instance_number=1,
    )
    write_instance(
        directory,
        "US1_J2KR.dcm",
        radiographs,
        us,
        modality="US",
        series_number=2,
        instance_number=2,
    )
    write_instance(
        directory,
        "emri_small_jpeg_ls_lossless.dcm",
        radiographs,
        mr,
        modality="MR",
        series_number=3,
        instance_number=1,
    )
    write_instance(
        directory,
        "MR_small.dcm",
        radiographs,
        mr,
        modality="MR",
        series_number=3,
        instance_number=2,
    )

    older = SampleStudy(
        study_uid=generate_uid(),
        patient_id="FLK-000202",
        patient_name="Müller^Zéphyr",
        accession="ACC0202",
        study_date="20231101",
    )
    write_instance(
        directory,
        "CT_small.dcm",
        older,
        generate_uid(),
        modality="DX",
        series_number=1,
        instance_number=1,
    )
    return [radiographs, older]


@pytest.fixture
def sample_studies(tmp_path: Path) -> list[SampleStudy]:
    """Two studies of two horses, on disk (not yet stored)."""
    return build_sample_studies(tmp_path / "files")


@pytest.fixture
def blobs(settings) -> LocalBlobStore:  # type: ignore[no-untyped-def]
    return get_blob_store(settings)


def store_all(
    database: Database, blobs: LocalBlobStore, studies: list[SampleStudy]
) -> None:
    for study in studies:
        for instance in study.instances:
            result = store_instance(database, instance.path, blobs=blobs, actor=ACTOR)
            assert result.ok, result.reason


@pytest.fixture
def stored_studies(
    database: Database, blobs: LocalBlobStore, sample_studies: list[SampleStudy]
) -> list[SampleStudy]:
    """The sample studies, stored through ingest as a modality would."""
    store_all(database, blobs, sample_studies)
    return sample_studies


@pytest.fixture
def token_for(database: Database):  # type: ignore[no-untyped-def]
    """Return a function making an API bearer token for a new user of a role."""
    count = 0

    def _token(role: Role) -> str:
        nonlocal count
        count += 1
        user = make_user(database, f"{role.value}-api{count}", role)
        with database.session() as db_session:
            token, _ = create_api_token(db_session, user, "dicomweb tests")
        return token

    return _token


def _wipe(database: Database) -> None:
    with database.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@dataclass
class Archive:
    """An app over stored sample studies, shared by a module's read-only tests.

    ``reader`` and ``writer`` are bearer tokens of a receptionist and a
    technician; ``http`` is a TestClient of ``app``.
    """

    app: Any
    http: TestClient
    settings: Settings
    blobs: LocalBlobStore
    studies: list[SampleStudy]
    reader: str
    writer: str

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.reader}", **extra}


@pytest.fixture(scope="module")
def archive(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    _session_database: Database,
) -> Iterator[Archive]:
    """Sample studies stored once for a whole module of read-only tests.

    Storing costs about half a second per instance, so QIDO and WADO tests
    share one archive; the shared test database is emptied before and after.
    """
    from fetlock.web.app import create_app

    database = _session_database
    _wipe(database)
    root = tmp_path_factory.mktemp("archive")
    settings = Settings(
        data_dir=root / "data",
        database_url=database_url,
        secret_key="test-secret-key-not-for-production",
        dicom_enabled=False,
        dicomweb_cors_origins="http://viewer.test",
    )
    blobs = get_blob_store(settings)
    studies = build_sample_studies(root / "files")
    store_all(database, blobs, studies)
    tokens = []
    for role in (Role.RECEPTION, Role.TECHNICIAN):
        user = make_user(database, f"archive-{role.value}", role)
        with database.session() as db_session:
            tokens.append(create_api_token(db_session, user, "dicomweb tests")[0])
    app = create_app(settings, database)
    with TestClient(app, base_url="http://127.0.0.1") as http:
        yield Archive(app, http, settings, blobs, studies, tokens[0], tokens[1])
    _wipe(database)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port, in a thread."""
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def archive_url(archive: Archive) -> Iterator[str]:
    """The shared archive served over real HTTP on a loopback port."""
    with serve(archive.app) as url:
        yield url + "/dicomweb"


def split_multipart(
    content_type: str, body: bytes
) -> list[tuple[dict[str, str], bytes]]:
    """Split a ``multipart/related`` response into (headers, body) pairs.

    Written here from RFC 2046 rather than with the server's own code, so a
    framing bug on the server cannot hide in the parser.
    """
    boundary = None
    for piece in content_type.split(";"):
        name, _, value = piece.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    assert boundary, f"no boundary in {content_type!r}"
    delimiter = b"--" + boundary.encode()
    assert body.startswith(delimiter), body[:80]
    assert body.rstrip(b"\r\n").endswith(delimiter + b"--"), body[-80:]
    parts = []
    for chunk in body.split(b"\r\n" + delimiter)[:-1]:
        if chunk.startswith(delimiter):
            chunk = chunk[len(delimiter) :]
        head, _, payload = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, payload))
    return parts
