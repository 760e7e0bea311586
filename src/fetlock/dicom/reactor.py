"""Event-driven acceptor associations for pynetdicom 3.

pynetdicom 3.0.4 runs two threads per association and both poll. The DUL
thread sleeps 1 ms after every pass that found nothing to do before it reads
the socket again. The association thread sleeps 1 ms before every check of
its queue of decoded DIMSE messages. A C-STORE of a small instance waits
through several of these pauses (request read, message picked up, response
sent), and the idle passes take the GIL from the thread that stores the
data. On loopback this capped Fetlock's Storage SCP at about 120 small
instances per second (``bench/ingest_bench.py``).

Here both threads block until there is work instead:

* the DUL thread waits in ``select()`` on the peer's socket and on a wake-up
  socket pair, which ``send_pdu()`` and the stop calls write to;
* the association thread waits on an ``Event`` that is set whenever a DIMSE
  message or a primitive for the service user (release, abort) is queued.

Both still wake every ``WAKE_INTERVAL_S`` to check pynetdicom's timers (ARTIM,
network idle timeout) and whether the other thread has ended. Everything
else (state machine, PDU decoding, DIMSE, ACSE, the handlers) is pynetdicom's
own. The classes are applied to associations that ``RequestHandler``
has built, by changing their class before their threads start, so that
pynetdicom's configuration of each new association stays in one place; they
depend on pynetdicom 3.0 internals (``to_user_queue``, ``msg_queue``,
``_reactor_checkpoint``) and are checked against it by the DICOM tests.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import threading
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import RequestHandler

logger = logging.getLogger(__name__)

# Maximum time a thread blocks before it re-checks timers and the other thread.
# pynetdicom's timers count in seconds (ARTIM 30 s, idle 60 s by default), so
# checking them 20 times a second changes no timeout noticeably.
WAKE_INTERVAL_S = 0.05

# Sta13: the DUL waits for the peer to close the connection. pynetdicom reads
# what is left and closes the socket itself, so the DUL must not block there.
_AWAITING_CLOSE = "Sta13"


class NotifyingQueue(queue.Queue[Any]):
    """A queue that calls ``on_put`` after every item it receives."""

    def __init__(self, on_put: Callable[[], None]) -> None:
        super().__init__()
        self._on_put = on_put

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._on_put()


class EventDrivenDUL(DULServiceProvider):
    """A DUL provider whose thread blocks on its sockets instead of polling."""

    _wake_reader: socket.socket
    _wake_writer: socket.socket

    def adopt(self, user_activity: threading.Event) -> None:
        """Prepare a DUL built by pynetdicom, before its thread starts.

        ``user_activity`` is set whenever a primitive is queued for the
        association thread.
        """
        if self.is_alive() or not self.to_user_queue.empty():
            raise RuntimeError("the DUL must be adopted before its thread starts")
        # The select() in _is_transport_event is the only pause the loop needs.
        self._run_loop_delay = 0
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self.to_user_queue = NotifyingQueue(user_activity.set)

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._wake_reader.close()
            self._wake_writer.close()

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self.wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self.wake()

    def stop_dul(self) -> bool:
        # pynetdicom's version waits for the thread by sleeping
        # _run_loop_delay in a loop, which is a busy loop at 0.
        if self.state_machine.current_state != "Sta1":
            return False
        self._kill_thread = True
        self.wake()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()
        return True

    def wake(self) -> None:
        """Make the DUL thread look at its queues now."""
        try:
            self._wake_writer.send(b"\0")
        except BlockingIOError:
            pass  # The buffer is full, so a wake-up is already pending.
        except OSError:
            pass  # Closed: the thread has ended.

    def _is_transport_event(self) -> bool:
        if (
            self.state_machine.current_state != _AWAITING_CLOSE
            and self.event_queue.empty()
        ):
            self._wait_for_peer_or_wake()
        return cast(bool, super()._is_transport_event())

    def _wait_for_peer_or_wake(self) -> None:
        """Block until the peer sends data, ``wake()`` is called or the interval ends.

        pynetdicom's own check runs straight after, so errors are left to it:
        it reports a closed or failed socket as Evt17.
        """
        transport = self.socket
        peer = transport.socket if transport is not None else None
        if peer is None:
            return
        pending = getattr(peer, "pending", None)
        if pending is not None and pending():
            return  # TLS has decrypted data buffered that select() cannot see.
        try:
            readable, _, _ = select.select(
                [peer, self._wake_reader], [], [], WAKE_INTERVAL_S
            )
        except (OSError, ValueError):
            return
        if self._wake_reader in readable:
            self._drain_wake_ups()

    def _drain_wake_ups(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass


class EventDrivenAssociation(Association):
    """An acceptor association whose thread blocks until a message arrives."""

    _activity: threading.Event

    def adopt(self) -> None:
        """Prepare an association built by pynetdicom, before it starts."""
        if self.is_alive() or not self.is_acceptor:
            raise RuntimeError("only an acceptor that has not started can be adopted")
        self._activity = threading.Event()
        self.dimse.msg_queue = NotifyingQueue(self._activity.set)
        self.dul.__class__ = EventDrivenDUL
        cast(EventDrivenDUL, self.dul).adopt(self._activity)

    def kill(self) -> None:
        self._kill = True
        self._activity.set()
        super().kill()

    def _run_reactor(self) -> None:
        """Serve DIMSE requests until the association ends.

        The checks and their order follow pynetdicom 3.0's acceptor loop: one
        queued message, then the peer's release request, an abort, the DUL
        thread's end and the network idle timeout. Only the waiting differs.
        """
        self._is_paused = False
        found_message = True
        while not self._kill:
            if not found_message:
                self._activity.wait(WAKE_INTERVAL_S)
            self._activity.clear()

            # A thread that sends on this association (send_c_store() from a
            # handler) clears the checkpoint and waits until the loop is
            # paused here, so the two do not take each other's responses.
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, message = self.dimse.get_msg(block=False)
            found_message = message is not None
            if message is not None:
                self._serve_request(message, cast(int, context_id))

            if self._association_ended():
                return

    def _association_ended(self) -> bool:
        """Act on a release, an abort, a stopped DUL or the idle timeout."""
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True

        if self.acse.is_aborted():
            # Take the abort primitive off the queue, as pynetdicom does, so
            # that EVT_ACSE_RECV fires for it.
            self.dul.receive_pdu(wait=False)
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True

        if not self.dul.is_alive():
            self.kill()
            return True

        if self.dul.idle_timer_expired():
            logger.error(
                "DICOM association with %s:%s idle for %s s: closing it",
                self.requestor.address,
                self.requestor.port,
                self.network_timeout,
            )
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return True

        return False


class EventDrivenRequestHandler(RequestHandler):
    """pynetdicom's request handler, making each association event-driven."""

    def _create_association(self) -> Association:
        # An accepted socket has no timeout of its own, so a peer that sends
        # part of a PDU and goes silent held the DUL thread in recv() and its
        # association slot forever, and MAXIMUM_ASSOCIATIONS such peers locked
        # every modality out. With the AE's network timeout the stalled read
        # fails and pynetdicom aborts the association.
        self.request.settimeout(self.ae.network_timeout)
        assoc = super()._create_association()
        assoc.__class__ = EventDrivenAssociation
        cast(EventDrivenAssociation, assoc).adopt()
        return assoc
