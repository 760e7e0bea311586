"""Image decoding and encoding in a child process.

The image codecs hold the GIL while they run: OpenJPEG took 2 s to decode one
3072 x 3072 lossless JPEG 2000 frame of 12-bit noise here, and CharLS 0.4 s
to encode it as JPEG-LS. Run in the ``fetlock serve`` process, that time is
taken from every DICOM association and web request. So the jobs that render
thumbnails or keep JPEG-LS copies call ``run`` instead, and so do the DICOMweb
rendered and thumbnail resources. ``run`` does the work in one long-lived
child process (``bench/codec_stall_bench.py``). A codec that
crashes on a damaged file ends only the child: the call raises
``CodecProcessDied``, the job is retried later, and the next call starts a new
child.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar

logger = logging.getLogger(__name__)

# A new child after this many calls returns what the codecs allocated.
CALLS_PER_CHILD = 500
# Seconds one call may run before the child is presumed stuck and ended. The
# slowest real file measured took 5.5 s (docs/benchmarks.md).
CALL_TIMEOUT_S = 120.0
# Seconds between checks whether a queued call has started.
_QUEUED_POLL_S = 0.05
# Modules the child imports as soon as it starts, so that the first job after
# a start pays no import time.
_PRELOAD = ("fetlock.imaging.rendering", "fetlock.dicomweb.wado")

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_enabled = True
# Counts stop() calls, so that a call interrupted by one is not retried.
_generation = 0


class CodecProcessDied(RuntimeError):
    """The child process ended while it was decoding or encoding an image."""


def start(*, enabled: bool = True) -> None:
    """Start the child process and its imports now, without waiting for them.

    With ``enabled`` False (``Settings.codec_process``), ``run`` calls its
    function in this process instead.
    """
    global _enabled
    _enabled = enabled
    if enabled:
        _get_pool().submit(_preload)


def run(function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Call ``function(*args, **kwargs)`` in the child and return its result.

    ``function`` must be a module-level function, and its arguments and result
    picklable. Exceptions it raises are raised here. When the child dies, every
    call it had queued fails with it, so a call is made once more in a new
    child: only a call that ends that one too raises ``CodecProcessDied``.
    A call still running after ``CALL_TIMEOUT_S`` ends the child.
    """
    if not _enabled:
        return function(*args, **kwargs)
    generation = _generation
    for attempt in (1, 2):
        pool = _get_pool()
        try:
            future = pool.submit(function, *args, **kwargs)
        except BrokenProcessPool:
            _discard(pool)
            continue  # The child died before this call; nothing of it ran.
        except RuntimeError:
            if _pool is None or _pool is pool:
                raise  # Shut down by stop() or at interpreter exit.
            continue  # Discarded by another thread's call meanwhile.
        try:
            return _result(future)
        except BrokenProcessPool as exc:
            if generation != _generation:
                raise CodecProcessDied(
                    f"{function.__qualname__} was interrupted: the image codec "
                    "process was stopped"
                ) from exc
            _discard(pool)
            if attempt == 2:
                raise CodecProcessDied(
                    f"the image codec process ended twice during "
                    f"{function.__qualname__}; the image may be damaged, or the "
                    "process was killed"
                ) from exc
        except TimeoutError as exc:
            _discard(pool, kill=True)
            raise CodecProcessDied(
                f"{function.__qualname__} ran for more than {CALL_TIMEOUT_S:.0f} s "
                "in the image codec process, which was ended; the image may be "
                "damaged"
            ) from exc
    raise CodecProcessDied(
        f"the image codec process could not take {function.__qualname__}: it "
        "ended twice before the call was made"
    )


def _result(future: Future[R]) -> R:
    """Wait for ``future``, allowing ``CALL_TIMEOUT_S`` from when it starts.

    The pool marks a call running when it passes it to the child. The child
    queues at most one call behind the one it runs, and time queued before
    that does not count.
    """
    deadline: float | None = None
    while True:
        try:
            return future.result(timeout=_QUEUED_POLL_S if deadline is None else 1.0)
        except TimeoutError:
            now = time.monotonic()
            if deadline is None:
                if future.running():
                    deadline = now + CALL_TIMEOUT_S
            elif now >= deadline:
                raise


def stop() -> None:
    """End the child process at once; the next ``run`` starts another.

    Calls in progress raise ``CodecProcessDied`` instead of being retried.
    """
    global _pool, _generation
    with _lock:
        pool, _pool = _pool, None
        _generation += 1
    if pool is not None:
        _kill_children(pool)
        pool.shutdown(wait=False, cancel_futures=True)


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            # spawn, not fork: the server process has threads (DICOM, web)
            # whose locks a forked child would inherit held.
            _pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_child,
                initargs=(logging.getLogger().getEffectiveLevel(),),
                max_tasks_per_child=CALLS_PER_CHILD,
            )
        return _pool


def _discard(pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
    global _pool
    with _lock:
        if _pool is not pool:
            return  # Another thread has discarded it already.
        _pool = None
    if kill:
        _kill_children(pool)
    pool.shutdown(wait=False, cancel_futures=True)
    logger.warning("the image codec process was ended; the next call starts another")


def _kill_children(pool: ProcessPoolExecutor) -> None:
    # NOTE: ProcessPoolExecutor offers no way to end a busy worker; its
    # private ``_processes`` map is read here.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()


def _init_child(level: int) -> None:
    from fetlock.logs import configure_logging

    configure_logging(logging.getLevelName(level))
    # A pool's child waits on a queue whose writing end it also has open, so
    # it would outlive a parent killed with SIGKILL. Watch the parent instead.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with, args=(parent.sentinel,), daemon=True
        ).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _preload() -> None:
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)
