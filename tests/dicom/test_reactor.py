"""Event-driven associations: they end, time out and clean up like pynetdicom's."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    Verification,
)
from sqlalchemy import select
from tests.imaging_testdata import DR_STATION, EquinePractice
from tests.ingest.builders import write_instance

from fetlock.dicom import server as dicom_server
from fetlock.dicom.reactor import EventDrivenAssociation, EventDrivenDUL
from fetlock.dicom.server import DicomService
from fetlock.imaging.study_models import Instance

# Functional deadline for an association to wind down, not a speed target:
# on an idle machine each takes a few milliseconds.
WIND_DOWN_S = 10.0


def wait_until(condition: Callable[[], bool], timeout_s: float = WIND_DOWN_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def acceptor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, EventDrivenAssociation)]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def associate(port: int) -> Association:
    ae = AE(ae_title=DR_STATION)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="FETLOCK")
    assert assoc.is_established
    return assoc


def served_associations(dicom: DicomService) -> list[Association]:
    """Capture the server side of each association through EVT_ACCEPTED."""
    accepted: list[Association] = []
    assert dicom._server is not None
    dicom._server.bind(evt.EVT_ACCEPTED, lambda event: accepted.append(event.assoc))
    return accepted


def test_accepted_association_is_event_driven(
    dicom: DicomService, practice: EquinePractice
) -> None:
    accepted = served_associations(dicom)
    assoc = associate(dicom.port)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()

    assert int(status.Status) == 0x0000
    assert len(accepted) == 1
    assert isinstance(accepted[0], EventDrivenAssociation)
    assert isinstance(accepted[0].dul, EventDrivenDUL)
    assert accepted[0].dul._run_loop_delay == 0


def test_released_associations_leave_no_threads_or_sockets(
    dicom: DicomService, practice: EquinePractice
) -> None:
    # One association first, so that lazily opened files (the SQLite
    # connection pool, imported modules) are counted in the baseline.
    first = associate(dicom.port)
    first.send_c_echo()
    first.release()
    assert wait_until(lambda: not acceptor_threads())
    baseline = open_fds()

    for _ in range(20):
        assoc = associate(dicom.port)
        assoc.send_c_echo()
        assoc.release()

    assert wait_until(lambda: not acceptor_threads()), acceptor_threads()
    # Each association opens a wake-up socket pair; the DUL thread closes it
    # when it ends, as the peer socket is closed by pynetdicom.
    assert wait_until(lambda: open_fds() <= baseline), (open_fds(), baseline)


def test_peer_abort_ends_server_association(
    dicom: DicomService, practice: EquinePractice
) -> None:
    accepted = served_associations(dicom)
    aborted = threading.Event()
    dicom._server.bind(evt.EVT_ABORTED, lambda event: aborted.set())  # type: ignore[union-attr]
    assoc = associate(dicom.port)
    assoc.send_c_echo()

    assoc.abort()

    assert aborted.wait(WIND_DOWN_S)
    assert wait_until(lambda: not accepted[0].is_alive())
    assert accepted[0].is_aborted


def test_dropped_connection_ends_server_association(
    dicom: DicomService, practice: EquinePractice
) -> None:
    accepted = served_associations(dicom)
    assoc = associate(dicom.port)
    assoc.send_c_echo()

    # The peer vanishes without an A-RELEASE or A-ABORT (a modality switched off).
    assert assoc.dul.socket is not None and assoc.dul.socket.socket is not None
    assoc.dul.socket.socket.close()

    assert wait_until(lambda: not accepted[0].is_alive())
    assert not accepted[0].dul.is_alive()
    assoc.kill()


def test_idle_association_is_closed_after_network_timeout(
    monkeypatch: pytest.MonkeyPatch,
    scp_settings: dicom_server.Settings,
    database: dicom_server.Database,
    practice: EquinePractice,
) -> None:
    monkeypatch.setattr(dicom_server, "NETWORK_TIMEOUT_S", 0.5)
    service = DicomService(scp_settings, database)
    service.start()
    try:
        accepted = served_associations(service)
        assoc = associate(service.port)
        try:
            assoc.send_c_echo()

            # No request for longer than the network timeout: Fetlock ends it.
            assert wait_until(lambda: not accepted[0].is_alive())
            assert wait_until(lambda: not assoc.is_established)
            assert accepted[0].is_aborted or accepted[0].is_released
        finally:
            if assoc.is_established:
                assoc.abort()
    finally:
        service.stop()


def test_peer_stalled_inside_a_pdu_is_disconnected(
    monkeypatch: pytest.MonkeyPatch,
    scp_settings: dicom_server.Settings,
    database: dicom_server.Database,
    practice: EquinePractice,
) -> None:
    import socket
    import struct

    monkeypatch.setattr(dicom_server, "NETWORK_TIMEOUT_S", 0.5)
    monkeypatch.setattr(dicom_server, "ACSE_TIMEOUT_S", 1.0)
    service = DicomService(scp_settings, database)
    service.start()
    try:
        with socket.create_connection(("127.0.0.1", service.port)) as peer:
            # An A-ASSOCIATE-RQ header announcing 1,000 bytes, then nothing.
            peer.sendall(struct.pack(">BBI", 0x01, 0x00, 1000) + b"\x00\x01")
            peer.settimeout(WIND_DOWN_S)

            # Fetlock gives up on the stalled read and closes the connection;
            # before, its DUL thread waited in recv() for ever.
            try:
                received = peer.recv(4096)
            except ConnectionResetError:
                received = b""

        assert received == b""
        assert wait_until(lambda: not acceptor_threads())
    finally:
        service.stop()


def test_stop_aborts_associations_left_open(
    monkeypatch: pytest.MonkeyPatch,
    scp_settings: dicom_server.Settings,
    database: dicom_server.Database,
    practice: EquinePractice,
) -> None:
    monkeypatch.setattr(dicom_server, "STOP_GRACE_S", 0.2)
    service = DicomService(scp_settings, database)
    service.start()
    accepted = served_associations(service)
    idle = associate(service.port)
    assert int(idle.send_c_echo().Status) == 0x0000

    # The modality keeps its association open and sends nothing more.
    service.stop()

    # stop() returns once the DUL thread, which would keep the process
    # alive, has ended; the association thread follows on its own.
    assert not accepted[0].dul.is_alive()
    assert accepted[0].is_aborted
    assert wait_until(lambda: not accepted[0].is_alive())
    assert wait_until(lambda: idle.is_aborted)
    assert not acceptor_threads()


def test_stop_finishes_store_in_progress(
    monkeypatch: pytest.MonkeyPatch,
    scp_settings: dicom_server.Settings,
    database: dicom_server.Database,
    practice: EquinePractice,
    tmp_path: Path,
) -> None:
    from fetlock.dicom import storage

    monkeypatch.setattr(dicom_server, "STOP_GRACE_S", 0.2)
    storing = threading.Event()
    real_store = storage.store_instance

    def slow_store(*args: Any, **kwargs: Any) -> Any:
        # Keeps the object in the handler while the service stops.
        storing.set()
        time.sleep(1.0)
        return real_store(*args, **kwargs)

    monkeypatch.setattr(storage, "store_instance", slow_store)
    service = DicomService(scp_settings, database)
    service.start()
    path = write_instance(tmp_path / "ct.dcm")
    ds = pydicom.dcmread(path)
    ae = AE(ae_title=DR_STATION)
    ae.add_requested_context(CTImageStorage)
    modality = ae.associate("127.0.0.1", service.port, ae_title="FETLOCK")
    assert modality.is_established
    statuses: list[Any] = []
    sender = threading.Thread(target=lambda: statuses.append(modality.send_c_store(ds)))
    sender.start()

    assert storing.wait(WIND_DOWN_S)
    service.stop()
    sender.join(WIND_DOWN_S)

    # What was stored is acknowledged before the association is aborted.
    (status,) = statuses
    assert int(status.Status) == 0x0000
    with database.session() as db_session:
        stored = db_session.execute(
            select(Instance).where(Instance.sop_instance_uid == ds.SOPInstanceUID)
        ).scalar_one_or_none()
    assert stored is not None
    assert wait_until(lambda: modality.is_aborted)
