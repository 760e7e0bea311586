"""The viewer in Chromium with images unlike the usual radiograph: no
(0008,0060) Modality, and PALETTE COLOR images with plain and with
segmented palette tables.

The images are real files (``deid-data``'s cat radiograph, pydicom's
ultrasound test images), given new UIDs and the demo horse Blaze's
identifiers, stored into the live server and attached to Blaze. One palette
image has its tables removed, for the error the viewer shows instead. Each
opens in a study of its own, as it would when it arrives alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from playwright.sync_api import Page, expect
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from tests.e2e.conftest import LiveServer
from tests.viewer.studydata import (
    StudyStore,
    cat_radiograph,
    radiograph_copy,
    today_minus,
)

from fetlock.practice.models import Horse
from fetlock.viewer.routes import VIEWER_BUILD_DIR

pytestmark = pytest.mark.browser

FIRST_IMAGE_MS = 60_000
CUT = (1200, 1400)  # rows and columns of the cut of the cat radiograph


@dataclass(frozen=True)
class Opened:
    study: str
    sop: str
    rows: int
    columns: int


@dataclass(frozen=True)
class Studies:
    no_modality: Opened
    palette: Opened
    segmented_palette: Opened
    palette_without_tables: Opened


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is not installed"
    return Path(path)


def copy_for(
    source: Path, target: Path, horse: Horse, edit: Callable[[Dataset], None]
) -> Path:
    """Write `source` with new UIDs and the horse's identifiers, then `edit`."""
    ds = pydicom.dcmread(source)
    ds.PatientID = horse.patient_id
    ds.PatientName = f"Demo^{horse.barn_name}"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate = today_minus(3)
    ds.StudyTime = "101500"
    ds.AccessionNumber = ""
    edit(ds)
    ds.save_as(target, enforce_file_format=True)
    return target


def no_edit(ds: Dataset) -> None:
    pass


def without_modality(ds: Dataset) -> None:
    del ds.Modality


def without_palette_tables(ds: Dataset) -> None:
    for colour in ("Red", "Green", "Blue"):
        delattr(ds, f"{colour}PaletteColorLookupTableData")


@pytest.fixture(scope="module")
def studies(
    live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Studies]:
    if not (VIEWER_BUILD_DIR / ".vite" / "manifest.json").exists():
        pytest.skip("viewer not built: run `make install` with Node.js and npm")
    folder = tmp_path_factory.mktemp("unusual-files")
    store = StudyStore(live_server.database_url, live_server.data_dir)
    horse = store.horse("Blaze")

    def stored(path: Path) -> Opened:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uid = store.store([path], horse).StudyInstanceUID
        return Opened(uid, str(ds.SOPInstanceUID), int(ds.Rows), int(ds.Columns))

    cut = radiograph_copy(
        cat_radiograph(),
        folder / "cut.dcm",
        horse,
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        study_date=today_minus(3),
        description="Left fore foot",
        body_part="HOOF",
        view="LF-LM",
        instance_number=1,
        crop=CUT,
    )
    palette = pydicom_file("OBXXXX1A.dcm")
    result = Studies(
        no_modality=stored(
            copy_for(cut, folder / "no-modality.dcm", horse, without_modality)
        ),
        palette=stored(copy_for(palette, folder / "palette.dcm", horse, no_edit)),
        segmented_palette=stored(
            copy_for(
                pydicom_file("gdcm-US-ALOKA-16.dcm"),
                folder / "segmented.dcm",
                horse,
                no_edit,
            )
        ),
        palette_without_tables=stored(
            copy_for(palette, folder / "no-tables.dcm", horse, without_palette_tables)
        ),
    )
    store.close()
    yield result


def viewer_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("window.fetlockViewer.state()")
    return state


def open_study(
    page: Page, live_server: LiveServer, uid: str, render: str = "auto"
) -> dict[str, Any]:
    """Open a study and wait for its first image or an error; return the state."""
    page.goto(live_server.url(f"/viewer/studies/{uid}?render={render}"))
    page.wait_for_function(
        "window.fetlockViewer && (window.fetlockViewer.state().firstImageAt"
        " || window.fetlockViewer.state().error)",
        timeout=FIRST_IMAGE_MS,
    )
    return viewer_state(page)


def canvas_colours(page: Page) -> dict[str, float]:
    """Share of lit and of coloured pixels in the first pane's canvas, and the
    mean red and blue of the coloured ones."""
    stats: dict[str, float] = page.evaluate(
        """() => {
          const canvas = document.querySelector('.pane-canvas canvas');
          const ctx = canvas.getContext('2d');
          const {data} = ctx.getImageData(0, 0, canvas.width, canvas.height);
          let lit = 0, coloured = 0, red = 0, blue = 0, n = data.length / 4;
          for (let i = 0; i < data.length; i += 4) {
            const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
            if (Math.max(r, g, b) > 16) lit++;
            if (Math.max(r, g, b) - Math.min(r, g, b) > 16) {
              coloured++; red += r; blue += b;
            }
          }
          return {lit: lit / n, coloured: coloured / n,
                  red: red / Math.max(1, coloured), blue: blue / Math.max(1, coloured)};
        }"""
    )
    return stats


def test_image_without_modality_is_shown(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    login(page, "vet")
    state = open_study(page, live_server, studies.no_modality.study)

    assert state["error"] is None, state["error"]
    (pane,) = state["panes"]
    assert pane["sopInstanceUID"] == studies.no_modality.sop
    assert (pane["rows"], pane["columns"]) == CUT
    assert canvas_colours(page)["lit"] > 0.2


@pytest.mark.parametrize("render", ["cpu", "gpu"])
@pytest.mark.parametrize("study_name", ["palette", "segmented_palette"])
def test_palette_image_drawn_in_colour(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
    study_name: str,
    render: str,
) -> None:
    image: Opened = getattr(studies, study_name)
    login(page, "vet")
    state = open_study(page, live_server, image.study, render)

    assert state["error"] is None, state["error"]
    (pane,) = state["panes"]
    assert pane["sopInstanceUID"] == image.sop
    assert (pane["rows"], pane["columns"]) == (image.rows, image.columns)
    # Both ultrasound images have a blue-grey palette for their text and
    # borders: about a tenth of the pixels once pydicom's apply_color_lut has
    # applied it. A grey rendering has no coloured pixels.
    colours = canvas_colours(page)
    assert colours["coloured"] > 0.05, colours
    assert colours["blue"] > colours["red"] + 20, colours


def test_palette_without_tables_shows_error(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    # A damaged copy of a palette image, with (0028,1201-1203) removed: the
    # viewer has nothing to draw it with.
    image = studies.palette_without_tables
    login(page, "vet")
    state = open_study(page, live_server, image.study)

    error = state["error"]
    assert error is not None
    assert image.sop in error
    assert "Red Palette Color Lookup Table Data (0028,1201)" in error
    assert "is missing" in error
    assert "open the study in Weasis" in error
    expect(page.locator("#viewer-error")).to_have_text(error)
    expect(page.locator("#viewer-error")).to_be_visible()
