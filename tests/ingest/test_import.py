"""``fetlock import``: folders, DICOMDIRs and USB exports from plate software."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid
from sqlalchemy import func, select
from tests.ingest.conftest import ACTOR, write_instance

from fetlock.config import Settings
from fetlock.db.session import Database
from fetlock.imaging.folder_import import find_candidates, import_path
from fetlock.imaging.study_models import Instance
from fetlock.storage import LocalBlobStore

FETLOCK = Path(sys.executable).with_name("fetlock")


def _usb_export(root: Path, count: int = 3) -> list[Path]:
    """A plate software's export: DICOMDIR, extension-less files, a viewer."""
    staging = root.parent / "export-source"
    study_uid = generate_uid()
    file_set = FileSet()
    for n in range(count):
        path = write_instance(
            staging / f"{n}.dcm", study_uid=study_uid, InstanceNumber=n + 1
        )
        file_set.add(pydicom.dcmread(path))
    file_set.write(root)
    (root / "autorun.inf").write_text("[autorun]\nopen=viewer\\viewer.exe\n")
    (root / "viewer").mkdir()
    (root / "viewer" / "viewer.exe").write_bytes(b"MZ" + os.urandom(2000))
    return [Path(instance.path) for instance in FileSet(root / "DICOMDIR")]


def _instances(database: Database) -> int:
    with database.session() as db_session:
        return int(
            db_session.execute(select(func.count()).select_from(Instance)).scalar_one()
        )


def test_usb_export_imports_referenced_files_and_skips_the_viewer(
    database: Database, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    usb = tmp_path / "usb"
    files = _usb_export(usb)
    assert all(not f.suffix for f in files), "exports name files without extension"

    summary = import_path(database, usb, blobs=blobs, actor=ACTOR)

    assert (summary.stored, summary.duplicates, summary.failed) == (3, 0, [])
    assert summary.skipped == 3  # DICOMDIR, autorun.inf, viewer.exe
    assert _instances(database) == 3


def test_importing_the_dicomdir_itself_imports_what_it_names(
    database: Database, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    usb = tmp_path / "usb"
    _usb_export(usb, count=2)

    summary = import_path(database, usb / "DICOMDIR", blobs=blobs, actor=ACTOR)

    assert summary.stored == 2
    assert summary.ok


def test_file_named_by_the_dicomdir_but_missing_is_a_failure(
    database: Database, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    usb = tmp_path / "usb"
    files = _usb_export(usb)
    files[1].unlink()

    summary = import_path(database, usb, blobs=blobs, actor=ACTOR)

    assert summary.stored == 2
    assert len(summary.failed) == 1
    assert "is named in" in summary.failed[0][1]
    assert "missing from the medium" in summary.failed[0][1]


def test_candidates_include_extensionless_dicom_without_a_dicomdir(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "plate"
    write_instance(folder / "IM0001")
    (folder / "notes.txt").write_text("horse moved during LF LM")

    candidates, skipped, problems = find_candidates(folder)

    assert [c.path.name for c in candidates] == ["IM0001"]
    assert (skipped, problems) == (1, [])


@pytest.fixture
def cli_env(settings: Settings, database: Database) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FETLOCK_DATA_DIR=str(settings.data_dir),
        FETLOCK_DATABASE_URL=settings.effective_database_url,
    )
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FETLOCK), "import", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_reports_stored_duplicates_and_failures_and_exits_1(
    database: Database, cli_env: dict[str, str], tmp_path: Path
) -> None:
    usb = tmp_path / "usb"
    files = _usb_export(usb)
    whole = files[2].read_bytes()
    files[2].write_bytes(whole[: len(whole) // 2])

    first = _run(cli_env, str(usb))

    assert first.returncode == 1, first.stderr
    assert "2 stored, 0 already stored, 1 failed, 3 skipped" in first.stdout
    assert f"failed: {files[2]} is not a complete DICOM object" in first.stderr
    second = _run(cli_env, str(usb))
    assert "0 stored, 2 already stored, 1 failed" in second.stdout
    assert _instances(database) == 2


def test_cli_exits_0_when_everything_was_stored(
    database: Database, cli_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "clean"
    for n in range(2):
        write_instance(folder / f"{n}.dcm")

    result = _run(cli_env, str(folder))

    assert result.returncode == 0, result.stderr
    assert "2 stored" in result.stdout


def test_cli_names_a_path_that_does_not_exist(cli_env: dict[str, str]) -> None:
    result = _run(cli_env, "/nonexistent/usb")

    assert result.returncode == 2
    assert "/nonexistent/usb does not exist" in result.stderr
