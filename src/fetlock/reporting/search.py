"""Findings search across horses: the word index and the query.

Each current signed report's findings (limb, structure, finding, their
synonyms, location and free-text detail), impression and recommendations are
folded to lower-case ASCII words and stored one row per distinct word in
``report_search_token``. A query word matches every indexed word that starts
with it, through a range condition (``token >= 'navic' AND token < 'navid'``)
that SQLite and PostgreSQL both evaluate on a B-tree index. All query words
must match. Structured filters (limb, region, finding, grade) read the coded
columns of ``report_finding``, and the people, horse and modality filters
read the columns copied onto ``report``. The SQL is plain and portable, with
no FTS5 and no tsvector.

Tokens contain only ``[a-z0-9]``, so their order is the same under the C
collation and under the usual PostgreSQL locales, and the upper bound that
:func:`prefix_upper_bound` computes is right on both.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, aliased, defer

from fetlock.auth.models import User
from fetlock.imaging.study_models import Study
from fetlock.practice.models import Horse
from fetlock.reporting.models import (
    TOKEN_MAX,
    Report,
    ReportFinding,
    ReportKind,
    ReportSearchToken,
    ReportStatus,
)

# Letters that Unicode decomposition does not reduce to ASCII.
_SPECIAL_FOLDS = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ł": "l",
        "ı": "i",
    }
)
_NON_WORD = re.compile(r"[^a-z0-9]+")
# Words this short carry no meaning on their own ("of", "a") and match too much.
MIN_TOKEN_LENGTH = 2
# Results are counted up to this many, and the page shows "more than" beyond it.
COUNT_CAP = 500
# A query part matching fewer rows than this starts the search statement; the
# database then sorts at most this many candidates.
SMALL_SET = 10_000
MAX_PAGE_SIZE = 100
# The CSV export stops after this many rows.
EXPORT_LIMIT = 10_000


def fold(text: str) -> str:
    """Return ``text`` lower-cased, accents removed, non-alphanumerics as spaces."""
    lowered = text.lower().translate(_SPECIAL_FOLDS)
    decomposed = unicodedata.normalize("NFKD", lowered)
    ascii_only = decomposed.encode("ascii", "ignore").decode("ascii")
    return _NON_WORD.sub(" ", ascii_only).strip()


def _stem(word: str) -> str:
    # A light plural rule, applied to indexed and queried words alike, so that
    # "changes" finds "change" and "sesamoids" finds "sesamoid".
    if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Return the search words of ``text`` in order, folded and stemmed."""
    return [
        _stem(w)[:TOKEN_MAX] for w in fold(text).split() if len(w) >= MIN_TOKEN_LENGTH
    ]


def tokens(texts: Iterable[str]) -> set[str]:
    """Return the distinct search words of several texts."""
    result: set[str] = set()
    for text in texts:
        result.update(words(text))
    return result


def prefix_upper_bound(prefix: str) -> str | None:
    """Return the smallest ``[a-z0-9]`` string after every word starting ``prefix``.

    None means no upper bound (the prefix is all ``z``).
    """
    chars = list(prefix)
    while chars:
        last = chars.pop()
        if last == "z":
            continue
        successor = "a" if last == "9" else chr(ord(last) + 1)
        return "".join(chars) + successor
    return None


def report_texts(
    report: Report, synonyms: Mapping[tuple[str, str], list[str]]
) -> list[str]:
    """Return the texts of a report that the search index covers.

    ``synonyms`` maps ``(kind, key)`` of vocabulary terms to their synonyms,
    so that a coded "Navicular bone" finding is also found as "distal
    sesamoid".
    """
    from fetlock.reporting.vocabulary import limb_display

    texts = [report.impression, report.recommendations, report.external_text]
    if report.kind == ReportKind.EXTERNAL:
        texts.append(report.title)
    for finding in report.findings:
        texts.append(limb_display(finding.limb) if finding.limb != "NA" else "")
        texts.append(finding.structure_display)
        texts.append(finding.finding_display)
        texts.extend(synonyms.get(("structure", finding.structure_key), []))
        texts.extend(synonyms.get(("finding", finding.finding_key), []))
        texts.append(finding.location or "")
        texts.append(finding.detail)
    return texts


