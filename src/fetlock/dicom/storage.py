"""Storage SOP Class SCP (C-STORE, PS3.4 Annex B).

Accepts every storage SOP class pynetdicom lists (radiography, ultrasound,
CT, endoscopy and video, secondary capture, encapsulated PDF, structured
reports and the rest) in every transfer syntax pydicom defines, compressed and
video ones included, each as the modality offers it: pynetdicom takes the
first of the proposed transfer syntaxes that is supported, and all are.

pynetdicom writes each received data set straight to a temporary file
(``STORE_RECV_CHUNKED_DATASET``), so no object is held in memory whole; the
handler gives that file to ``fetlock.imaging.ingest.store_instance``, which
adopts it into the blob store without copying when both are on one
filesystem. The response is sent only after the object is durable and
indexed, so a modality never deletes an image Fetlock does not have.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import AllTransferSyntaxes, ExplicitVRLittleEndian
from pynetdicom import _config, dimse_messages, evt
from pynetdicom.presentation import (
    AllStoragePresentationContexts,
    PresentationContext,
    build_context,
)

from fetlock.audit.service import Actor
from fetlock.config import Settings
from fetlock.dicom.server import Handler, ScpContext, calling_ae_title
from fetlock.imaging.ingest import RejectReason, store_instance
from fetlock.storage import get_blob_store

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
# Largest PDU Fetlock receives; one PDU is held in memory at a time.
MAXIMUM_PDU_SIZE = 4 << 20
# (0000,0902) Error Comment is LO: at most 64 characters (PS3.7 C.4.2.1.1).
ERROR_COMMENT_MAX = 64


STORAGE_SOP_CLASSES = frozenset(
    str(cx.abstract_syntax) for cx in AllStoragePresentationContexts
)


# Explicit VR Little Endian first: the choice when a modality proposes the
# uncompressed syntaxes together (and its own first choice is honoured below).
TRANSFER_SYNTAXES = tuple(
    dict.fromkeys(
        [str(ExplicitVRLittleEndian), *(str(ts) for ts in AllTransferSyntaxes)]
    )
)


_SUPPORTED = frozenset(TRANSFER_SYNTAXES)


def supported_contexts(settings: Settings) -> list[PresentationContext]:
    return list(_storage_contexts())


@functools.cache
def _storage_contexts() -> tuple[PresentationContext, ...]:
    # Built once per process: pynetdicom validates every UID it is given, and
    # 170 SOP classes times 39 transfer syntaxes takes seconds.
    return tuple(
        build_context(sop_class, list(TRANSFER_SYNTAXES))
        for sop_class in sorted(STORAGE_SOP_CLASSES)
    )


@functools.lru_cache(maxsize=4096)
def _context_in_order(
    abstract_syntax: str, offered: tuple[str, ...]
) -> PresentationContext:
    """Build a storage context whose transfer syntaxes follow the request."""
    ordered = [ts for ts in offered if ts in TRANSFER_SYNTAXES]
    ordered += [ts for ts in TRANSFER_SYNTAXES if ts not in ordered]
    return build_context(abstract_syntax, ordered)


def event_handlers(context: ScpContext) -> list[tuple[evt.EventType, Handler]]:
    # Received data sets go to a temporary file, never to memory.
    _config.STORE_RECV_CHUNKED_DATASET = True
    blobs = get_blob_store(context.settings)
    _receive_into(blobs.staging)
    # Staged copies left by an import or upload that was killed; an hour keeps
    # clear of any still being written by another process.
    blobs.clean_staging(older_than_s=STALE_STAGING_S)

    def on_c_store(event: evt.Event) -> int | Dataset:
        return _store(event, context)

    return [
        (evt.EVT_REQUESTED, _negotiate_for_storage),
        (evt.EVT_C_STORE, on_c_store),
        (evt.EVT_CONN_CLOSE, _discard_partial_object),
    ]


def _discard_partial_object(event: evt.Event) -> None:
    """Delete the file of a data set whose connection closed mid-transfer.

    pynetdicom deletes a received file once the C-STORE handler has run, but
    the file of a data set still arriving when the connection ends (modality
    switched off, A-ABORT, network timeout) stays open and on disk. Runs in
    the association's DUL thread, the only thread that writes that file.

    NOTE: reads pynetdicom 3's DIMSE message in progress (``_data_set_file``);
    the DCMTK storage tests check it against the installed version.
    """
    message = getattr(event.assoc.dimse, "message", None)
    partial = getattr(message, "_data_set_file", None)
    if partial is None:
        return
    path = Path(partial.name)
    partial.close()
    try:
        received = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return
    logger.warning(
        "connection from %s at %s closed during a C-STORE; discarded the %d "
        "bytes received, which the modality must send again",
        calling_ae_title(event.assoc),
        event.assoc.requestor.address,
        received,
    )


def _negotiate_for_storage(event: evt.Event) -> None:
    """Set the association up for storage before pynetdicom negotiates it.

    Fetlock receives PDUs of up to ``MAXIMUM_PDU_SIZE`` bytes (PS3.8 D.3.3.1):
    pynetdicom decodes each PDU in Python, so at its 16 kB default a 7 MB
    radiograph costs some 450 round trips through the decoder. And each
    storage context is accepted in the transfer syntax the modality offers
    first (below).
    """
    assoc = event.assoc
    if assoc.is_rejected or assoc.is_aborted or assoc.requestor.primitive is None:
        return
    assoc.acceptor.maximum_length = MAXIMUM_PDU_SIZE
    _prefer_offered_transfer_syntaxes(event)


def _prefer_offered_transfer_syntaxes(event: evt.Event) -> None:
    """Accept each storage context in the transfer syntax the modality put first.

    pynetdicom picks, for a proposed presentation context, the first of the
    acceptor's transfer syntaxes that the requestor also proposed (PS3.8 9.3.2.2
    leaves the choice to the acceptor). A modality that proposes JPEG 2000
    then Explicit VR Little Endian in one context means to send JPEG 2000, and
    may not be able to decompress at all. So before negotiation, the storage
    contexts are reordered to follow the requestor's own order.
    """
    assoc = event.assoc
    primitive = assoc.requestor.primitive
    if assoc.is_rejected or assoc.is_aborted or primitive is None:
        return
    offered: dict[str, tuple[str, ...]] = {}
    for proposal in primitive.presentation_context_definition_list:
        abstract_syntax = str(proposal.abstract_syntax)
        if abstract_syntax in STORAGE_SOP_CLASSES and abstract_syntax not in offered:
            offered[abstract_syntax] = tuple(str(ts) for ts in proposal.transfer_syntax)
    if not offered:
        return
    assoc.acceptor.supported_contexts = [
        _context_in_order(str(supported.abstract_syntax), offer)
        if (offer := offered.get(str(supported.abstract_syntax))) is not None
        and _needs_reorder(offer)
        else supported
        for supported in assoc.acceptor.supported_contexts
    ]


def _needs_reorder(offered: tuple[str, ...]) -> bool:
    """True if pynetdicom would not pick the requestor's own first choice.

    Most proposals carry one transfer syntax per context, or put Explicit VR
    Little Endian first; those need no reordered copy of the context.
    """
    wanted = next((ts for ts in offered if ts in _SUPPORTED), None)
    picked = next((ts for ts in TRANSFER_SYNTAXES if ts in offered), None)
    return wanted != picked


# Age after which a staging file is a leftover of a crash.
STALE_STAGING_S = 3600.0
# Prefix of the files pynetdicom receives into; see _receive_into.
RECEIVE_PREFIX = "c-store-"


def _receive_into(directory: Path) -> None:
    """Make pynetdicom write received data sets into the blob store's staging.

    There the finished file is hard-linked under its key instead of copied
    (``/tmp`` is often another filesystem, or memory), and a transfer cut off
    by a crash leaves its partial file where the next start removes it.

    NOTE: pynetdicom 3 has no setting for this directory, so the module's
    ``NamedTemporaryFile`` is wrapped; remove this once pynetdicom takes a
    receive directory.
    """
    removed = 0
    for leftover in directory.glob(f"{RECEIVE_PREFIX}*.dcm"):
        leftover.unlink(missing_ok=True)
        removed += 1
    if removed:
        logger.info("removed %d partial C-STORE files left by a crash", removed)
    if not hasattr(dimse_messages, "NamedTemporaryFile"):
        logger.warning(
            "pynetdicom no longer receives through NamedTemporaryFile; received "
            "objects are copied from the system temporary directory"
        )
        return
    dimse_messages.NamedTemporaryFile = functools.partial(  # type: ignore[assignment]
        tempfile.NamedTemporaryFile, dir=directory, prefix=RECEIVE_PREFIX
    )


def _store(event: evt.Event, context: ScpContext) -> int | Dataset:
    ae_title = calling_ae_title(event.assoc)
    request = event.request
    sop_instance_uid = str(getattr(request, "AffectedSOPInstanceUID", "") or "")
    actor = Actor(
        name=f"dicom:{ae_title}",
        source_address=str(event.assoc.requestor.address),
        source_ae_title=ae_title,
    )
    try:
        result = store_instance(
            context.database,
            event.dataset_path,
            blobs=get_blob_store(context.settings),
            actor=actor,
            consume=True,
            name=f"SOP Instance {sop_instance_uid}",
        )
    except Exception:
        logger.exception(
            "C-STORE of SOP Instance %s from %s failed; responded A700 so that the "
            "modality sends it again",
            sop_instance_uid,
            ae_title,
        )
        return _failure(
            RejectReason.OUT_OF_RESOURCES.dimse_status,
            "Fetlock could not store the object; retry later",
        )
    if result.ok:
        logger.info(
            "C-STORE from %s: SOP Instance %s %s",
            ae_title,
            sop_instance_uid,
            result.status.value,
        )
        return SUCCESS
    assert result.reject is not None
    return _failure(result.reject.dimse_status, result.comment or "refused")


def _failure(status: int, comment: str) -> Dataset:
    rsp = Dataset()
    rsp.Status = status
    rsp.ErrorComment = comment[:ERROR_COMMENT_MAX]
    return rsp
