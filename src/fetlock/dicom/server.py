"""Fetlock's DICOM application entity and the service that runs it.

The AE is assembled from the modules named in ``SCP_MODULES``. Each module
provides one or more SCP roles and exposes two functions:

``supported_contexts(settings) -> list[PresentationContext]``
    The presentation contexts the AE accepts for that module's SOP classes.

``event_handlers(context) -> list[tuple[EventType, Callable]]``
    pynetdicom event handlers (``evt.EVT_C_FIND``, ``evt.EVT_N_CREATE``...)
    bound to ``context``, an ``ScpContext`` that carries the settings, the
    ``Database`` and the ``AssociationPolicy``.

A handler finds the calling AE's configuration (character set, worklist
filter) with ``context.peer_for(event.assoc)``. The association policy is
applied here, before any module receives a request: a calling AE title that is not
a configured, active remote modality is rejected with A-ASSOCIATE-RJ (rejected
permanent, "calling AE title not recognised") unless ``dicom_allow_any_ae`` is
set. To add a service, write such a module and add its name to
``SCP_MODULES``; two modules must not handle the same event type.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.events import EventHandlerType
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import ThreadedAssociationServer

from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.dicom.policy import AssociationPolicy, PeerConfig
from fetlock.dicom.reactor import EventDrivenRequestHandler

logger = logging.getLogger(__name__)

SCP_MODULES: tuple[str, ...] = (
    "fetlock.dicom.verification",
    "fetlock.dicom.worklist",
    "fetlock.dicom.mpps",
    "fetlock.dicom.storage",
)

# A-ASSOCIATE-RJ parameters (PS3.8 9.3.4): rejected-permanent, by the service
# user, because the calling AE title is not recognised.
REJECT_PERMANENT = 0x01
REJECT_SOURCE_SERVICE_USER = 0x01
REJECT_CALLING_AE_NOT_RECOGNISED = 0x03

# Seconds without traffic before an idle association is closed.
NETWORK_TIMEOUT_S = 60
# Seconds a new connection has to send its A-ASSOCIATE-RQ (pynetdicom's default).
ACSE_TIMEOUT_S = 30
# Seconds a stopping service lets open associations finish before aborting
# them. Without the abort an idle modality's association would hold the
# process for up to NETWORK_TIMEOUT_S, because pynetdicom's DUL threads are
# not daemon threads.
STOP_GRACE_S = 2.0
# Seconds a stopping service waits for a request being handled (an object
# being stored, say) to finish before it aborts that association anyway.
STOP_HANDLER_WAIT_S = 5.0
MAXIMUM_ASSOCIATIONS = 32

Handler = Callable[..., Any]


class ScpModule(Protocol):
    def supported_contexts(self, settings: Settings) -> list[PresentationContext]: ...

    def event_handlers(
        self, context: ScpContext
    ) -> list[tuple[evt.EventType, Handler]]: ...


@dataclass(frozen=True)
class ScpContext:
    """What every SCP handler needs: settings, database and peer policy."""

    settings: Settings
    database: Database
    policy: AssociationPolicy

    def peer_for(self, assoc: Association) -> PeerConfig:
        """Return the calling AE's configuration for an accepted association.

        The association was accepted, so the caller is configured or the
        practice allows any AE; a caller removed since then gets the defaults.
        """
        ae_title = calling_ae_title(assoc)
        peer = self.policy.peer(ae_title)
        return peer or PeerConfig(ae_title=ae_title, configured=False)


def calling_ae_title(assoc: Association) -> str:
    """Return the peer's AE title, also before negotiation has copied it."""
    ae_title = assoc.requestor.ae_title
    primitive = assoc.requestor.primitive
    if not ae_title and primitive is not None:
        ae_title = primitive.calling_ae_title
    return str(ae_title).strip()


def load_scp_modules(names: Sequence[str] = SCP_MODULES) -> list[ScpModule]:
    return [cast(ScpModule, importlib.import_module(name)) for name in names]


