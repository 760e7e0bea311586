"""The blob store: received DICOM objects and derived files, by key.

``BlobStore`` is the interface; ``LocalBlobStore`` keeps blobs in a directory
(``Settings.blob_dir``). An S3-compatible backend implements the same methods,
with ``publish`` as a conditional put (``If-None-Match: *``).
"""

from fetlock.storage.base import (
    BlobStore,
    InvalidBlobKey,
    StagedBlob,
    check_key,
)
from fetlock.storage.local import LocalBlobStore, get_blob_store

__all__ = [
    "BlobStore",
    "InvalidBlobKey",
    "LocalBlobStore",
    "StagedBlob",
    "check_key",
    "get_blob_store",
]