def index_report(db_session: Session, report: Report) -> int:
    """Replace the search words of ``report``; return how many were stored."""
    from fetlock.reporting.vocabulary import synonyms

    db_session.query(ReportSearchToken).filter(
        ReportSearchToken.report_id == report.id
    ).delete(synchronize_session=False)
    keys = {("structure", f.structure_key) for f in report.findings}
    keys |= {("finding", f.finding_key) for f in report.findings}
    if report.signed_at is None or report.superseded_by_id is not None:
        db_session.flush()
        return 0
    found = tokens(report_texts(report, synonyms(db_session, keys)))
    db_session.add_all(
        ReportSearchToken(token=t, report_id=report.id, signed_at=report.signed_at)
        for t in found
    )
    db_session.flush()
    return len(found)


def reports_using_term(db_session: Session, kind: str, key: str) -> list[int]:
    """Ids of current signed reports with a finding on vocabulary term ``key``."""
    column = (
        ReportFinding.structure_key
        if kind == "structure"
        else ReportFinding.finding_key
    )
    return list(
        db_session.execute(
            select(ReportFinding.report_id)
            .join(Report, Report.id == ReportFinding.report_id)
            .where(column == key, *_current())
            .distinct()
            .order_by(ReportFinding.report_id)
        ).scalars()
    )


def unindex_report(db_session: Session, report_id: int) -> None:
    """Remove a report's words, when an amendment replaces it."""
    db_session.query(ReportSearchToken).filter(
        ReportSearchToken.report_id == report_id
    ).delete(synchronize_session=False)
    db_session.flush()


@dataclass
class SearchQuery:
    """A findings search: free text plus structured filters, and a page."""

    text: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    limb: str | None = None
    region: str | None = None
    structure: str | None = None
    finding: str | None = None
    grade_min: int | None = None
    radiologist_id: int | None = None
    clinician_id: int | None = None
    horse_id: int | None = None
    modality: str | None = None
    page: int = 1
    page_size: int = 25


@dataclass
class SearchHit:
    """One signed report that matched, with what the results page shows."""

    report: Report
    horse: Horse | None
    study: Study
    radiologist: User | None
    clinician: User | None
    findings: list[ReportFinding] = field(default_factory=list)


@dataclass
class SearchResult:
    hits: list[SearchHit]
    total: int
    total_is_capped: bool
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def _zone_bounds(query: SearchQuery, zone: dt.tzinfo) -> tuple[dt.datetime | None, ...]:
    start = end = None
    if query.date_from is not None:
        start = dt.datetime.combine(query.date_from, dt.time(), zone)
    if query.date_to is not None:
        end = dt.datetime.combine(query.date_to + dt.timedelta(days=1), dt.time(), zone)
    return start, end


def _word_range(table: Any, word: str) -> Any:
    """``token`` starts with ``word``, as a range on the index."""
    upper = prefix_upper_bound(word)
    condition = table.token >= word
    if upper is not None:
        condition = and_(condition, table.token < upper)
    return condition


def _is_small(db_session: Session, rows: Any) -> bool:
    """Return True when the SELECT ``rows`` has fewer than SMALL_SET rows.

    The count stops at SMALL_SET, so a common word or filter costs no more
    to check than a rare one.
    """
    bounded = rows.limit(SMALL_SET).subquery()
    count = db_session.execute(select(func.count()).select_from(bounded)).scalar_one()
    return bool(count < SMALL_SET)


def _small_words(db_session: Session, query_words: list[str]) -> dict[str, bool]:
    """Map each query word to whether it has fewer than SMALL_SET index entries."""
    return {
        word: _is_small(
            db_session,
            select(ReportSearchToken.report_id).where(
                _word_range(ReportSearchToken, word)
            ),
        )
        for word in query_words
    }


def _finding_filters(query: SearchQuery, finding: Any) -> list[Any]:
    filters = []
    if query.limb:
        filters.append(finding.limb == query.limb)
    if query.region:
        filters.append(finding.region_key == query.region)
    if query.structure:
        filters.append(finding.structure_key == query.structure)
    if query.finding:
        filters.append(finding.finding_key == query.finding)
    if query.grade_min is not None:
        filters.append(finding.grade >= query.grade_min)
    return filters


