"""The reporting vocabulary: limbs, grades, structures, findings and templates.

``vocabulary.json`` beside this module is the shipped vocabulary; it names
its source and, for each term, a coding scheme (``SCT`` for SNOMED CT, or
``local`` with an empty code where no standard code was checked). Terms and
templates are copied into the ``report_term`` and ``report_template`` tables
the first time they are needed; admins then edit the rows. A later copy only
adds terms that are missing, so admins' edits are never overwritten. Limbs
and grades are fixed by the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from fetlock.audit import service as audit
from fetlock.db.base import lock_for_seeding, utcnow
from fetlock.reporting.models import ReportTemplate, ReportTerm, TermKind
from fetlock.web.errors import DomainError, NotFound

VOCABULARY_FILE = Path(__file__).with_name("vocabulary.json")
SCHEMES = ("SCT", "local")
# Job that indexes again the reports using a term whose synonyms changed.
REINDEX_JOB = "reporting.reindex_term"


@lru_cache
def load_file(path: Path = VOCABULARY_FILE) -> dict[str, Any]:
    """Return the parsed vocabulary file (read once per process)."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def limbs() -> dict[str, str]:
    """Limb keys (``LF``, ``RF``, ``LH``, ``RH``, ``NA``) and their names."""
    return {row["key"]: row["display"] for row in load_file()["limbs"]}


def limb_display(key: str) -> str:
    return limbs().get(key, key)


def grades() -> dict[int, str]:
    """Grades 0 to 4 and their names (none, minimal, mild, moderate, severe)."""
    return {int(row["key"]): row["display"] for row in load_file()["grades"]}


def grade_display(grade: int | None) -> str:
    if grade is None:
        return ""
    return grades().get(grade, str(grade))


def sync(db_session: Session, data: Mapping[str, Any] | None = None) -> int:
    """Add the file's terms and templates missing from the database.

    Returns the number of rows added. Existing rows are left as admins edited
    them.
    """
    data = data or load_file()
    have_terms = {
        (kind, key)
        for kind, key in db_session.execute(select(ReportTerm.kind, ReportTerm.key))
    }
    have_templates = set(db_session.execute(select(ReportTemplate.key)).scalars())
    added = 0
    for kind, rows in ((TermKind.FINDING, data["findings"]),):
        added += _add_terms(db_session, kind, rows, have_terms)
    added += _add_terms(db_session, TermKind.STRUCTURE, data["structures"], have_terms)
    for ordinal, row in enumerate(data["templates"]):
        if row["key"] in have_templates:
            continue
        db_session.add(
            ReportTemplate(
                key=row["key"],
                name=row["name"],
                modality=row["modality"],
                technique=row.get("technique", ""),
                normal_text=row.get("normal_text", ""),
                zones=" ".join(row.get("zones", [])),
                active=True,
                ordinal=ordinal,
            )
        )
        added += 1
    db_session.flush()
    return added


def _add_terms(
    db_session: Session,
    kind: TermKind,
    rows: Iterable[Mapping[str, Any]],
    have: set[tuple[str, str]],
) -> int:
    added = 0
    for ordinal, row in enumerate(rows):
        if (kind.value, row["key"]) in have:
            continue
        db_session.add(
            ReportTerm(
                kind=kind.value,
                key=row["key"],
                display=row["display"],
                scheme=row.get("scheme", "local"),
                code=row.get("code", ""),
                regions=" ".join(row.get("regions", [])),
                synonyms="|".join(row.get("synonyms", [])),
                active=True,
                ordinal=ordinal,
            )
        )
        added += 1
    return added


def ensure_loaded(db_session: Session) -> None:
    """Copy the shipped vocabulary into an empty database."""
    if db_session.execute(select(exists().where(ReportTerm.id > 0))).scalar():
        return
    lock_for_seeding(db_session)
    if not db_session.execute(select(exists().where(ReportTerm.id > 0))).scalar():
        sync(db_session)


def terms(
    db_session: Session, kind: TermKind, *, active_only: bool = True
) -> list[ReportTerm]:
    ensure_loaded(db_session)
    query = select(ReportTerm).where(ReportTerm.kind == kind.value)
    if active_only:
        query = query.where(ReportTerm.active.is_(True))
    return list(
        db_session.execute(query.order_by(ReportTerm.ordinal, ReportTerm.id)).scalars()
    )


def get_term(db_session: Session, kind: TermKind, key: str) -> ReportTerm | None:
    ensure_loaded(db_session)
    return db_session.execute(
        select(ReportTerm).where(ReportTerm.kind == kind.value, ReportTerm.key == key)
    ).scalar_one_or_none()


def templates(db_session: Session, *, active_only: bool = True) -> list[ReportTemplate]:
    ensure_loaded(db_session)
    query = select(ReportTemplate)
    if active_only:
        query = query.where(ReportTemplate.active.is_(True))
    return list(
        db_session.execute(
            query.order_by(ReportTemplate.ordinal, ReportTemplate.id)
        ).scalars()
    )


