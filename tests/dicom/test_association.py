"""Association policy and Verification: who may talk to Fetlock's AE."""

from __future__ import annotations

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from tests.imaging_testdata import (
    DR_STATION,
    EquinePractice,
    dicom_settings,
    start_dicom,
)

from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.dicom.server import DicomService


def echo(port: int, calling_ae: str) -> tuple[bool, int | None, object]:
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="FETLOCK")
    if not assoc.is_established:
        reason = None
        if assoc.is_rejected and assoc.acceptor.primitive is not None:
            reason = assoc.acceptor.primitive.diagnostic
        return False, None, reason
    status = assoc.send_c_echo()
    assoc.release()
    return True, int(status.Status), None


def test_configured_modality_can_echo(
    dicom: DicomService, practice: EquinePractice
) -> None:
    accepted, status, _ = echo(dicom.port, DR_STATION)

    assert accepted
    assert status == 0x0000


def test_unknown_caller_is_rejected(
    dicom: DicomService, practice: EquinePractice
) -> None:
    accepted, _, diagnostic = echo(dicom.port, "ROGUE_SCU")

    assert not accepted
    # A-ASSOCIATE-RJ diagnostic 3: calling AE title not recognised.
    assert diagnostic == 0x03


def test_inactive_modality_is_rejected(
    dicom: DicomService, practice: EquinePractice, database: Database
) -> None:
    from fetlock.imaging.models import RemoteAE

    with database.session() as db_session:
        db_session.get(RemoteAE, practice.dr.id).active = False  # type: ignore[union-attr]

    accepted, _, _ = echo(dicom.port, DR_STATION)

    assert not accepted


def test_allow_any_ae_admits_unknown_caller(
    settings: Settings, database: Database, practice: EquinePractice
) -> None:
    service = start_dicom(dicom_settings(settings, dicom_allow_any_ae=True), database)
    try:
        accepted, status, _ = echo(service.port, "ROGUE_SCU")
    finally:
        service.stop()

    assert accepted
    assert status == 0x0000


def test_server_contexts_copy_cheaply_and_independently(
    dicom: DicomService,
) -> None:
    import copy

    from fetlock.dicom.server import CheaplyCopiedContext

    assert dicom._server is not None
    contexts = dicom._server.contexts
    assert contexts
    assert all(isinstance(cx, CheaplyCopiedContext) for cx in contexts)

    copies = copy.deepcopy(contexts)
    copies[0].transfer_syntax = ["1.2.840.10008.1.2"]

    assert [cx.abstract_syntax for cx in copies] == [
        cx.abstract_syntax for cx in contexts
    ]
    assert contexts[0].transfer_syntax != copies[0].transfer_syntax
    assert copies[1].transfer_syntax == contexts[1].transfer_syntax
    assert copies[1].transfer_syntax is not contexts[1].transfer_syntax
