"""``fetlock import PATH``: the command-line face of ``folder_import``."""

from __future__ import annotations

import getpass
import time
from pathlib import Path

import typer

from fetlock.audit.service import Actor
from fetlock.config import Settings
from fetlock.imaging.folder_import import find_candidates, import_path
from fetlock.storage import get_blob_store

# Failures listed one by one in the summary; the rest are counted.
MAX_LISTED_FAILURES = 50


def run_import(settings: Settings, path: Path) -> int:
    """Import ``path``; print progress and a summary; return the exit status."""
    if not path.exists():
        typer.echo(
            f"error: {path} does not exist; give a folder, a DICOMDIR or a file",
            err=True,
        )
        return 2
    from fetlock.server import SetupError, open_database

    try:
        database = open_database(settings)
    except SetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    actor = Actor(name=f"import:{getpass.getuser()}")
    started = time.monotonic()
    try:
        candidates, skipped, problems = find_candidates(path)
        with typer.progressbar(
            length=len(candidates),
            label=f"Importing {len(candidates)} files",
            file=None,
        ) as progress:
            summary = import_path(
                database,
                path,
                blobs=get_blob_store(settings),
                actor=actor,
                candidates=candidates,
                on_file=lambda _candidate: progress.update(1),
            )
    finally:
        database.dispose()
    summary.skipped = skipped
    summary.failed[:0] = problems
    elapsed = time.monotonic() - started

    typer.echo(
        f"{summary.stored} stored, {summary.duplicates} already stored, "
        f"{len(summary.failed)} failed, {summary.skipped} skipped (not DICOM) "
        f"in {elapsed:.1f} s ({summary.bytes_stored / 1e6:.1f} MB stored)"
    )
    for _path, reason in summary.failed[:MAX_LISTED_FAILURES]:
        typer.echo(f"failed: {reason}", err=True)
    if len(summary.failed) > MAX_LISTED_FAILURES:
        typer.echo(
            f"... and {len(summary.failed) - MAX_LISTED_FAILURES} more failures",
            err=True,
        )
    return 1 if summary.failed else 0