class CheaplyCopiedContext(PresentationContext):
    """A presentation context that ``copy.deepcopy`` copies in microseconds.

    pynetdicom deep-copies the server's contexts for every association it
    accepts. With the storage contexts that was about 50 ms per association,
    most of it re-validating pydicom UIDs, before a worklist query or an echo
    could start. Every attribute but the transfer syntax list is immutable
    (UIDs are ``str``, the rest int, bool or None), so copying that list is
    enough.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> CheaplyCopiedContext:
        clone = copy.copy(self)
        clone._transfer_syntax = list(self._transfer_syntax)
        return clone


def cheaply_copied(
    contexts: Sequence[PresentationContext],
) -> list[PresentationContext]:
    """Return ``contexts`` as ``CheaplyCopiedContext`` objects."""
    clones: list[PresentationContext] = []
    for context in contexts:
        clone = CheaplyCopiedContext()
        clone.__dict__.update(context.__dict__)
        clone._transfer_syntax = list(context._transfer_syntax)
        clones.append(clone)
    return clones


def build_ae(settings: Settings, modules: Sequence[ScpModule]) -> AE:
    """Return an AE that accepts every module's presentation contexts."""
    ae = AE(ae_title=settings.dicom_ae_title)
    ae.maximum_associations = MAXIMUM_ASSOCIATIONS
    ae.network_timeout = NETWORK_TIMEOUT_S
    ae.acse_timeout = ACSE_TIMEOUT_S
    for module in modules:
        for context in module.supported_contexts(settings):
            ae.add_supported_context(
                cast(str, context.abstract_syntax),
                context.transfer_syntax,
                scu_role=context.scu_role,
                scp_role=context.scp_role,
            )
    return ae


