"""When this process last did work that someone is waiting for.

A modality sending a study waits for each C-STORE response before it sends
the next image. Every millisecond that the job worker in the same process
takes from the storing thread (the GIL, the SQLite write lock) therefore
slows the whole transfer. Storing an instance calls ``note_foreground_work()``.
The job worker started by ``fetlock serve`` then delays its next job until
the process has been quiet for ``QUIET_S``, or until the longest-waiting due
job is ``MAX_DEFER_S`` past its due time.

This is a per-process hint: workers in other processes do not see it and
need not, because they do not share a GIL with the storing thread.
"""

from __future__ import annotations

import time

# Quiet time after which the worker takes its next job. Longer than the gap
# between two images of one transfer (a few ms on a LAN), shorter than a
# person notices on the chart.
QUIET_S = 0.25
# Maximum time past its due time that a job is delayed while images keep
# arriving, so that a long transfer (a CT series) still gets its thumbnail
# and a sign-off its PDF.
MAX_DEFER_S = 1.0

_last_work_at = float("-inf")


def note_foreground_work() -> None:
    """Record that a request was served just now."""
    global _last_work_at
    _last_work_at = time.monotonic()


def seconds_since_foreground_work() -> float:
    return time.monotonic() - _last_work_at
