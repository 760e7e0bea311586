"""Ingest over C-STORE: Fetlock against Orthanc, and the time to the chart.

DCMTK's ``storescu`` sends the same files, in one association per set, to a
fresh ``fetlock serve`` (SQLite, as installed) and to a fresh Orthanc (its
default SQLite index and storage directory), one server at a time:

* (a) small instances: copies of pydicom's ``CT_small.dcm`` (39 KB), ten per
  study, each with new UIDs;
* (b) radiographs: copies of pydicom-data's ``RG1_UNCR.dcm`` (a 7.2 MB
  uncompressed CR), ten per study.

For each set and server the script prints instances per second and MB per
second (from the start of ``storescu`` to its exit, every response
received) and the server's peak resident memory (``VmHWM``; for Fetlock, the
main process and its thumbnail process apart). Each set is sent
``--rounds`` times to each server, alternating, each time to a fresh server;
the table keeps each server's best round, so that other work on the machine
disturbs the comparison less. Then,
for Fetlock alone, it times the chart: a horse has an order; ``storescu``
sends three radiographs with its Accession Number; the clock runs from
``storescu``'s exit (the last image acknowledged) until the chart's studies
fragment shows the study with its thumbnail (polled every 20 ms; a browser
polls every 2 s, which adds up to 2 s to what a person sees).

Orthanc 1.10 listens on every interface and cannot be told otherwise, so the
script re-runs itself inside a new network namespace (``unshare --net``) that
has nothing but a loopback interface; where that is not possible it measures
Fetlock alone. DCMTK and Orthanc run with ``TCP_NODELAY=1``; Fetlock needs
no such setting.

Usage: ``.venv/bin/python bench/ingest_bench.py [--small 500]
[--radiographs 100] [--trials 5] [--no-orthanc]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import pydicom  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from fetlock.audit.service import Actor  # noqa: E402
from fetlock.auth.models import Role  # noqa: E402
from fetlock.auth.service import create_user  # noqa: E402
from fetlock.config import Settings  # noqa: E402
from fetlock.db.migrate import upgrade  # noqa: E402
from fetlock.db.session import Database  # noqa: E402
from fetlock.imaging import service as imaging_service  # noqa: E402
from fetlock.imaging.schemas import OrderCreate, StationIn  # noqa: E402
from fetlock.imaging.study_models import Instance  # noqa: E402
from fetlock.practice import service as practice  # noqa: E402

NETNS_FLAG = "FETLOCK_BENCH_IN_NETNS"
ORTHANC = "/usr/sbin/Orthanc"
CALLING_AE = "BENCH"
PER_STUDY = 10
PASSWORD = "benchmark-password"
ACTOR = Actor(name="benchmark")
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def reexec_in_netns() -> None:
    """Run this script again inside a network namespace with only loopback."""
    if os.environ.get(NETNS_FLAG):
        return
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        os.environ[NETNS_FLAG] = "unavailable"
        return
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    if probe.returncode != 0:
        print("unshare --net is not permitted here; measuring Fetlock only")
        os.environ[NETNS_FLAG] = "unavailable"
        return
    command = "ip link set lo up && exec " + " ".join(
        f"'{a}'" for a in [sys.executable, *sys.argv]
    )
    env = {**os.environ, NETNS_FLAG: "1"}
    result = subprocess.run(["unshare", "--net", "sh", "-c", command], env=env)
    sys.exit(result.returncode)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def testdata(name: str) -> Path:
    found = get_testdata_file(name)
    if found is None:
        sys.exit(f"{name} is missing; install the dev extras (pydicom-data)")
    return Path(found)


def make_files(out: Path, source: Path, count: int, **attributes: object) -> Path:
    """Write ``count`` copies of ``source`` with new UIDs, PER_STUDY per study."""
    out.mkdir(parents=True)
    ds = pydicom.dcmread(source)
    for key, value in attributes.items():
        setattr(ds, key, value)
    for index in range(count):
        if index % PER_STUDY == 0:
            ds.StudyInstanceUID = generate_uid()
            ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = index % PER_STUDY + 1
        ds.save_as(out / f"IM{index:05d}.dcm", enforce_file_format=True)
    return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children_peak_rss_mb(pid: int) -> float:
    """Largest peak RSS among a process's children (Fetlock's render process)."""
    peaks = [0.0]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                peaks.append(peak_rss_mb(int(child)))
            except OSError:
                continue
    return max(peaks)


def wait_http(port: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def echo(port: int, called_ae: str) -> bool:
    result = subprocess.run(
        ["echoscu", "-aet", CALLING_AE, "-aec", called_ae, "127.0.0.1", str(port)],
        env=DCMTK_ENV,
        capture_output=True,
    )
    return result.returncode == 0


def storescu(port: int, called_ae: str, *paths: Path) -> float:
    """Send files in one association; return the seconds it took."""
    started = time.perf_counter()
    result = subprocess.run(
        ["storescu", "-aet", CALLING_AE, "-aec", called_ae, "+sd", "127.0.0.1",
         str(port), *map(str, paths)],
        env=DCMTK_ENV,
        capture_output=True,
        text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"storescu failed: {result.stderr[-2000:]}")
    return elapsed


class Server:
    name: str
    called_ae: str
    dicom_port: int
    process: subprocess.Popen[bytes]

    def wait_ready(self, log: Path) -> None:
        deadline = time.monotonic() + 120
        while not echo(self.dicom_port, self.called_ae):
            if self.process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{self.name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stored(self) -> int:
        raise NotImplementedError


class FetlockServer(Server):
    name = "Fetlock"
    called_ae = "FETLOCK"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.url = f"sqlite:///{data_dir / 'fetlock.sqlite3'}"
        upgrade(self.url)
        self.http_port = free_port()
        self.dicom_port = free_port()

    def start(self) -> None:
        env = {
            **os.environ,
            "FETLOCK_DATA_DIR": str(self.data_dir),
            "FETLOCK_DATABASE_URL": self.url,
            "FETLOCK_HTTP_PORT": str(self.http_port),
            "FETLOCK_DICOM_PORT": str(self.dicom_port),
            "FETLOCK_DICOM_ALLOW_ANY_AE": "true",
            "FETLOCK_SECRET_KEY": "benchmark-secret-key",
        }
        env.pop("TCP_NODELAY", None)
        log = self.data_dir / "serve.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("fetlock")), "serve"],
                env=env,
                stdout=out,
                stderr=out,
            )
        self.wait_ready(log)
        # The DICOM listener starts before the web app is built; measure once
        # the whole server is up, as it is in use.
        wait_http(self.http_port)

    def stored(self) -> int:
        database = Database(self.url)
        try:
            with database.session() as db_session:
                return int(
                    db_session.execute(
                        select(func.count()).select_from(Instance)
                    ).scalar_one()
                )
        finally:
            database.dispose()


class OrthancServer(Server):
    name = "Orthanc"
    called_ae = "ORTHANC"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.http_port = free_port()
        self.dicom_port = free_port()

    def start(self) -> None:
        config = {
            "Name": "bench",
            "StorageDirectory": str(self.data_dir / "storage"),
            "IndexDirectory": str(self.data_dir / "index"),
            "DicomAet": self.called_ae,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "DicomCheckCalledAet": False,
            "Plugins": [],
        }
        path = self.data_dir / "orthanc.json"
        path.write_text(json.dumps(config))
        log = self.data_dir / "orthanc.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [ORTHANC, str(path)], env=DCMTK_ENV, stdout=out, stderr=out
            )
        self.wait_ready(log)

    def stored(self) -> int:
        response = httpx.get(f"http://127.0.0.1:{self.http_port}/statistics")
        return int(response.json()["CountInstances"])


@dataclass
class Run:
    server: str
    files: int
    megabytes: float
    seconds: float
    peak_rss_mb: float
    helper_rss_mb: float = 0.0

    @property
    def per_second(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.megabytes / self.seconds


def measure(server: Server, directory: Path) -> Run:
    files = sorted(directory.iterdir())
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    server.start()
    try:
        seconds = storescu(server.dicom_port, server.called_ae, directory)
        rss = peak_rss_mb(server.process.pid)
        helper = children_peak_rss_mb(server.process.pid)
        stored = server.stored()
    finally:
        server.stop()
    if stored != len(files):
        sys.exit(f"{server.name} stored {stored} of {len(files)} instances")
    return Run(server.name, len(files), megabytes, seconds, rss, helper)


def chart_latency(work: Path, trials: int) -> tuple[list[float], list[float]]:
    """Seconds from the last image to the study, then its thumbnail, on the chart."""
    server = FetlockServer(work / "chart-fetlock")
    settings = Settings(data_dir=server.data_dir, database_url=server.url)
    database = Database(server.url)
    with database.session() as db_session:
        vet = create_user(
            db_session,
            username="bench-vet",
            full_name="Bench Vet",
            role=Role.VETERINARIAN,
            password=PASSWORD,
        )
        owner = practice.create_client(
            db_session, ACTOR, kind="person", given_name="Sam", family_name="Turner"
        )
        horse = practice.create_horse(
            db_session, ACTOR, barn_name="Pickle", species="horse", sex="mare"
        )
        practice.set_owners_from(
            db_session,
            ACTOR,
            horse,
            dt.date(2020, 1, 1),
            [practice.ShareInput(owner.id, 10000)],
        )
        imaging_service.save_station(
            db_session,
            ACTOR,
            StationIn(ae_title=CALLING_AE, host="127.0.0.1", port=104, modality="DX"),
        )
        horse_id, patient_id, vet_id = horse.id, horse.patient_id, vet.id
    server.start()
    shown: list[float] = []
    thumbnails: list[float] = []
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}")
        login = client.post(
            "/login", data={"username": "bench-vet", "password": PASSWORD}
        )
        if login.status_code >= 400:
            sys.exit(f"cannot log in to the benchmark server: {login.text}")
        for trial in range(trials):
            with database.session() as db_session:
                order = imaging_service.create_order(
                    db_session,
                    ACTOR,
                    settings,
                    horse_id,
                    OrderCreate(
                        procedure_code="RAD-NAV",
                        limb="LF",
                        station_ae_title=CALLING_AE,
                        requesting_clinician_id=vet_id,
                    ),
                )
                accession = order.accession_number
            study = make_files(
                work / f"chart-{trial}",
                testdata("RG1_UNCR.dcm"),
                3,
                PatientID=patient_id,
                AccessionNumber=accession,
            )
            study_uid = pydicom.dcmread(
                next(study.iterdir()), stop_before_pixels=True
            ).StudyInstanceUID
            storescu(server.dicom_port, server.called_ae, study)
            last_image = time.perf_counter()
            seen: float | None = None
            while True:
                html = client.get(f"/horses/{horse_id}/studies-section").text
                item = _study_item(html, study_uid)
                now = time.perf_counter() - last_image
                if item is not None and seen is None:
                    seen = now
                if item is not None and "study-thumbnail" in item:
                    shown.append(seen if seen is not None else now)
                    thumbnails.append(now)
                    break
                if now > 60:
                    sys.exit("no thumbnail on the chart after 60 s")
                time.sleep(0.02)
    finally:
        server.stop()
        database.dispose()
    return shown, thumbnails


def _study_item(html: str, study_uid: str) -> str | None:
    match = re.search(
        rf'<li class="study" data-study-uid="{re.escape(study_uid)}".*?</li>',
        html,
        re.S,
    )
    return match.group(0) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--radiographs", type=int, default=100)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-orthanc", action="store_true")
    args = parser.parse_args()
    with_orthanc = not args.no_orthanc and os.path.exists(ORTHANC)
    if with_orthanc:
        reexec_in_netns()
        with_orthanc = os.environ.get(NETNS_FLAG) == "1"

    with tempfile.TemporaryDirectory(prefix="fetlock-ingest-bench-") as tmp:
        work = Path(tmp)
        print(
            f"writing {args.small} small instances and {args.radiographs} radiographs"
        )
        sets = {
            "small instances": make_files(
                work / "small", testdata("CT_small.dcm"), args.small
            ),
            "radiographs": make_files(
                work / "radiographs", testdata("RG1_UNCR.dcm"), args.radiographs
            ),
        }
        runs: list[tuple[str, Run]] = []
        count = 0
        for label, directory in sets.items():
            best: dict[str, Run] = {}
            for _round in range(args.rounds):
                servers: list[Server] = [FetlockServer(work / f"fetlock-{count}")]
                if with_orthanc:
                    servers.append(OrthancServer(work / f"orthanc-{count}"))
                count += 1
                for server in servers:
                    server.data_dir.mkdir(parents=True, exist_ok=True)
                    run = measure(server, directory)
                    shutil.rmtree(server.data_dir, ignore_errors=True)
                    print(
                        f"{label:16} {run.server:8} {run.files:4} files "
                        f"{run.megabytes:8.1f} MB {run.seconds:7.2f} s "
                        f"{run.per_second:8.1f} inst/s {run.mb_per_second:7.1f} MB/s "
                        f"peak RSS {run.peak_rss_mb:6.0f} MB"
                        + (f" (+{run.helper_rss_mb:.0f})" if run.helper_rss_mb else "")
                    )
                    kept = best.get(run.server)
                    if kept is None or run.seconds < kept.seconds:
                        run.peak_rss_mb = max(
                            run.peak_rss_mb, kept.peak_rss_mb if kept else 0
                        )
                        best[run.server] = run
                    else:
                        kept.peak_rss_mb = max(kept.peak_rss_mb, run.peak_rss_mb)
            runs.extend((label, run) for run in best.values())
        shown, thumbnails = chart_latency(work, args.trials)

    print()
    print(f"machine: {os.cpu_count()} cores, {platform.platform()}, Python "
          f"{platform.python_version()}")  # fmt: skip
    print()
    print(f"best of {args.rounds} rounds per server")
    print("| set | server | instances/s | MB/s | peak RSS (MB) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for label, run in runs:
        helper = f" + {run.helper_rss_mb:.0f} render" if run.helper_rss_mb else ""
        print(
            f"| {label} ({run.files} × {run.megabytes / run.files:.2f} MB) | "
            f"{run.server} | {run.per_second:.1f} | {run.mb_per_second:.1f} | "
            f"{run.peak_rss_mb:.0f}{helper} |"
        )
    print()
    print(
        f"last image to study on the chart: median {statistics.median(shown):.2f} s, "
        f"max {max(shown):.2f} s; to its thumbnail: median "
        f"{statistics.median(thumbnails):.2f} s, max {max(thumbnails):.2f} s "
        f"({len(thumbnails)} studies of 3 radiographs)"
    )


if __name__ == "__main__":
    main()
