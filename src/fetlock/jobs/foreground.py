"""When this process last did work that someone is waiting for.

A modality sending a study waits for each C-STORE response before it sends
the next image. Every millisecond that the job worker in the same process
takes from the storing thread (the GIL, the SQLite write lock) therefore
slows the whole transfer. Storing an instance calls ``note_foreground_work()``, and the
job worker started by ``fetlock serve`` holds its next job until the process
has been quiet for ``QUIET_S`` or has deferred that job for ``MAX_DEFER_S``.

This is a per-process hint: workers in other processes do not see it and
need not, because they do not share a GIL with the storing thread.
"""

from __future__ import annotations

import time

# Quiet time after which the worker takes its next job. Longer than the gap
# between two images of one transfer (a few ms on a LAN), shorter than a
# person notices on the chart.
QUIET_S = 0.25
# Longest one job is held back while work keeps arriving, so that a long
# transfer (a CT series) still gets its thumbnail and a sign-off its PDF.
MAX_DEFER_S = 1.0

_last_work_at = float("-inf")


def note_foreground_work() -> None:
    """Record that a request was served just now."""
    global _last_work_at
    _last_work_at = time.monotonic()


def seconds_since_foreground_work() -> float:
    return time.monotonic() - _last_work_at