def _report_filters(query: SearchQuery) -> list[Any]:
    filters = []
    if query.radiologist_id is not None:
        filters.append(Report.signed_by_id == query.radiologist_id)
    if query.clinician_id is not None:
        filters.append(Report.requesting_clinician_id == query.clinician_id)
    if query.horse_id is not None:
        filters.append(Report.horse_id == query.horse_id)
    if query.modality:
        filters.append(Report.modality == query.modality)
    return filters


def _matches(db_session: Session, query: SearchQuery, zone: dt.tzinfo) -> Any:
    """Select the matching reports' ``(id, signed_at)``, newest first.

    The statement starts from the part of the query that leaves the fewest
    candidates, because sorting a few thousand candidates is cheap and
    sorting tens of thousands is not:

    - a word with fewer than SMALL_SET index entries: its entries;
    - else coded filters matching fewer than SMALL_SET finding rows: those
      rows;
    - else the current signed reports, newest first, through the
      ``(status, superseded_by_id, signed_at, id)`` index, so the database
      stops after the rows the page and count need. The other parts of the
      query are checked per candidate through an index (common words
      through the ``(report_id, token)`` primary key, coded filters through
      the finding rows of that report), or, for a small word, against its
      list of reports read once.

    The word index holds only current signed reports, because an amended
    version's words are removed when its amendment is signed.
    """
    start, end = _zone_bounds(query, zone)
    finding = aliased(ReportFinding)
    finding_filters = _finding_filters(query, finding)
    report_filters = _report_filters(query)
    query_words = list(dict.fromkeys(words(query.text)))
    small = _small_words(db_session, query_words)
    # The longest small word is usually the rarest.
    driver_word = max((w for w in query_words if small[w]), key=len, default=None)
    statement: Any
    report_id: Any
    signed_at: Any

    if driver_word is not None:
        t1 = aliased(ReportSearchToken)
        statement = select(t1.report_id, t1.signed_at).where(
            _word_range(t1, driver_word)
        )
        report_id, signed_at = t1.report_id, t1.signed_at
        if report_filters:
            statement = statement.join(Report, Report.id == t1.report_id).where(
                *report_filters
            )
        statement = statement.distinct()
    elif finding_filters and _is_small(
        db_session, select(finding.report_id).where(*finding_filters)
    ):
        statement = (
            select(finding.report_id, Report.signed_at)
            .join(Report, Report.id == finding.report_id)
            .where(*finding_filters, *_current(), *report_filters)
            .distinct()
        )
        report_id, signed_at = finding.report_id, Report.signed_at
        finding_filters = []
    else:
        statement = select(Report.id, Report.signed_at).where(
            *_current(), *report_filters
        )
        report_id, signed_at = Report.id, Report.signed_at

    # Words that did not start the statement: a small word's reports are read
    # once as a list; a common word is probed per candidate through the
    # (report_id, token) primary key.
    for word in query_words:
        if word == driver_word:
            continue
        probe = aliased(ReportSearchToken)
        if small[word]:
            # The ids themselves, not a subquery: with a subquery PostgreSQL
            # misjudges a narrow token range as one row and rescans it for
            # every candidate.
            listed = db_session.execute(
                select(probe.report_id).where(_word_range(probe, word)).distinct()
            ).scalars()
            statement = statement.where(report_id.in_(list(listed)))
        else:
            statement = statement.where(
                exists().where(probe.report_id == report_id, _word_range(probe, word))
            )
    if finding_filters:
        statement = statement.where(
            exists().where(finding.report_id == report_id, *finding_filters)
        )
    if start is not None:
        statement = statement.where(signed_at >= start)
    if end is not None:
        statement = statement.where(signed_at < end)
    return statement.order_by(signed_at.desc(), report_id.desc())


def _ordered_ids(matches: Any) -> Any:
    """Only the ids of ``matches``, in its order.

    The timestamps stay inside the subquery, so no row pays for converting
    one; the outer ORDER BY repeats the order, which a subquery's own ORDER
    BY does not guarantee.
    """
    inner = matches.order_by(None).subquery()
    columns = list(inner.c)
    return select(columns[0]).order_by(columns[1].desc(), columns[0].desc())


