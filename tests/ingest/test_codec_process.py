"""The child process that runs the image codecs for jobs."""

from __future__ import annotations

import os
from collections.abc import Iterator

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
