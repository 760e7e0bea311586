"""DICOM and web response times while jobs decode large JPEG 2000 images.

A fresh ``fetlock serve`` (SQLite, as installed) receives, from DCMTK's
``storescu``, ``--studies`` studies of one radiograph each: ``deid-data``'s
cat radiograph (3072 x 2614, 12 bits) compressed as JPEG 2000 lossless. Each
study starts two jobs that decode it: the chart thumbnail, and, once the study
has settled, the JPEG-LS copy the viewer asks for. From the moment
``storescu`` has finished until every thumbnail and copy exists, the script
sends a C-ECHO on one open association and requests ``/healthz``, one after
the other, and prints their round-trip times.

It does so twice, each time with a fresh server: with the codecs in their
child process (``FETLOCK_CODEC_PROCESS=true``, the default) and inside the
server process (``false``). OpenJPEG and CharLS hold the GIL while they run,
so in the second case the slowest responses wait for a whole decode.

Usage: ``.venv/bin/python bench/codec_stall_bench.py [--studies 4]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import pydicom  # noqa: E402
from bench.ingest_bench import free_port, wait_http  # noqa: E402
from pydicom.uid import JPEG2000Lossless, generate_uid  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import Verification  # noqa: E402
from tests.viewer.studydata import cat_radiograph  # noqa: E402

from fetlock.db.migrate import upgrade  # noqa: E402

DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")


def write_studies(folder: Path, count: int) -> list[Path]:
    """Write ``count`` single-image studies of the cat radiograph as JPEG 2000."""
    ds = pydicom.dcmread(cat_radiograph())
    ds.compress(JPEG2000Lossless)
    paths = []
    for index in range(count):
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"cat-{index}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def jobs_done(blob_dir: Path, count: int) -> bool:
    thumbnails = list((blob_dir / "thumbnails").glob("*/*.jpg"))
    copies = list((blob_dir / "derived" / "jpeg-ls").rglob("*.jls"))
    return len(thumbnails) >= count and len(copies) >= count


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(files: list[Path], codec_process: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="fetlock-codec-bench-") as tmp:
        data_dir = Path(tmp)
        url = f"sqlite:///{data_dir / 'fetlock.sqlite3'}"
        upgrade(url)
        http_port, dicom_port = free_port(), free_port()
        env = {
            **os.environ,
            "FETLOCK_DATA_DIR": str(data_dir),
            "FETLOCK_DATABASE_URL": url,
            "FETLOCK_HTTP_PORT": str(http_port),
            "FETLOCK_DICOM_PORT": str(dicom_port),
            "FETLOCK_DICOM_ALLOW_ANY_AE": "true",
            "FETLOCK_SECRET_KEY": "benchmark-secret-key",
            "FETLOCK_CODEC_PROCESS": str(codec_process).lower(),
        }
        log = data_dir / "serve.log"
        with log.open("ab") as out:
            server = subprocess.Popen(
                [str(Path(sys.executable).with_name("fetlock")), "serve"],
                env=env,
                stdout=out,
                stderr=out,
            )
        try:
            wait_http(http_port)
            ae = AE(ae_title="BENCH")
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", dicom_port, ae_title="FETLOCK")
            if not assoc.is_established:
                sys.exit(f"no association:\n{log.read_text()[-3000:]}")
            sent = subprocess.run(
                ["storescu", "-xv", "-aet", "BENCH", "-aec", "FETLOCK", "127.0.0.1",
                 str(dicom_port), *map(str, files)],
                env=DCMTK_ENV, capture_output=True, text=True,
            )  # fmt: skip
            if sent.returncode != 0:
                sys.exit(f"storescu failed: {sent.stderr}")
            echoes: list[float] = []
            pages: list[float] = []
            started = time.monotonic()
            blob_dir = data_dir / "blobs"
            with httpx.Client(base_url=f"http://127.0.0.1:{http_port}") as client:
                while not jobs_done(blob_dir, len(files)):
                    if time.monotonic() - started > 300:
                        tail = log.read_text()[-3000:]
                        sys.exit(f"jobs not done after 300 s:\n{tail}")
                    t0 = time.perf_counter()
                    status = assoc.send_c_echo()
                    echoes.append(time.perf_counter() - t0)
                    if int(status.Status) != 0:
                        sys.exit(f"C-ECHO failed: {status}")
                    t0 = time.perf_counter()
                    client.get("/healthz").raise_for_status()
                    pages.append(time.perf_counter() - t0)
                    time.sleep(0.01)
            assoc.release()
            return {
                "jobs_s": time.monotonic() - started,
                "echo": echoes,
                "page": pages,
            }
        finally:
            server.terminate()
            server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fetlock-codec-files-") as tmp:
        files = write_studies(Path(tmp), args.studies)
        size_mb = files[0].stat().st_size / 1e6
        print(
            f"{args.studies} studies of one {size_mb:.1f} MB JPEG 2000 lossless "
            f"radiograph; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
        )
        print(
            "| codecs | jobs done (s) | requests | C-ECHO median / p99 / max (ms) "
            "| /healthz median / p99 / max (ms) |"
        )
        print("| --- | ---: | ---: | --- | --- |")
        for codec_process in (True, False):
            result = run(files, codec_process)
            echo = result["echo"]
            page = result["page"]
            assert isinstance(echo, list) and isinstance(page, list)

            def figures(values: list[float]) -> str:
                return " / ".join(
                    f"{1000 * v:.0f}"
                    for v in (
                        statistics.median(values),
                        percentile(values, 0.99),
                        max(values),
                    )
                )

            where = "child process" if codec_process else "server process"
            print(
                f"| {where} | {result['jobs_s']:.1f} | {len(echo)} "
                f"| {figures(echo)} | {figures(page)} |"
            )


if __name__ == "__main__":
    main()