def _current() -> list[Any]:
    return [Report.status == ReportStatus.FINAL, Report.superseded_by_id.is_(None)]


def _matching_findings(
    db_session: Session, report_ids: Sequence[int]
) -> dict[int, list[ReportFinding]]:
    if not report_ids:
        return {}
    rows = db_session.execute(
        select(ReportFinding)
        .where(ReportFinding.report_id.in_(report_ids))
        .order_by(ReportFinding.report_id, ReportFinding.ordinal)
    ).scalars()
    by_report: dict[int, list[ReportFinding]] = {}
    for finding in rows:
        by_report.setdefault(finding.report_id, []).append(finding)
    return by_report


def _hits(db_session: Session, page_ids: Sequence[int]) -> list[SearchHit]:
    """Load the page's reports with their study, horse, people and findings."""
    if not page_ids:
        return []
    rows = db_session.execute(
        select(Report, Study, Horse)
        .join(Study, Study.id == Report.study_id)
        .outerjoin(Horse, Horse.id == func.coalesce(Report.horse_id, Study.horse_id))
        .where(Report.id.in_(page_ids))
        .options(defer(Report.content_json))
    ).all()
    by_id = {report.id: (report, study, horse) for report, study, horse in rows}
    user_ids = {
        uid
        for report, _, _ in rows
        for uid in (report.signed_by_id, report.requesting_clinician_id)
        if uid is not None
    }
    users = {
        u.id: u
        for u in db_session.execute(select(User).where(User.id.in_(user_ids))).scalars()
    }
    findings = _matching_findings(db_session, page_ids)
    hits = []
    for report_id in page_ids:
        report, study, horse = by_id[report_id]
        hits.append(
            SearchHit(
                report=report,
                horse=horse,
                study=study,
                radiologist=users.get(report.signed_by_id or 0),
                clinician=users.get(report.requesting_clinician_id or 0),
                findings=findings.get(report_id, []),
            )
        )
    return hits


def search(db_session: Session, query: SearchQuery, zone: dt.tzinfo) -> SearchResult:
    """Return one page of signed reports matching ``query``, newest first.

    ``zone`` is the practice time zone in which ``date_from`` and ``date_to``
    are read. The total is counted up to :data:`COUNT_CAP`: one query reads
    the ids of the first ``COUNT_CAP + 1`` matches in order, which gives both
    the count and, for the first pages, the page itself.
    """
    page_size = max(1, min(query.page_size, MAX_PAGE_SIZE))
    page = max(1, query.page)
    offset = (page - 1) * page_size
    ordered = _ordered_ids(_matches(db_session, query, zone))
    window = list(db_session.execute(ordered.limit(COUNT_CAP + 1)).scalars())
    if offset + page_size <= len(window) or len(window) <= COUNT_CAP:
        page_ids = window[offset : offset + page_size]
    else:
        page_ids = list(
            db_session.execute(ordered.limit(page_size).offset(offset)).scalars()
        )
    return SearchResult(
        hits=_hits(db_session, page_ids),
        total=min(len(window), COUNT_CAP),
        total_is_capped=len(window) > COUNT_CAP,
        page=page,
        page_size=page_size,
    )


def export_rows(
    db_session: Session, query: SearchQuery, zone: dt.tzinfo
) -> Iterable[SearchHit]:
    """Yield every hit of ``query`` (up to :data:`EXPORT_LIMIT`), in pages."""
    ordered = _ordered_ids(_matches(db_session, query, zone))
    ids = list(db_session.execute(ordered.limit(EXPORT_LIMIT)).scalars())
    for start in range(0, len(ids), 500):
        yield from _hits(db_session, ids[start : start + 500])


def any_text_filter(query: SearchQuery) -> bool:
    """True when the query narrows the results at all."""
    return bool(
        words(query.text)
        or query.limb
        or query.region
        or query.structure
        or query.finding
        or query.grade_min is not None
        or query.date_from
        or query.date_to
        or query.radiologist_id
        or query.clinician_id
        or query.horse_id
        or query.modality
    )


__all__ = [
    "SearchHit",
    "SearchQuery",
    "SearchResult",
    "any_text_filter",
    "export_rows",
    "fold",
    "index_report",
    "prefix_upper_bound",
    "search",
    "tokens",
    "words",
]
