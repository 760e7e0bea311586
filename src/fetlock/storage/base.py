"""What every blob store offers, whatever keeps the bytes.

Writing takes two steps, so that nothing half-written is ever visible under a
key. ``stage`` copies the incoming bytes into a private staging file and
computes their SHA-256. ``publish`` makes the staged file appear under its
key in one atomic step, and does nothing if a blob is already there. Derived
files that may be regenerated, such as thumbnails, go through ``put_bytes``
instead, which replaces atomically.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

# One key segment: letters, digits, dot, dash and underscore, not starting
# with a dot (so never "." or "..").
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
MAX_KEY_LENGTH = 255


class InvalidBlobKey(ValueError):
    """A key with characters or segments that could escape the store."""


@dataclass
class StagedBlob:
    """Bytes copied into the store's staging area, not yet under any key.

    ``owned`` is True when the store created ``path`` and must remove it on
    ``discard``. A consumed temporary file of the caller is left to its owner.
    A store may still be hashing the bytes and making them durable when
    ``stage`` returns (``pending``), so that the caller can read the file in
    the meantime; ``sha256`` and ``wait_durable`` wait for that work.
    """

    path: Path
    size: int
    digest: str | None = None
    owned: bool = True
    pending: Future[str] | None = field(default=None, repr=False)

    @property
    def sha256(self) -> str:
        self.wait_durable()
        assert self.digest is not None
        return self.digest

    def wait_durable(self) -> None:
        """Block until the bytes are hashed and on stable storage."""
        if self.pending is not None:
            self.digest = self.pending.result()
            self.pending = None


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise InvalidBlobKey."""
    segments = key.split("/")
    if (
        not key
        or len(key) > MAX_KEY_LENGTH
        or not all(_SEGMENT.match(s) for s in segments)
    ):
        raise InvalidBlobKey(
            f"blob key {key!r} is not allowed; use '/'-separated segments of "
            f"letters, digits, '.', '-' and '_', at most {MAX_KEY_LENGTH} "
            "characters in all"
        )
    return key


class BlobStore(Protocol):
    """Storage of immutable blobs by key."""

    def stage(self, source: BinaryIO | Path, *, consume: bool = False) -> StagedBlob:
        """Copy ``source`` into staging durably and hash it.

        With ``consume`` the caller hands over a temporary file it will not
        change again, and the store may take it without copying.
        """
        ...

    def publish(self, staged: StagedBlob, key: str) -> bool:
        """Store ``staged`` under ``key``; False (nothing changed) if it exists.

        The staged copy stays readable until ``discard``.
        """
        ...

    def discard(self, staged: StagedBlob) -> None:
        """Forget a staged blob that will not be published."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store (or atomically replace) a small derived blob."""
        ...

    def open(self, key: str) -> BinaryIO:
        """Open a stored blob for reading; FileNotFoundError if absent."""
        ...

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield a stored blob's bytes in chunks."""
        ...

    def local_path(self, key: str) -> Path | None:
        """Return a filesystem path to the blob, or None for remote stores."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...
