"""The local blob store: staged writes, no-overwrite publish, safe keys."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from fetlock.storage import InvalidBlobKey, LocalBlobStore


def test_publish_makes_staged_bytes_appear_under_key(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    staged = store.stage(io.BytesIO(b"first object"))

    assert store.publish(staged, "dicom/1.2/1.3/1.4.dcm") is True

    assert store.open("dicom/1.2/1.3/1.4.dcm").read() == b"first object"
    assert staged.size == len(b"first object")
    store.discard(staged)
    assert not staged.path.exists(), "discard removes the staging file"
    assert store.open("dicom/1.2/1.3/1.4.dcm").read() == b"first object"


def test_publish_never_replaces_a_stored_blob(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.publish(store.stage(io.BytesIO(b"original")), "a/b.dcm")
    second = store.stage(io.BytesIO(b"impostor"))

    assert store.publish(second, "a/b.dcm") is False

    assert store.open("a/b.dcm").read() == b"original"
    store.discard(second)
    assert not second.path.exists()


def test_stage_hashes_the_bytes(tmp_path: Path) -> None:
    import hashlib

    store = LocalBlobStore(tmp_path / "blobs")
    staged = store.stage(io.BytesIO(b"x" * 3_000_000))

    assert staged.sha256 == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert staged.size == 3_000_000


def test_consumed_temporary_file_is_linked_not_copied(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    temporary = tmp_path / "incoming.dcm"
    temporary.write_bytes(b"received over the network")

    staged = store.stage(temporary, consume=True)
    store.publish(staged, "k/v.dcm")

    stored = store.local_path("k/v.dcm")
    assert stored is not None
    assert os.stat(stored).st_ino == os.stat(temporary).st_ino
    assert temporary.exists(), "the caller's file is left for the caller to remove"


def test_a_file_not_consumed_is_copied(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    original = tmp_path / "usb" / "IM0001"
    original.parent.mkdir()
    original.write_bytes(b"from a USB stick")

    store.publish(store.stage(original), "k/v.dcm")

    stored = store.local_path("k/v.dcm")
    assert stored is not None
    assert os.stat(stored).st_ino != os.stat(original).st_ino
    assert stored.read_bytes() == b"from a USB stick"


@pytest.mark.parametrize(
    "key",
    ["", "../escape.dcm", "a/../../b", "/etc/passwd", "a//b", "a/b c", "a/.hidden"],
)
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "blobs")

    with pytest.raises(InvalidBlobKey, match="is not allowed"):
        store.put_bytes(key, b"x")


def test_put_bytes_replaces_a_derived_blob(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.put_bytes("thumbnails/1.jpg", b"old")
    store.put_bytes("thumbnails/1.jpg", b"new")

    assert store.open("thumbnails/1.jpg").read() == b"new"
    assert list(store.staging.iterdir()) == []


def test_clean_staging_removes_leftovers_of_a_crash(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    leftover = store.staging / "dead.part"
    leftover.write_bytes(b"half an object")

    assert store.clean_staging() == 1
    assert not leftover.exists()
