"""Modality Worklist C-FIND latency: Fetlock against DCMTK's wlmscpfs.

Both servers hold the same 10,000 scheduled items (about a thirtieth of them
today): Fetlock in its database, served by ``fetlock serve`` in a process of its
own, wlmscpfs as one ``.wl`` file per item written with pydicom. One
pynetdicom client sends the same queries to each, opening an
association per query as a modality does, and the script prints the median and
95th percentile latency of

* today's items: SPS Start Date = today, Modality = DX, usual return keys;
* a Patient's Name wildcard: ``Ash*`` (one owner family in twenty) on any day.

Latency runs from A-ASSOCIATE-RQ to the A-RELEASE response, all responses
received. wlmscpfs listens on every interface and has no option to bind to
loopback only. So the script re-runs itself inside a new network namespace
(``unshare --net``) that has nothing but a loopback interface. Where that is
not possible, it measures Fetlock alone.

Usage: ``.venv/bin/python bench/mwl_bench.py [--items 10000] [--runs 30]``
(``--database-url`` to measure on PostgreSQL instead of a fresh SQLite file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # noqa: E402
    ModalityWorklistInformationFind,
)
from tests.imaging_testdata import (  # noqa: E402
    ACTOR,
    build_practice,
    bulk_worklist,
    free_port,
)

from fetlock.config import Settings  # noqa: E402
from fetlock.db.migrate import upgrade  # noqa: E402
from fetlock.db.session import Database  # noqa: E402
from fetlock.dicom import mapping, worklist  # noqa: E402
from fetlock.imaging import service  # noqa: E402
from fetlock.practice import service as practice  # noqa: E402

NETNS_FLAG = "FETLOCK_BENCH_IN_NETNS"
CALLED_AE = "FETLOCK"
CALLING_AE = "DR_STALL1"
DAYS = 30
FAMILIES = (
    "Ashworth Baker Carrington Dubois Evans Fairweather Gallagher Hollis Ibáñez "
    "Jones Kavanagh Llewellyn Müller Nair O'Connell Pritchard Quinn Ryan "
    "Søndergaard Turner"
).split()
HORSE_NAMES = (
    "Monty Storm Pickle Bramble Jasper Mabel Duke Bella Pepper Archie Rosie "
    "Flynn Biscuit Zephyr Luna Rio Tango Willow Hazel Murphy"
).split()


def reexec_in_netns() -> None:
    """Run this script again inside a network namespace with only loopback."""
    if os.environ.get(NETNS_FLAG) or shutil.which("wlmscpfs") is None:
        return
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return
    command = "ip link set lo up && exec " + " ".join(
        f"'{a}'" for a in [sys.executable, *sys.argv]
    )
    env = {**os.environ, NETNS_FLAG: "1"}
    probe = subprocess.run(
        ["unshare", "--net", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        print("unshare --net is not permitted here; measuring Fetlock only")
        os.environ[NETNS_FLAG] = "unavailable"
        return
    result = subprocess.run(["unshare", "--net", "sh", "-c", command], env=env)
    sys.exit(result.returncode)


def seed(database: Database, settings: Settings, items: int) -> None:
    """Create owners, horses and ``items`` scheduled orders over ``DAYS`` days."""
    with database.session() as db_session:
        base = build_practice(db_session)
        horses = []
        for index, family in enumerate(FAMILIES):
            owner = practice.create_client(
                db_session, ACTOR, kind="person", given_name="Sam", family_name=family
            )
            for name in HORSE_NAMES:
                horse = practice.create_horse(
                    db_session,
                    ACTOR,
                    barn_name=f"{name} {index}",
                    species="horse",
                    breed="Hanoverian",
                    sex="gelding",
                    microchip=f"8260410{index:04d}{len(horses):04d}",
                )
                practice.set_owners_from(
                    db_session,
                    ACTOR,
                    horse,
                    dt.date(2020, 1, 1),
                    [practice.ShareInput(owner.id, 10000)],
                )
                horses.append(horse)
        zone = settings.zone
        today = dt.datetime.now(zone).date()
        starts = []
        for index in range(items):
            day = today + dt.timedelta(days=index % DAYS)
            minute = 7 * 60 + (index * 7) % (12 * 60)
            starts.append(
                dt.datetime.combine(
                    day, dt.time(minute // 60, minute % 60), tzinfo=zone
                )
            )
        bulk_worklist(db_session, settings, horses, base.vet, starts, station=base.dr)


def write_wl_files(database: Database, settings: Settings, directory: Path) -> int:
    """Write every scheduled item as a wlmscpfs ``.wl`` file; return the count."""
    ae_dir = directory / CALLED_AE
    ae_dir.mkdir(parents=True)
    (ae_dir / "lockfile").touch()
    zone = settings.zone
    today = dt.datetime.now(zone).date()
    count = 0
    with database.session() as db_session:
        records = service.worklist_records(
            db_session, service.WorklistFilter(), day=today
        )
    for record in records:
        item = mapping.worklist_item(record, zone)
        ds = worklist.build_response(item, "ISO_IR 192")
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ModalityWorklistInformationFind
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(ae_dir / f"{record.sps_id}.wl", enforce_file_format=True)
        count += 1
    return count


def today_query(today: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        setattr(ds, keyword, "")
    ds.AccessionNumber = ""
    ds.StudyInstanceUID = ""
    ds.RequestedProcedureID = ""
    ds.RequestedProcedureDescription = ""
    step = Dataset()
    step.ScheduledStationAETitle = ""
    step.ScheduledProcedureStepStartDate = today
    step.ScheduledProcedureStepStartTime = ""
    step.Modality = "DX"
    step.ScheduledProcedureStepID = ""
    step.ScheduledProcedureStepDescription = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def name_query() -> Dataset:
    ds = today_query("")
    ds.PatientName = "Ash*"
    ds.ScheduledProcedureStepSequence[0].Modality = ""
    return ds


def run_query(port: int, query: Dataset) -> tuple[float, int]:
    """Return (seconds, matches) for one association carrying one C-FIND."""
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(ModalityWorklistInformationFind)
    started = time.perf_counter()
    assoc = ae.associate("127.0.0.1", port, ae_title=CALLED_AE)
    if not assoc.is_established:
        raise RuntimeError(f"association to port {port} failed")
    matches = 0
    for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
        if status and status.Status in (0xFF00, 0xFF01) and identifier is not None:
            matches += 1
    assoc.release()
    return time.perf_counter() - started, matches


def measure(
    label: str, port: int, make_query: Callable[[], Dataset], runs: int
) -> dict[str, float]:
    for _ in range(3):
        run_query(port, make_query())
    timings = []
    matches = 0
    for _ in range(runs):
        seconds, matches = run_query(port, make_query())
        timings.append(seconds * 1000)
    p95 = statistics.quantiles(timings, n=20, method="inclusive")[18]
    return {"median": statistics.median(timings), "p95": p95, "matches": matches}


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def start_serve(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """Start `fetlock serve` over the seeded database, web on a free port."""
    env = {
        **os.environ,
        "FETLOCK_DATA_DIR": str(settings.data_dir),
        "FETLOCK_DATABASE_URL": settings.database_url,
        "FETLOCK_HTTP_PORT": str(free_port()),
        "FETLOCK_DICOM_PORT": str(settings.dicom_port),
        "FETLOCK_SECRET_KEY": "bench-secret-key",
    }
    env.pop("TCP_NODELAY", None)
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("fetlock")), "serve"],
            env=env,
            stdout=out,
            stderr=out,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000, help="worklist items")
    parser.add_argument("--runs", type=int, default=30, help="timed queries per case")
    parser.add_argument(
        "--database-url", default="", help="database to use (default: new SQLite)"
    )
    args = parser.parse_args()
    reexec_in_netns()

    with tempfile.TemporaryDirectory(prefix="mwl-bench-") as tmp:
        tmp_path = Path(tmp)
        url = args.database_url or f"sqlite:///{tmp_path / 'bench.sqlite3'}"
        upgrade(url)
        database = Database(url)
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=url,
            secret_key="bench-secret-key",
            dicom_host="127.0.0.1",
            dicom_port=free_port(),
        )
        started = time.perf_counter()
        seed(database, settings, args.items)
        print(f"seeded {args.items} items in {time.perf_counter() - started:.1f} s")

        # Fetlock runs as `fetlock serve` in a process of its own, as
        # wlmscpfs does, so that the pynetdicom client here does not share a
        # GIL with the server it measures.
        serve = start_serve(settings, tmp_path / "serve.log")
        today = dt.datetime.now(settings.zone).strftime("%Y%m%d")
        try:
            wait_for_port(settings.dicom_port, timeout=60)
            results = {
                "Fetlock": {
                    "today": measure(
                        "today",
                        settings.dicom_port,
                        lambda: today_query(today),
                        args.runs,
                    ),
                    "name": measure("name", settings.dicom_port, name_query, args.runs),
                }
            }
        finally:
            serve.terminate()
            serve.wait(timeout=60)

        wlm: subprocess.Popen[bytes] | None = None
        if os.environ.get(NETNS_FLAG) == "1":
            count = write_wl_files(database, settings, tmp_path / "wl")
            print(f"wrote {count} .wl files")
            port = free_port()
            wlm = subprocess.Popen(
                ["wlmscpfs", "-q", "-dfp", str(tmp_path / "wl"), "-csk", str(port)],
                env={**os.environ, "TCP_NODELAY": "1"},
            )
            try:
                wait_for_port(port)
                results["wlmscpfs"] = {
                    "today": measure(
                        "today", port, lambda: today_query(today), args.runs
                    ),
                    "name": measure("name", port, name_query, args.runs),
                }
            finally:
                wlm.terminate()
                wlm.wait(timeout=10)
        database.dispose()

    backend = "PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite"
    print()
    print(
        f"{args.items} items, {args.runs} timed queries per case, {backend}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.machine()}"
    )
    print(f"{'server':<10} {'query':<8} {'matches':>8} {'median ms':>10} {'p95 ms':>8}")
    for server, cases in results.items():
        for case, figures in cases.items():
            print(
                f"{server:<10} {case:<8} {int(figures['matches']):>8} "
                f"{figures['median']:>10.1f} {figures['p95']:>8.1f}"
            )


if __name__ == "__main__":
    main()
