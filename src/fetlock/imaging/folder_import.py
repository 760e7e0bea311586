"""Import DICOM files from a folder, a DICOMDIR or a plate software's USB export.

Which files are tried:

- every file a DICOMDIR names (PS3.10 8, the (0004,1500) Referenced File ID
  of its records), wherever the DICOMDIR is in the tree;
- every other file that looks like DICOM: a PS3.10 preamble with ``DICM``, a
  ``.dcm`` or ``.dicom`` name, or a bare data set starting with a group 0002
  or 0008 element.

Anything else on the medium (a viewer program, autorun files, HTML) is
skipped and counted, not reported as a failure. A file that was tried and
refused is a failure, with the reason ``store_instance`` gave.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fetlock.audit.service import Actor
from fetlock.db.session import Database
from fetlock.imaging.ingest import StoreStatus, store_instance
from fetlock.storage import BlobStore

logger = logging.getLogger(__name__)

DICOMDIR_NAME = "DICOMDIR"
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
# Groups a bare data set (no preamble) starts with: File Meta or Identifying.
_BARE_FIRST_GROUPS = frozenset({0x0002, 0x0008})


@dataclass
class ImportSummary:
    """What an import did, file by file where it matters."""

    stored: int = 0
    duplicates: int = 0
    skipped: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    bytes_stored: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class Candidate:
    """A file to try, and whether a DICOMDIR vouched for it."""

    path: Path
    referenced: bool


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
    except OSError:
        return True  # let the import report why it cannot be read
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) >= 4:
        group = struct.unpack("<H", head[:2])[0]
        return group in _BARE_FIRST_GROUPS
    return False


def _referenced_files(dicomdir: Path) -> tuple[list[Path], str | None]:
    """Files named by a DICOMDIR, or an error explaining why it is unreadable.

    Media written on Windows or ISO 9660 often differ in letter case from the
    Referenced File IDs, so a name that is not found as written is looked up
    without regard to case.
    """
    from pydicom import dcmread

    try:
        ds = dcmread(dicomdir)
        records = ds.DirectoryRecordSequence
    except Exception as exc:  # pydicom raises many kinds for a broken DICOMDIR
        return [], f"{dicomdir}: the DICOMDIR cannot be read: {exc}"
    files: list[Path] = []
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else [str(p) for p in file_id]
        files.append(_resolve(dicomdir.parent, parts))
    return files, None


def _resolve(base: Path, parts: list[str]) -> Path:
    path = base
    for part in parts:
        exact = path / part
        if exact.exists() or not path.is_dir():
            path = exact
            continue
        matches = [p for p in path.iterdir() if p.name.upper() == part.upper()]
        path = matches[0] if matches else exact
    return path.resolve()


def find_candidates(
    root: Path,
) -> tuple[list[Candidate], int, list[tuple[Path, str]]]:
    """Return the files to try, the number skipped, and unreadable DICOMDIRs."""
    root = root.resolve()
    problems: list[tuple[Path, str]] = []
    if root.is_file():
        if root.name.upper() == DICOMDIR_NAME:
            files, problem = _referenced_files(root)
            if problem:
                problems.append((root, problem))
            return [Candidate(p, True) for p in files], 0, problems
        return [Candidate(root, True)], 0, problems

    all_files = sorted(_walk(root))
    referenced: set[Path] = set()
    for path in all_files:
        if path.name.upper() == DICOMDIR_NAME:
            files, problem = _referenced_files(path)
            if problem:
                problems.append((path, problem))
            referenced.update(p.resolve() for p in files)
            problems.extend(
                (p, f"{p} is named in {path} but missing from the medium")
                for p in files
                if not p.exists()
            )
    candidates: list[Candidate] = []
    skipped = 0
    for path in all_files:
        if path.name.upper() == DICOMDIR_NAME:
            skipped += 1
        elif path in referenced:
            candidates.append(Candidate(path, True))
        elif _looks_like_dicom(path):
            candidates.append(Candidate(path, False))
        else:
            skipped += 1
    return candidates, skipped, problems


def _walk(root: Path) -> Iterator[Path]:
    for directory, _dirs, files in os.walk(root):
        for name in files:
            yield (Path(directory) / name).resolve()


def import_path(
    database: Database,
    root: Path,
    *,
    blobs: BlobStore,
    actor: Actor,
    on_file: Callable[[Candidate], None] | None = None,
    candidates: list[Candidate] | None = None,
) -> ImportSummary:
    """Store every DICOM file under ``root``; never stops at a bad file."""
    summary = ImportSummary()
    if candidates is None:
        candidates, summary.skipped, problems = find_candidates(root)
        summary.failed.extend(problems)
    for candidate in candidates:
        try:
            result = store_instance(
                database,
                candidate.path,
                blobs=blobs,
                actor=actor,
                name=str(candidate.path),
            )
        except OSError as exc:
            summary.failed.append(
                (candidate.path, f"{candidate.path} cannot be read: {exc.strerror}")
            )
            if on_file is not None:
                on_file(candidate)
            continue
        if result.status is StoreStatus.STORED:
            summary.stored += 1
            summary.bytes_stored += result.size_bytes
        elif result.status is StoreStatus.DUPLICATE:
            summary.duplicates += 1
        else:
            summary.failed.append((candidate.path, result.reason or "refused"))
        if on_file is not None:
            on_file(candidate)
    logger.info(
        "import of %s: %d stored, %d duplicates, %d skipped, %d failed",
        root,
        summary.stored,
        summary.duplicates,
        summary.skipped,
        len(summary.failed),
    )
    return summary
