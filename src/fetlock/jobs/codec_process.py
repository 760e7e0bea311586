"""Image decoding and encoding in a child process.

The image codecs hold the GIL while they run: OpenJPEG took 2 s to decode one
3072 x 3072 lossless JPEG 2000 frame of 12-bit noise here, and CharLS 0.4 s
to encode it as JPEG-LS. Run in the ``fetlock serve`` process, that time is
taken from every DICOM association and web request, so jobs that render
thumbnails or keep JPEG-LS copies, and the DICOMweb rendered and thumbnail
resources, call ``run`` instead, which does the work in one long-lived child
process (``bench/codec_stall_bench.py``). A codec that
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
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar

logger = logging.getLogger(__name__)

# A new child after this many calls returns what the codecs allocated.
CALLS_PER_CHILD = 500
# Modules the child imports as soon as it starts, so that the first job after
# a start pays no import time.
_PRELOAD = ("fetlock.imaging.rendering", "fetlock.dicomweb.wado")

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_enabled = True


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
    picklable. Exceptions it raises are raised here.
    """
    if not _enabled:
        return function(*args, **kwargs)
    pool = _get_pool()
    try:
        return pool.submit(function, *args, **kwargs).result()
    except BrokenProcessPool as exc:
        _discard(pool)
        raise CodecProcessDied(
            f"the image codec process ended during {function.__qualname__}; the "
            "image may be damaged. The job is retried, in a new process."
        ) from exc


def stop() -> None:
    """End the child process; the next ``run`` starts another."""
    with _lock:
        global _pool
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


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


def _discard(pool: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)
    logger.warning("the image codec process died; the next image job starts another")


def _init_child(level: int) -> None:
    from fetlock.logs import configure_logging

    configure_logging(logging.getLevelName(level))
    # A pool's child waits on a queue whose writing end it holds itself, so
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
