"""Thumbnail rendering time and memory on real files of each kind.

For each file the script renders a 256-pixel thumbnail ``--runs`` times and
prints the median and slowest wall time. It then renders once more under
``tracemalloc`` and prints the peak of Python-traced memory. That includes
NumPy arrays but not the codecs' own C buffers. The files are the
public test sets installed with the dev extras: a DX radiograph (deid-data),
JPEG 2000 radiographs and ultrasound (pydicom-data), and two cines.

Usage: ``.venv/bin/python bench/render_bench.py [--runs 5]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import deid_data  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

from fetlock.imaging.rendering import render_thumbnail  # noqa: E402

DEID = Path(deid_data.__file__).parent / "data"


def _files() -> list[tuple[str, Path]]:
    def pydicom_file(name: str) -> Path:
        path = get_testdata_file(name)
        if path is None:
            raise SystemExit(
                f"pydicom test file {name} is missing; pip install -e '.[dev]'"
            )
        return Path(path)

    return [
        ("DX radiograph, native 16-bit", DEID / "animals" / "cat.dcm"),
        ("CR MONOCHROME1, JPEG 2000 lossless", pydicom_file("RG1_J2KR.dcm")),
        ("CR MONOCHROME1, native", pydicom_file("RG1_UNCR.dcm")),
        ("US RGB, JPEG 2000 lossless", pydicom_file("US1_J2KR.dcm")),
        (
            "US cine, 30 RGB frames, native",
            DEID / "ultrasounds" / "ultrasound-multiframe.dcm",
        ),
        ("US cine, 120 YBR frames, JPEG", pydicom_file("color3d_jpeg_baseline.dcm")),
    ]


def _describe(path: Path) -> str:
    ds = dcmread(path, stop_before_pixels=True)
    frames = int(ds.get("NumberOfFrames") or 1)
    return f"{ds.Columns}x{ds.Rows}x{frames}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed renders per file")
    args = parser.parse_args()

    print(
        f"# {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores"
    )
    print(f"# load average at start: {os.getloadavg()[0]:.1f}")
    print(
        f"{'file':38} {'size MB':>8} {'pixels':>14} {'median ms':>10} "
        f"{'max ms':>8} {'peak MB':>8}"
    )
    for label, path in _files():
        render_thumbnail(path)  # warm the decoders
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            render_thumbnail(path)
            times.append((time.perf_counter() - start) * 1000)
        tracemalloc.start()
        render_thumbnail(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(
            f"{label:38} {path.stat().st_size / 1e6:8.1f} {_describe(path):>14} "
            f"{statistics.median(times):10.0f} {max(times):8.0f} {peak / 1e6:8.1f}"
        )


if __name__ == "__main__":
    main()