def get_template(db_session: Session, key: str) -> ReportTemplate | None:
    ensure_loaded(db_session)
    return db_session.execute(
        select(ReportTemplate).where(ReportTemplate.key == key)
    ).scalar_one_or_none()


def synonyms(
    db_session: Session, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[str]]:
    """Return the synonyms of the ``(kind, key)`` terms named."""
    wanted = set(keys)
    if not wanted:
        return {}
    rows = db_session.execute(
        select(ReportTerm).where(ReportTerm.key.in_({key for _, key in wanted}))
    ).scalars()
    return {(t.kind, t.key): t.synonym_list for t in rows if (t.kind, t.key) in wanted}


def _check_term_fields(fields: Mapping[str, Any]) -> None:
    scheme = fields.get("scheme")
    code = fields.get("code") or ""
    if scheme is not None and scheme not in SCHEMES:
        raise DomainError(
            f"scheme {scheme!r} is not known; use 'SCT' for a SNOMED CT concept "
            "id or 'local' for a term without a standard code",
            field="scheme",
            value=scheme,
        )
    if scheme == "SCT" and not (code.isdigit() and 6 <= len(code) <= 18):
        raise DomainError(
            f"code {code!r} is not a SNOMED CT concept id; give the 6 to 18 digit "
            "id, or set scheme to 'local' and leave the code empty",
            field="code",
            value=code,
        )
    if scheme == "local" and code:
        raise DomainError(
            f"code {code!r} given for a local term; leave the code empty or name "
            "the scheme it belongs to",
            field="code",
            value=code,
        )
    display = fields.get("display")
    if display is not None and not display.strip():
        raise DomainError(
            "display name is empty; give the name shown in reports",
            field="display",
            value=display,
        )


def add_term(
    db_session: Session, actor: audit.Actor, kind: TermKind, fields: Mapping[str, Any]
) -> ReportTerm:
    """Add a term (admins); ``fields`` holds key, display, scheme, code..."""
    ensure_loaded(db_session)
    key = str(fields.get("key") or "")
    if not key or not key.replace("_", "").isalnum() or key != key.lower():
        raise DomainError(
            f"key {key!r} is not a lower-case snake_case name; use letters, digits "
            "and underscores, such as 'sesamoid_fracture'",
            field="key",
            value=key,
        )
    if get_term(db_session, kind, key) is not None:
        raise DomainError(
            f"a {kind.value} with key {key!r} already exists; edit it instead",
            field="key",
            value=key,
        )
    _check_term_fields({"scheme": "local", **fields})
    term = ReportTerm(
        kind=kind.value,
        key=key,
        display=str(fields["display"]).strip(),
        scheme=fields.get("scheme", "local"),
        code=fields.get("code") or "",
        regions=" ".join(fields.get("regions") or []),
        synonyms="|".join(fields.get("synonyms") or []),
        active=True,
        ordinal=1000,
        updated_by_id=actor.user_id,
    )
    db_session.add(term)
    db_session.flush()
    audit.record(
        db_session, actor, "report_term.create", "report_term", term.id,
        detail={"kind": kind.value, "key": key},
    )  # fmt: skip
    return term


def update_term(
    db_session: Session, actor: audit.Actor, term_id: int, fields: Mapping[str, Any]
) -> ReportTerm:
    """Change a term's display, code, synonyms, regions or active flag (admins).

    Signed reports keep the display and code they were signed with.
    """
    term = db_session.get(ReportTerm, term_id)
    if term is None:
        raise NotFound(
            f"vocabulary term {term_id} does not exist; list terms at "
            "/api/v1/reporting/vocabulary",
            field="term_id",
            value=term_id,
        )
    merged = {"scheme": term.scheme, "code": term.code, **fields}
    _check_term_fields(merged)
    before = {"display": term.display, "scheme": term.scheme, "code": term.code}
    before_synonyms = term.synonyms
    if "display" in fields and fields["display"] is not None:
        term.display = str(fields["display"]).strip()
    term.scheme = merged["scheme"]
    term.code = merged["code"] or ""
    if fields.get("synonyms") is not None:
        term.synonyms = "|".join(fields["synonyms"])
    if fields.get("regions") is not None:
        term.regions = " ".join(fields["regions"])
    if fields.get("active") is not None:
        term.active = bool(fields["active"])
    synonyms_changed = fields.get("synonyms") is not None and (
        term.synonyms != before_synonyms
    )
    term.updated_at = utcnow()
    term.updated_by_id = actor.user_id
    db_session.flush()
    if synonyms_changed:
        # Signed reports are found by their terms' synonyms too: index them
        # again, after this commit, in the background.
        from fetlock.jobs.service import enqueue

        enqueue(db_session, REINDEX_JOB, term_id=term.id)
    audit.record(
        db_session, actor, "report_term.update", "report_term", term.id,
        detail={"before": before, "changed": sorted(fields)},
    )  # fmt: skip
    return term
