"""Blob store in a local directory, with atomic, durable, no-overwrite writes.

Layout under the root: blobs at their key's path, and ``.staging/`` for files
being written. A staged file is fsynced before it is published. ``publish``
hard-links it under its key, and ``link`` fails if the key exists, so a
stored blob is never replaced. Whenever the process dies, a blob is either
complete under its key or not there at all. Staging files left by a crash are
removed by ``clean_staging``.

New directories are fsynced into their parents. The directory entry of each
published blob is not fsynced one by one: that doubled the cost of storing
an instance on the disks measured. On a journalling filesystem the entry is
committed no later than the index row written after it, since the SQLite
index in WAL mode with ``synchronous=NORMAL`` is itself made durable by later
checkpoints, not at each commit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from fetlock.config import Settings
from fetlock.storage.base import StagedBlob, check_key

logger = logging.getLogger(__name__)

# Read and write buffer for copies and hashing.
CHUNK_SIZE = 1 << 20
# Threads that hash and fsync adopted files while the caller reads them, and
# that fsync while they hash; a few each, for concurrent associations.
_BACKGROUND = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fetlock-stage")
_FSYNC = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fetlock-fsync")
STAGING_DIR = ".staging"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore:
    """A ``BlobStore`` over one directory tree."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.staging = self.root / STAGING_DIR
        self.staging.mkdir(parents=True, exist_ok=True)
        self._device = os.stat(self.root).st_dev

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    # Writing: stage, then publish.

    def stage(self, source: BinaryIO | Path, *, consume: bool = False) -> StagedBlob:
        if isinstance(source, Path) and consume and self._same_device(source):
            return self._adopt(source)
        path = self.staging / f"{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(path, "xb") as out:
                if isinstance(source, Path):
                    with open(source, "rb") as src:
                        size = _copy(src, out, digest)
                else:
                    size = _copy(source, out, digest)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedBlob(path=path, size=size, digest=digest.hexdigest())

    def _same_device(self, path: Path) -> bool:
        try:
            return os.stat(path).st_dev == self._device
        except OSError:
            return False

    def _adopt(self, path: Path) -> StagedBlob:
        # The caller's temporary file is on this filesystem, so it is hashed
        # and made durable in place, in the background while the caller reads
        # it. Publish then links it without copying the bytes.
        return StagedBlob(
            path=path,
            size=os.stat(path).st_size,
            owned=False,
            pending=_BACKGROUND.submit(_hash_and_sync, path),
        )

    def publish(self, staged: StagedBlob, key: str) -> bool:
        staged.wait_durable()
        final = self._path(key)
        self._make_parents(final.parent)
        try:
            os.link(staged.path, final)
        except FileExistsError:
            return False
        return True

    def discard(self, staged: StagedBlob) -> None:
        if staged.owned:
            staged.path.unlink(missing_ok=True)

    def _make_parents(self, directory: Path) -> None:
        # Create missing directories and fsync each new entry's parent, so the
        # path to a published blob survives a crash too.
        missing: list[Path] = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                continue
            _fsync_dir(path.parent)

    def put_bytes(self, key: str, data: bytes) -> None:
        final = self._path(key)
        self._make_parents(final.parent)
        path = self.staging / f"{uuid.uuid4().hex}.part"
        try:
            with open(path, "xb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(path, final)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)

    # Reading.

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        with self.open(key) as stream:
            while chunk := stream.read(chunk_size):
                yield chunk

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    # Housekeeping.

    def clean_staging(self, older_than_s: float = 0.0) -> int:
        """Remove staging files older than ``older_than_s``; return how many."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self.staging.glob("*.part"):
            try:
                if path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            logger.info("removed %d unfinished staging files from %s", removed, self)
        return removed


def _hash_and_sync(path: Path) -> str:
    """Hash a file and fsync it; both release the GIL, so they overlap."""
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        synced = _FSYNC.submit(os.fsync, src.fileno())
        while chunk := src.read(CHUNK_SIZE):
            digest.update(chunk)
        synced.result()
    return digest.hexdigest()


def _copy(src: BinaryIO, out: BinaryIO, digest: hashlib._Hash) -> int:
    size = 0
    while chunk := src.read(CHUNK_SIZE):
        out.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    return size


@lru_cache(maxsize=8)
def _store_for(root: Path) -> LocalBlobStore:
    return LocalBlobStore(root)


def get_blob_store(settings: Settings) -> LocalBlobStore:
    """Return the blob store configured by ``settings`` (one per directory)."""
    return _store_for(settings.blob_dir.resolve())


__all__ = ["LocalBlobStore", "get_blob_store"]
