"""The Storage SCP over a real association, with pynetdicom as the modality."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    SecondaryCaptureImageStorage,
)
from sqlalchemy import select
from tests.imaging_testdata import dicom_settings, free_port
from tests.ingest.conftest import DR_STATION, Clinic, MakeInstance

from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.dicom.server import DicomService
from fetlock.imaging.study_models import Instance
from fetlock.storage import LocalBlobStore


@pytest.fixture
def scp(
    settings: Settings, database: Database, clinic: Clinic
) -> Iterator[DicomService]:
    service = DicomService(dicom_settings(settings), database)
    service.start()
    yield service
    service.stop()


def _send(
    port: int,
    path: Path,
    *,
    contexts: list[tuple[str, list[str]]] | None = None,
    calling: str = DR_STATION,
) -> tuple[int, str | None, str | None]:
    """Send one file; return the status, the error comment and the accepted TS."""
    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling)
    for sop_class, syntaxes in contexts or [
        (ds.SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ]:
        ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate("127.0.0.1", port, ae_title="FETLOCK")
    assert assoc.is_established, "association was not accepted"
    try:
        accepted = [
            str(cx.transfer_syntax[0])
            for cx in assoc.accepted_contexts
            if cx.abstract_syntax == ds.SOPClassUID
        ]
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    return (
        int(status.Status),
        status.get("ErrorComment"),
        accepted[0] if accepted else None,
    )


def _instances(database: Database) -> list[Instance]:
    with database.session() as db_session:
        return list(db_session.execute(select(Instance)).scalars())


def test_c_store_is_stored_indexed_and_acknowledged(
    scp: DicomService,
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
) -> None:
    path = make_instance()

    status, _comment, _ts = _send(scp.port, path)

    assert status == 0x0000
    (instance,) = _instances(database)
    assert instance.source_ae_title == DR_STATION
    stored = pydicom.dcmread(blobs.open(instance.blob_key))
    assert stored.SOPInstanceUID == instance.sop_instance_uid
    assert stored.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_same_instance_sent_twice_succeeds_twice_and_is_stored_once(
    scp: DicomService, database: Database, make_instance: MakeInstance
) -> None:
    path = make_instance()

    assert _send(scp.port, path)[0] == 0x0000
    assert _send(scp.port, path)[0] == 0x0000

    assert len(_instances(database)) == 1


def test_other_object_under_a_stored_uid_gets_a_failure_status(
    scp: DicomService,
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
) -> None:
    uids = {
        "study_uid": generate_uid(),
        "series_uid": generate_uid(),
        "sop_uid": generate_uid(),
    }
    first = make_instance(**uids)
    second = make_instance(**uids, PatientName="Other^Horse")
    _send(scp.port, first)

    status, comment, _ts = _send(scp.port, second)

    assert status == 0xC004
    assert comment == "SOP Instance UID taken by other data"
    (instance,) = _instances(database)
    assert pydicom.dcmread(blobs.open(instance.blob_key)).PatientName != "Other^Horse"


def test_data_set_without_study_uid_is_refused_naming_the_tag(
    scp: DicomService, database: Database, make_instance: MakeInstance, tmp_path: Path
) -> None:
    path = make_instance()
    ds = pydicom.dcmread(path)
    del ds.StudyInstanceUID
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken, enforce_file_format=True)

    status, comment, _ts = _send(scp.port, broken)

    assert status == 0xC002
    assert comment == "missing (0020,000D) Study Instance UID"
    assert _instances(database) == []


def test_modality_offering_only_jpeg_2000_is_accepted_as_offered(
    scp: DicomService, database: Database
) -> None:
    from pydicom.data import get_testdata_file

    source = Path(str(get_testdata_file("JPEG2000.dcm")))

    status, _comment, accepted = _send(
        scp.port, source, contexts=[(SecondaryCaptureImageStorage, [JPEG2000])]
    )

    assert (status, accepted) == (0x0000, JPEG2000)
    (instance,) = _instances(database)
    assert instance.transfer_syntax_uid == JPEG2000


def test_first_proposed_transfer_syntax_wins(scp: DicomService) -> None:
    from pydicom.data import get_testdata_file

    source = Path(str(get_testdata_file("JPEG2000.dcm")))

    _status, _comment, accepted = _send(
        scp.port,
        source,
        contexts=[(SecondaryCaptureImageStorage, [JPEG2000, ExplicitVRLittleEndian])],
    )

    assert accepted == JPEG2000


def test_unknown_calling_ae_is_rejected(scp: DicomService) -> None:
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(CTImageStorage)

    assoc = ae.associate("127.0.0.1", scp.port, ae_title="FETLOCK")

    assert assoc.is_rejected


def test_any_ae_is_accepted_when_the_practice_allows_it(
    settings: Settings, database: Database, make_instance: MakeInstance
) -> None:
    service = DicomService(
        dicom_settings(settings, dicom_allow_any_ae=True, dicom_port=free_port()),
        database,
    )
    service.start()
    try:
        status, _comment, _ts = _send(
            service.port, make_instance(), calling="LAPTOP_US"
        )
    finally:
        service.stop()

    assert status == 0x0000
    (instance,) = _instances(database)
    assert instance.source_ae_title == "LAPTOP_US"


@pytest.mark.parametrize("source", ["CT_small.dcm", "JPEG2000.dcm", "OBXXXX1A_rle.dcm"])
def test_data_set_bytes_on_the_wire_are_the_bytes_stored(
    scp: DicomService,
    database: Database,
    blobs: LocalBlobStore,
    make_instance: MakeInstance,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    from pynetdicom import _config

    from fetlock.imaging.dicomfile import read_layout

    # pynetdicom then sends the file's encoded data set without decoding it.
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    path = make_instance(source)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ae = AE(ae_title=DR_STATION)
    ae.add_requested_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="FETLOCK")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)
    finally:
        assoc.release()

    assert status.Status == 0x0000
    (instance,) = _instances(database)
    sent = path.read_bytes()
    with path.open("rb") as fp:
        sent_offset = read_layout(fp, len(sent)).dataset_offset
    stored = blobs.open(instance.blob_key).read()
    with blobs.open(instance.blob_key) as fp:
        stored_offset = read_layout(fp, len(stored)).dataset_offset
    assert stored[stored_offset:] == sent[sent_offset:]
    assert instance.size_bytes == len(stored)