class DicomService:
    """The DICOM listener started by ``fetlock serve``.

    ``start()`` returns once the socket listens; ``port`` is then the bound
    port, which differs from ``settings.dicom_port`` when that is 0.
    """

    name = "dicom"

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        scp_modules: Sequence[str] = SCP_MODULES,
    ) -> None:
        self.settings = settings
        self.context = ScpContext(
            settings=settings,
            database=database,
            policy=AssociationPolicy(settings, database),
        )
        self.module_names = tuple(scp_modules)
        self.modules = load_scp_modules(scp_modules)
        self._server: ThreadedAssociationServer | None = None
        # Associations whose request handler is running, with how many.
        self._busy: dict[Association, int] = {}
        self._busy_lock = threading.Lock()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the DICOM service is not started; call start() first")
        return int(self._server.server_address[1])

    def start(self) -> None:
        # Patient data stays out of the log unless the practice turns on
        # dataset logging for debugging.
        _config.LOG_REQUEST_IDENTIFIERS = self.settings.dicom_log_datasets
        _config.LOG_RESPONSE_IDENTIFIERS = self.settings.dicom_log_datasets

        handlers: list[EventHandlerType] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, _log_accepted),
            (evt.EVT_RELEASED, _log_released),
            (evt.EVT_ABORTED, _log_aborted),
        ]
        for module in self.modules:
            handlers.extend(
                (event, self._tracked(handler))
                if isinstance(event, evt.InterventionEvent)
                else (event, handler)
                for event, handler in module.event_handlers(self.context)
            )

        ae = build_ae(self.settings, self.modules)
        # As AE.start_server(block=False) does, with associations that block
        # until there is work instead of polling (fetlock.dicom.reactor).
        server = ae.make_server(
            (self.settings.dicom_host, self.settings.dicom_port),
            evt_handlers=handlers,
            contexts=cheaply_copied(ae.supported_contexts),
            server_class=ThreadedAssociationServer,
            request_handler=EventDrivenRequestHandler,
        )
        threading.Thread(
            target=server.serve_forever, name="dicom-acceptor", daemon=True
        ).start()
        # The server's shutdown() removes itself from this list.
        ae._servers.append(server)
        self._server = server
        logger.info(
            "DICOM service %s listening on %s:%d (%s)",
            self.settings.dicom_ae_title,
            self.settings.dicom_host,
            self.port,
            ", ".join(name.rsplit(".", 1)[-1] for name in self.module_names),
        )

    def stop(self) -> None:
        """Stop accepting, let open associations end, then abort the rest.

        A request being handled (an object being stored) is finished first,
        for up to ``STOP_HANDLER_WAIT_S``, so that what is stored is also
        acknowledged. A peer whose association is aborted receives an
        A-ABORT, or a closed connection if it is still sending.
        """
        server, self._server = self._server, None
        if server is None:
            return
        # shutdown() stops the acceptor; associations already accepted go on.
        server.shutdown()
        deadline = time.monotonic() + STOP_GRACE_S
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        # In parallel: pynetdicom's abort() takes about 0.2 s per association.
        aborts = [
            threading.Thread(
                target=self._abort_when_idle,
                args=(assoc, time.monotonic() + STOP_HANDLER_WAIT_S),
                name="dicom-stop",
            )
            for assoc in server.active_associations
        ]
        for thread in aborts:
            thread.start()
        for thread in aborts:
            thread.join()

    def _abort_when_idle(self, assoc: Association, deadline: float) -> None:
        busy = False
        while self._is_busy(assoc) and time.monotonic() < deadline:
            busy = True
            time.sleep(0.02)
        if busy and not self._is_busy(assoc):
            # Let the association thread queue its response before the A-ABORT.
            time.sleep(0.1)
        logger.warning(
            "aborting the association from %s at %s:%s because Fetlock is stopping%s",
            calling_ae_title(assoc),
            assoc.requestor.address,
            assoc.requestor.port,
            "; its request was still being handled" if self._is_busy(assoc) else "",
        )
        assoc.abort()

    def _is_busy(self, assoc: Association) -> bool:
        with self._busy_lock:
            return assoc in self._busy

    def _tracked(self, handler: Handler) -> Handler:
        """Wrap a request handler so that ``stop`` can wait for it."""

        def enter(assoc: Association) -> None:
            with self._busy_lock:
                self._busy[assoc] = self._busy.get(assoc, 0) + 1

        def leave(assoc: Association) -> None:
            with self._busy_lock:
                left = self._busy.pop(assoc) - 1
                if left:
                    self._busy[assoc] = left

        if inspect.isgeneratorfunction(handler):
            # C-FIND handlers yield their matches one by one.
            def tracked_generator(event: evt.Event, *args: Any) -> Any:
                enter(event.assoc)
                try:
                    yield from handler(event, *args)
                finally:
                    leave(event.assoc)

            return tracked_generator

        def tracked(event: evt.Event, *args: Any) -> Any:
            enter(event.assoc)
            try:
                return handler(event, *args)
            finally:
                leave(event.assoc)

        return tracked

    def _on_requested(self, event: evt.Event) -> None:
        """Reject callers that are not configured remote modalities."""
        ae_title = calling_ae_title(event.assoc)
        if self.context.policy.peer(ae_title) is not None:
            return
        logger.warning(
            "rejected association from %r at %s:%s: calling AE title is not a "
            "configured modality (add it on the modalities page, or set "
            "FETLOCK_DICOM_ALLOW_ANY_AE=true)",
            ae_title,
            event.assoc.requestor.address,
            event.assoc.requestor.port,
        )
        event.assoc.acse.send_reject(
            REJECT_PERMANENT,
            REJECT_SOURCE_SERVICE_USER,
            REJECT_CALLING_AE_NOT_RECOGNISED,
        )
        # Stop the DUL only after it has sent the A-ASSOCIATE-RJ, as pynetdicom
        # does for its own rejections; closing the socket first reads as an
        # abort at the peer.
        event.assoc.kill()


def _log_accepted(event: evt.Event) -> None:
    logger.info(
        "association accepted from %s at %s:%s",
        calling_ae_title(event.assoc),
        event.assoc.requestor.address,
        event.assoc.requestor.port,
    )


def _log_released(event: evt.Event) -> None:
    logger.info("association released by %s", calling_ae_title(event.assoc))


def _log_aborted(event: evt.Event) -> None:
    logger.info("association aborted with %s", calling_ae_title(event.assoc))
