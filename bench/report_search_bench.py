"""Findings search latency over 100,000 signed reports, and sign-off to chart time.

For each database (a fresh SQLite file, and a fresh PostgreSQL database on
127.0.0.1:5432 unless ``--no-postgresql``) the script

1. migrates an empty database and bulk-loads ``--reports`` signed reports
   on 5,000 horses: one to four coded findings each, drawn from the shipped
   vocabulary with realistic weights (foot and fetlock studies most common,
   navicular findings in about one foot study in three), free-text detail,
   impression and recommendations, signed over three years by four
   radiologists for twelve clinicians, with the word index built by the same
   code that indexes a signed report;
2. runs twelve searches of the kind the search page sends (free words,
   prefixes, synonyms, coded filters on limb, finding, grade and region,
   radiologist, clinician and date range, later pages), ``--rounds`` times
   each, through ``fetlock.reporting.search.search``: the page of hits, the
   capped count and the hits' horses, studies, people and findings;
3. measures sign-off to chart: a study is stored through ingest, a report
   with a key image is written and signed through the HTTP API while the job
   worker runs in the background, and the clock stops when the horse's
   ``/horses/{id}/reports-section`` fragment links both the signed PDF and
   the thumbnail. The browser adds up to one refresh period (2 s) to this.

It prints the median and 95th percentile of each, per database.

Usage: ``.venv/bin/python bench/report_search_bench.py [--reports 100000]
[--rounds 20] [--signoffs 10] [--no-postgresql]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

import fetlock.db.registry  # noqa: E402, F401
from fetlock.auth.models import Role, User  # noqa: E402
from fetlock.config import Settings  # noqa: E402
from fetlock.db.migrate import upgrade  # noqa: E402
from fetlock.db.session import Database  # noqa: E402
from fetlock.imaging.study_models import Study  # noqa: E402
from fetlock.practice.models import Horse  # noqa: E402
from fetlock.reporting import search, vocabulary  # noqa: E402
from fetlock.reporting.models import (  # noqa: E402
    Report,
    ReportFinding,
    ReportSearchToken,
    TermKind,
)

POSTGRES_ADMIN_URL = os.environ.get(
    "FETLOCK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
HORSES = 5_000
RADIOLOGISTS = 4
CLINICIANS = 12
BATCH = 5_000
PASSWORD = "bench-password-not-secret"

# Template key, weight, and (structure, finding, weight) choices for its findings.
REGIONS: dict[str, tuple[int, list[tuple[str, str, int]]]] = {
    "foot": (30, [
        ("navicular_bone", "synovial_invaginations", 8),
        ("navicular_bone", "sclerosis", 5),
        ("navicular_bone", "flexor_cortex_erosion", 3),
        ("navicular_bone", "degenerative_change", 6),
        ("dip_joint", "osteoarthritis", 8),
        ("dip_joint", "joint_effusion", 4),
        ("distal_phalanx", "fracture", 1),
        ("distal_phalanx", "lysis", 2),
        ("hoof_capsule", "laminitis", 3),
        ("distal_phalanx", "no_abnormality", 10),
    ]),
    "fetlock": (20, [
        ("fetlock_joint", "osteoarthritis", 8),
        ("fetlock_joint", "osteochondral_fragment", 4),
        ("proximal_sesamoid_bones", "fracture", 2),
        ("proximal_sesamoid_bones", "enthesophyte", 3),
        ("mc3_condyles", "sclerosis", 3),
        ("fetlock_joint", "no_abnormality", 8),
    ]),
    "tarsus": (12, [
        ("distal_intertarsal_joint", "osteoarthritis", 8),
        ("tarsometatarsal_joint", "osteophyte", 5),
        ("distal_tibia_intermediate_ridge", "osteochondrosis", 4),
        ("tarsocrural_joint", "joint_effusion", 3),
    ]),
    "tendons": (14, [
        ("sdft", "core_lesion", 5),
        ("sdft", "tendinopathy", 6),
        ("ddft", "tendinopathy", 2),
        ("suspensory_ligament", "desmopathy", 7),
        ("accessory_ligament_ddft", "desmopathy", 2),
        ("sdft", "no_abnormality", 6),
    ]),
    "stifle": (6, [
        ("lateral_trochlear_ridge", "osteochondrosis", 5),
        ("medial_femoral_condyle", "bone_cyst", 4),
        ("femorotibial_joints", "osteoarthritis", 3),
    ]),
    "carpus": (6, [
        ("carpal_bones", "osteochondral_fragment", 5),
        ("middle_carpal_joint", "osteoarthritis", 4),
        ("radiocarpal_joint", "joint_effusion", 2),
    ]),
    "neck_back": (6, [
        ("dorsal_spinous_processes", "impinging_spinous_processes", 7),
        ("cervical_articular_processes", "articular_process_enlargement", 4),
        ("thoracolumbar_articular_processes", "osteoarthritis", 2),
    ]),
    "thorax": (3, [
        ("lungs", "bronchointerstitial_pattern", 5),
        ("pleura", "pleural_effusion", 2),
        ("lungs", "pulmonary_consolidation", 2),
    ]),
    "upper_airway": (3, [
        ("larynx", "laryngeal_neuropathy", 5),
        ("soft_palate", "dorsal_displacement_soft_palate", 3),
        ("epiglottis", "epiglottic_entrapment", 1),
    ]),
}  # fmt: skip
AXIAL = {"neck_back", "thorax", "upper_airway"}
HIND_ONLY = {"tarsus", "stifle"}
FORE_ONLY = {"carpus"}
DETAILS = (
    "",
    "",
    "Compared with the previous study, unchanged.",
    "Progressed since the previous study.",
    "Most evident on the oblique projections.",
    "Margins are smooth and well defined.",
    "Seen on one projection only; repeat views advised.",
    "Likely of limited clinical significance.",
    "Correlates with the site of pain on diagnostic analgesia.",
)
RECOMMENDATIONS = (
    "",
    "Recheck radiographs in eight weeks.",
    "Consider MRI if lameness persists.",
    "Intra-articular medication and controlled exercise.",
    "Box rest with controlled walking; rescan in six weeks.",
    "Remedial farriery and review.",
    "Surgical referral.",
)
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("word: navicular", {"text": "navicular"}),
    ("two words: navicular changes", {"text": "navicular changes"}),
    ("prefix: navic", {"text": "navic"}),
    ("synonym: spavin", {"text": "spavin"}),
    ("word + limb: osteoarthritis LF", {"text": "osteoarthritis", "limb": "LF"}),
    ("finding + grade >= 3: core lesion", {"finding": "core_lesion", "grade_min": 3}),
    ("words + region: sdft core, tendons", {"text": "sdft core", "region": "tendons"}),
    ("radiologist + 90 days", {"radiologist": 0, "days": 90}),
    ("clinician + word: fracture", {"clinician": 0, "text": "fracture"}),
    ("structure + 1 year", {"structure": "navicular_bone", "days": 365}),
    ("page 5: osteoarthritis", {"text": "osteoarthritis", "page": 5}),
    ("rare: epiglottic entrapment", {"text": "epiglottic entrapment"}),
]


# --------------------------------------------------------------------------
# Scratch databases
# --------------------------------------------------------------------------


def sqlite_database(workdir: Path) -> Iterator[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    yield f"sqlite:///{workdir / 'bench.sqlite3'}"


def postgresql_database() -> Iterator[str]:
    admin_url = make_url(POSTGRES_ADMIN_URL)
    name = f"fetlock_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------


@functools.cache
def _words(text: str) -> tuple[str, ...]:
    # The same words search.tokens() gives, cached: report texts repeat a lot.
    return tuple(search.words(text))


def _weighted(rng: random.Random, choices: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    return rng.choices(choices, weights=[c[-1] for c in choices])[0]


def _limb(rng: random.Random, region: str) -> str:
    if region in AXIAL:
        return "NA"
    if region in HIND_ONLY:
        return rng.choice(("LH", "RH"))
    if region in FORE_ONLY or region == "foot":
        return rng.choices(("LF", "RF", "LH", "RH"), weights=(45, 45, 5, 5))[0]
    return rng.choice(("LF", "RF", "LH", "RH"))


def seed(database: Database, reports: int) -> dict[str, list[int]]:
    """Bulk-load users, horses, studies and ``reports`` signed reports."""
    rng = random.Random(20261204)
    now = dt.datetime.now(dt.UTC)
    with database.session() as db_session:
        vocabulary.sync(db_session)
        terms = {
            (t.kind, t.key): t
            for kind in (TermKind.FINDING, TermKind.STRUCTURE)
            for t in vocabulary.terms(db_session, kind)
        }
    synonyms = {key: t.synonym_list for key, t in terms.items()}
    grades = vocabulary.grades()
    templates = {t["key"]: t["name"] for t in vocabulary.load_file()["templates"]}

    engine = database.engine
    with engine.begin() as conn:
        users = []
        for i in range(RADIOLOGISTS + CLINICIANS):
            role = Role.RADIOLOGIST if i < RADIOLOGISTS else Role.VETERINARIAN
            users.append(
                {
                    "id": i + 1,
                    "username": f"bench{i}",
                    "full_name": f"Dr Bench {i}",
                    "role": role.value,
                    "password_hash": "not-a-login",
                    "active": True,
                    "created_at": now,
                }
            )
        conn.execute(insert(User), users)
        conn.execute(
            insert(Horse),
            [
                {
                    "id": i + 1,
                    "patient_id": f"BENCH{i:06d}",
                    "barn_name": f"Horse {i}",
                    "search_key": f"horse {i}",
                    "species": "horse",
                    "created_at": now,
                }
                for i in range(HORSES)
            ],
        )
    radiologist_ids = [u["id"] for u in users[:RADIOLOGISTS]]
    clinician_ids = [u["id"] for u in users[RADIOLOGISTS:]]

    region_keys = list(REGIONS)
    region_weights = [REGIONS[k][0] for k in region_keys]
    for start in range(0, reports, BATCH):
        studies, rows, findings, tokens = [], [], [], []
        for n in range(start, min(start + BATCH, reports)):
            report_id = n + 1
            region = rng.choices(region_keys, weights=region_weights)[0]
            signed_at = now - dt.timedelta(minutes=rng.randrange(3 * 365 * 24 * 60))
            studies.append(
                {
                    "id": report_id,
                    "study_instance_uid": f"1.2.826.0.1.3680043.8.498.77.{report_id}",
                    "horse_id": rng.randrange(HORSES) + 1,
                    "dicom_accession_number": f"B{report_id:09d}",
                    "study_date": signed_at.strftime("%Y%m%d"),
                    "study_description": templates[region],
                    "received_at": signed_at,
                    "last_received_at": signed_at,
                }
            )
            report = Report(
                id=report_id,
                kind="report",
                external_text="",
                impression="",
                recommendations=rng.choice(RECOMMENDATIONS),
            )
            parts = []
            for ordinal in range(rng.choice((1, 1, 2, 2, 3, 4))):
                structure, finding, _ = _weighted(rng, REGIONS[region][1])
                s_term, f_term = (
                    terms[("structure", structure)],
                    terms[("finding", finding)],
                )
                grade = None if finding == "no_abnormality" else rng.randrange(1, 5)
                row = ReportFinding(
                    report_id=report_id,
                    ordinal=ordinal,
                    limb=_limb(rng, region),
                    region_key=region,
                    structure_key=structure,
                    structure_display=s_term.display,
                    structure_scheme=s_term.scheme,
                    structure_code=s_term.code,
                    finding_key=finding,
                    finding_display=f_term.display,
                    finding_scheme=f_term.scheme,
                    finding_code=f_term.code,
                    grade=grade,
                    location=rng.choice(("1A", "2A", "2B", "3A"))
                    if region == "tendons"
                    else None,
                    detail=rng.choice(DETAILS),
                )
                report.findings.append(row)
                parts.append(
                    f"{grades.get(grade, '') if grade else ''} "
                    f"{f_term.display.lower()} of the {s_term.display.lower()}"
                    f"{'' if row.limb == 'NA' else ' in the ' + row.limb}"
                )
            report.impression = ("; ".join(parts).strip() + ".").capitalize()
            rows.append(
                {
                    "id": report_id,
                    "study_id": report_id,
                    "horse_id": studies[-1]["horse_id"],
                    "version": 1,
                    "kind": "report",
                    "status": "final",
                    "template_key": region,
                    "modality": "US" if region == "tendons" else "DX",
                    "title": templates[region],
                    "clinical_history": "",
                    "technique": "",
                    "impression": report.impression,
                    "recommendations": report.recommendations,
                    "requesting_clinician_id": rng.choice(clinician_ids),
                    "author_id": None,
                    "created_at": signed_at,
                    "updated_at": signed_at,
                    "signed_at": signed_at,
                    "signed_by_id": rng.choice(radiologist_ids),
                    "content_json": "{}",
                    "content_sha256": "0" * 64,
                    "external_text": "",
                    "document_status": "ready",
                }
            )
            findings.extend(
                {
                    c.key: getattr(f, c.key)
                    for c in ReportFinding.__table__.columns
                    if c.key != "id"
                }
                for f in report.findings
            )
            distinct: set[str] = set()
            for piece in search.report_texts(report, synonyms):
                distinct.update(_words(piece))
            tokens.extend(
                {"token": t, "report_id": report_id, "signed_at": signed_at}
                for t in distinct
            )
        with engine.begin() as conn:
            conn.execute(insert(Study), studies)
            conn.execute(insert(Report), rows)
            conn.execute(insert(ReportFinding), findings)
            conn.execute(insert(ReportSearchToken), tokens)
        print(f"  seeded {min(start + BATCH, reports):>7,} reports", flush=True)
    if database.is_sqlite:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return {"radiologists": radiologist_ids, "clinicians": clinician_ids}


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _query(spec: dict[str, Any], people: dict[str, list[int]]) -> search.SearchQuery:
    today = dt.datetime.now(dt.UTC).date()
    fields: dict[str, Any] = {
        k: v for k, v in spec.items() if k not in ("radiologist", "clinician", "days")
    }
    if "radiologist" in spec:
        fields["radiologist_id"] = people["radiologists"][spec["radiologist"]]
    if "clinician" in spec:
        fields["clinician_id"] = people["clinicians"][spec["clinician"]]
    if "days" in spec:
        fields["date_from"] = today - dt.timedelta(days=spec["days"])
        fields["date_to"] = today
    return search.SearchQuery(**fields)


def measure_search(
    database: Database, people: dict[str, list[int]], rounds: int
) -> tuple[list[float], dict[str, tuple[float, int]]]:
    samples: list[float] = []
    per_query: dict[str, list[float]] = {name: [] for name, _ in QUERIES}
    totals: dict[str, int] = {}
    with database.session() as db_session:
        for _name, spec in QUERIES:  # warm the caches once
            search.search(db_session, _query(spec, people), dt.UTC)
    for _ in range(rounds):
        for name, spec in QUERIES:
            query = _query(spec, people)
            with database.session() as db_session:
                started = time.perf_counter()
                result = search.search(db_session, query, dt.UTC)
                elapsed = (time.perf_counter() - started) * 1000
            samples.append(elapsed)
            per_query[name].append(elapsed)
            totals[name] = result.total
    return samples, {
        name: (statistics.median(values), totals[name])
        for name, values in per_query.items()
    }


def measure_signoff(url: str, workdir: Path, runs: int) -> list[float]:
    """Seconds from the sign request to the chart fragment showing PDF and image."""
    from tests.reporting.conftest import make_case

    from fetlock.auth.service import create_user
    from fetlock.jobs.worker import Worker
    from fetlock.web.app import create_app

    settings = Settings(
        data_dir=workdir / f"data-{uuid.uuid4().hex[:6]}",
        database_url=url,
        secret_key="bench-secret-key-not-for-production",
        dicom_enabled=False,
    )
    database = Database(url)
    with database.session() as db_session:
        reader = create_user(
            db_session,
            username=f"reader-{uuid.uuid4().hex[:6]}",
            full_name="Dr Reader",
            role=Role.RADIOLOGIST,
            password=PASSWORD,
        )
        vet = create_user(
            db_session,
            username=f"vet-{uuid.uuid4().hex[:6]}",
            full_name="Dr Vet",
            role=Role.VETERINARIAN,
            password=PASSWORD,
        )
    worker = Worker(database, settings, poll_interval_s=0.5)
    worker.start()
    app = create_app(settings, database)
    timings = []
    try:
        with TestClient(app, base_url="http://127.0.0.1") as client:
            login = client.post(
                "/login",
                data={"username": reader.username, "password": PASSWORD},
                follow_redirects=False,
            )
            assert login.status_code == 303, login.text
            csrf = _csrf_token(database, reader.id)
            for _ in range(runs):
                with database.session() as db_session:
                    case = make_case(db_session, settings, vet, reader, images=3)
                    study_id, horse_id = case.study.id, case.horse.id
                    key_image = case.instances[1].id
                # Let the study's own ingest jobs (thumbnail) finish first.
                _wait(lambda: _pending_jobs(database, "thumbnail") == 0, 0.1)
                headers = {"X-CSRF-Token": csrf}
                report = client.post(
                    f"/api/v1/studies/{study_id}/reports", headers=headers
                ).json()
                saved = client.put(
                    f"/api/v1/reports/{report['id']}",
                    headers=headers,
                    json={
                        "template": "foot",
                        "findings": [
                            {
                                "limb": "LF",
                                "structure": "navicular_bone",
                                "finding": "sclerosis",
                                "grade": 2,
                            }
                        ],
                        "impression": "Navicular sclerosis.",
                        "key_images": [{"instance_id": key_image}],
                    },
                )
                assert saved.status_code == 200, saved.text
                started = time.perf_counter()
                signed = client.post(
                    f"/api/v1/reports/{report['id']}/sign", headers=headers
                )
                assert signed.status_code == 200, signed.text
                path = f"/horses/{horse_id}/reports-section"

                def ready(path: str = path) -> bool:
                    body = client.get(path).text
                    return "report-pdf" in body and "report-thumb" in body

                _wait(ready, 0.05, timeout=30)
                timings.append(time.perf_counter() - started)
    finally:
        worker.stop()
        database.dispose()
    return timings


def _pending_jobs(database: Database, name: str) -> int:
    from sqlalchemy import func, select

    from fetlock.jobs.models import Job

    with database.session() as db_session:
        return db_session.execute(
            select(func.count()).select_from(Job).where(Job.name == name)
        ).scalar_one()


def _csrf_token(database: Database, user_id: int) -> str:
    from fetlock.auth.models import LoginSession

    with database.session() as db_session:
        login = (
            db_session.query(LoginSession)
            .filter(LoginSession.user_id == user_id)
            .order_by(LoginSession.created_at.desc())
            .first()
        )
        assert login is not None
        return login.csrf_token


def _wait(condition: Callable[[], bool], period: float, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the chart did not show the signed report in time")
        time.sleep(period)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def seeded_people(database: Database) -> dict[str, list[int]] | None:
    """Return the bench's radiologists and clinicians if an earlier run seeded them."""
    with database.session() as db_session:
        if not db_session.scalar(select(func.count()).select_from(Report)):
            return None
        users = db_session.execute(
            select(User.id, User.role)
            .where(User.username.like("bench%"))
            .order_by(User.id)
        ).all()
    return {
        "radiologists": [u.id for u in users if u.role == Role.RADIOLOGIST],
        "clinicians": [u.id for u in users if u.role == Role.VETERINARIAN],
    }


