"""The child process that runs the image codecs for jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetlock.jobs import codec_process


@pytest.fixture
def codecs() -> Iterator[None]:
    yield
    codec_process.stop()


def test_runs_in_another_process(codecs: None) -> None:
    child = codec_process.run(os.getpid)

    assert child != os.getpid()
    assert codec_process.run(os.getpid) == child, "the child is kept between calls"


def test_exception_in_child_is_raised_here(codecs: None) -> None:
    with pytest.raises(ValueError, match="not-a-number"):
        codec_process.run(int, "not-a-number")


def test_dead_child_is_replaced(codecs: None) -> None:
    first = codec_process.run(os.getpid)

    # As a codec crashing on a damaged file would end it.
    with pytest.raises(codec_process.CodecProcessDied, match="_exit"):
        codec_process.run(os._exit, 70)

    second = codec_process.run(os.getpid)
    assert second != first
    assert second != os.getpid()


def test_disabled_runs_in_this_process(codecs: None) -> None:
    codec_process.start(enabled=False)
    try:
        assert codec_process.run(os.getpid) == os.getpid()
    finally:
        codec_process.start(enabled=True)
    assert codec_process.run(os.getpid) != os.getpid()


def _sleep_then_exit(seconds: float) -> None:
    time.sleep(seconds)
    os._exit(70)


def test_call_queued_behind_a_crash_is_retried(codecs: None) -> None:
    crashed: list[BaseException] = []

    def crash() -> None:
        try:
            codec_process.run(_sleep_then_exit, 0.5)
        except codec_process.CodecProcessDied as exc:
            crashed.append(exc)

    first = codec_process.run(os.getpid)
    crasher = threading.Thread(target=crash)
    crasher.start()
    time.sleep(0.2)

    # Queued while the crashing call runs; the crash fails it too, then the
    # retry runs it in a new child.
    survivor = codec_process.run(os.getpid)
    crasher.join(30)

    assert survivor != first
    assert len(crashed) == 1


def test_stuck_call_ends_the_child(
    codecs: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec_process, "CALL_TIMEOUT_S", 0.5)
    first = codec_process.run(os.getpid)

    with pytest.raises(codec_process.CodecProcessDied, match="more than"):
        codec_process.run(time.sleep, 30)

    assert codec_process.run(os.getpid) != first
    assert not _running(first)


def test_stop_ends_a_call_in_progress(codecs: None) -> None:
    child = codec_process.run(os.getpid)
    interrupted: list[BaseException] = []

    def stuck() -> None:
        try:
            codec_process.run(time.sleep, 60)
        except codec_process.CodecProcessDied as exc:
            interrupted.append(exc)

    caller = threading.Thread(target=stuck)
    caller.start()
    time.sleep(0.5)

    codec_process.stop()
    caller.join(10)

    assert not caller.is_alive(), "the call still waits for the stopped child"
    assert len(interrupted) == 1
    assert "stopped" in str(interrupted[0])
    deadline = time.monotonic() + 5
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child)


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_child_ends_when_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, time\n"
            "from fetlock.jobs import codec_process\n"
            "print(codec_process.run(os.getpid), flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _running(child)
    finally:
        parent.kill()
        parent.wait(30)

    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(child), f"codec process {child} outlived its parent"