def measure_search_on(url: str, args: argparse.Namespace) -> None:
    upgrade(url)
    database = Database(url)
    people = seeded_people(database) if args.database else None
    if people is None:
        started = time.perf_counter()
        people = seed(database, args.reports)
        print(f"  seeding took {time.perf_counter() - started:.0f} s")
    else:
        print("  searching the reports an earlier run seeded")
    samples, per_query = measure_search(database, people, args.rounds)
    print(f"  {'query':<40} {'median ms':>10} {'hits':>7}")
    for name, (median, total) in per_query.items():
        print(f"  {name:<40} {median:>10.1f} {total:>7}")
    print(
        f"  all searches: {len(samples)} samples, median "
        f"{statistics.median(samples):.1f} ms, 95th percentile "
        f"{_percentile(samples, 0.95):.1f} ms, max {max(samples):.1f} ms"
    )
    database.dispose()


def run(label: str, url: str, args: argparse.Namespace, workdir: Path) -> None:
    what = "sign-off only" if args.signoffs_only else f"{args.reports:,} reports"
    print(f"\n== {label}: {what} ==", flush=True)
    if not args.signoffs_only:
        measure_search_on(url, args)
    if args.signoffs:
        # A scratch database of its own: the bulk load above assigned ids
        # itself, which PostgreSQL's sequences do not know about.
        scratch = (
            sqlite_database(workdir / "signoff")
            if label == "SQLite"
            else postgresql_database()
        )
        for signoff_url in scratch:
            upgrade(signoff_url)
            timings = measure_signoff(signoff_url, workdir, args.signoffs)
            print(
                f"  sign-off to chart (PDF and thumbnail ready): {len(timings)} "
                f"runs, median {statistics.median(timings):.2f} s, "
                f"95th percentile {_percentile(timings, 0.95):.2f} s, "
                f"max {max(timings):.2f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--signoffs", type=int, default=10)
    parser.add_argument("--no-postgresql", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--signoffs-only",
        action="store_true",
        help="measure only sign-off to chart, on empty scratch databases",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="seed this database, or search it as seeded by an earlier run, "
        "and keep it afterwards (the default: fresh scratch databases, dropped "
        "at the end); sign-off runs still use scratch databases",
    )
    args = parser.parse_args()
    print(
        f"Fetlock findings search bench on {platform.node()} "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()})"
    )
    with tempfile.TemporaryDirectory(prefix="fetlock-report-bench-") as tmp:
        workdir = Path(tmp)
        if args.database:
            label = "SQLite" if args.database.startswith("sqlite") else "PostgreSQL"
            run(label, args.database, args, workdir)
            return
        if not args.no_sqlite:
            for url in sqlite_database(workdir):
                run("SQLite", url, args, workdir)
        if not args.no_postgresql:
            for url in postgresql_database():
                run("PostgreSQL", url, args, workdir)


if __name__ == "__main__":
    main()
