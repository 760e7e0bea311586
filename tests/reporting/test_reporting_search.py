"""Findings search: words, prefixes, coded filters, versions, paging, export."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session
from tests.reporting.conftest import ReadingCase, make_case, reader_actor

from fetlock.auth.models import User
from fetlock.config import Settings
from fetlock.reporting import search, service
from fetlock.reporting.models import ReportKind
from fetlock.reporting.schemas import FindingIn, ReportContentIn

UTC = dt.UTC


@dataclass
class Library:
    coded: ReadingCase
    free_text: ReadingCase
    fetlock: ReadingCase
    draft: ReadingCase


def _signed(db_session: Session, case: ReadingCase, content: ReportContentIn) -> int:
    actor = reader_actor(case.radiologist)
    report = service.create_report(db_session, actor, case.radiologist, case.study.id)
    service.update_report(db_session, actor, case.radiologist, report.id, content)
    service.sign_report(db_session, actor, case.radiologist, report.id)
    return report.id


@pytest.fixture
def library(
    db_session: Session, settings: Settings, users: tuple[User, User]
) -> Library:
    vet, radiologist = users
    coded = make_case(db_session, settings, vet, radiologist, barn_name="Ashgrove")
    free_text = make_case(db_session, settings, vet, radiologist, barn_name="Bramble")
    fetlock = make_case(
        db_session, settings, vet, radiologist, barn_name="Cobalt",
        body_region="fetlock",
    )  # fmt: skip
    draft = make_case(db_session, settings, vet, radiologist, barn_name="Dusty")
    _signed(
        db_session,
        coded,
        ReportContentIn(
            template="foot",
            findings=[
                FindingIn(
                    limb="LF", structure="navicular_bone",
                    finding="synovial_invaginations", grade=2,
                ),
                FindingIn(
                    limb="RF", structure="navicular_bone", finding="sclerosis", grade=3
                ),
            ],
            impression="Bilateral navicular changes, worse on the right.",
        ),
    )  # fmt: skip
    _signed(
        db_session,
        free_text,
        ReportContentIn(
            template="foot",
            findings=[
                FindingIn(
                    limb="LF", structure="dip_joint", finding="osteophyte", grade=1,
                    detail="Small spur; navicular outline as on Dr Müller's films.",
                )
            ],
            impression="Early distal interphalangeal joint osteoarthritis.",
        ),
    )  # fmt: skip
    _signed(
        db_session,
        fetlock,
        ReportContentIn(
            template="fetlock",
            findings=[
                FindingIn(
                    limb="RH", structure="fetlock_joint", finding="osteoarthritis",
                    grade=4,
                )
            ],
            impression="Severe fetlock osteoarthritis.",
        ),
    )  # fmt: skip
    actor = reader_actor(radiologist)
    report = service.create_report(db_session, actor, radiologist, draft.study.id)
    service.update_report(
        db_session,
        actor,
        radiologist,
        report.id,
        ReportContentIn(impression="Draft mentions navicular but is not signed."),
    )
    db_session.commit()
    return Library(coded, free_text, fetlock, draft)


def _horses(db_session: Session, **filters: object) -> list[str]:
    result = search.search(db_session, search.SearchQuery(**filters), UTC)  # type: ignore[arg-type]
    return sorted(h.horse.barn_name for h in result.hits if h.horse)


class TestWords:
    def test_fold__lowercases_and_removes_accents(self) -> None:
        assert search.fold("Müller-Ærø, ß!") == "muller aero ss"

    @pytest.mark.parametrize(
        ("prefix", "upper"),
        [("navic", "navid"), ("az", "b"), ("zz", None), ("a9", "aa"), ("c3", "c4")],
    )
    def test_prefix_upper_bound(self, prefix: str, upper: str | None) -> None:
        assert search.prefix_upper_bound(prefix) == upper

    def test_words__plural_and_singular_index_alike(self) -> None:
        assert search.words("Navicular changes") == ["navicular", "change"]


class TestSearch:
    @pytest.fixture(autouse=True, params=["small sets", "walk by date"])
    def plan(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
        """Run each search twice: from the rarest part, and by date with probes."""
        if request.param == "walk by date":
            monkeypatch.setattr(search, "SMALL_SET", 1)

    def test_word_finds_coded_and_free_text_mentions(
        self, db_session: Session, library: Library
    ) -> None:
        assert _horses(db_session, text="navicular") == ["Ashgrove", "Bramble"]

    def test_all_words_must_match(self, db_session: Session, library: Library) -> None:
        assert _horses(db_session, text="navicular changes") == ["Ashgrove"]

    def test_prefix_and_synonym_match(
        self, db_session: Session, library: Library
    ) -> None:
        assert _horses(db_session, text="navic") == ["Ashgrove", "Bramble"]
        # "distal sesamoid" is a synonym of the coded navicular bone.
        assert _horses(db_session, text="distal sesamoid") == ["Ashgrove"]
        # Accents in the report text do not hide it.
        assert _horses(db_session, text="muller") == ["Bramble"]

    def test_coded_filters_apply_to_one_finding(
        self, db_session: Session, library: Library
    ) -> None:
        assert _horses(db_session, finding="osteoarthritis") == ["Cobalt"]
        assert _horses(db_session, limb="RF", structure="navicular_bone") == [
            "Ashgrove"
        ]
        # Ashgrove's grade-3 finding is on the RF, not the LF.
        assert _horses(db_session, limb="LF", grade_min=3) == []
        assert _horses(db_session, grade_min=3) == ["Ashgrove", "Cobalt"]
        assert _horses(db_session, region="fetlock") == ["Cobalt"]

    def test_people_and_dates_filter(
        self, db_session: Session, library: Library
    ) -> None:
        reader = library.coded.radiologist.id
        clinician = library.coded.vet.id
        assert len(_horses(db_session, radiologist_id=reader)) == 3
        assert len(_horses(db_session, clinician_id=clinician)) == 3
        assert _horses(db_session, clinician_id=clinician + 999) == []
        today = dt.datetime.now(UTC).date()
        assert len(_horses(db_session, date_from=today, date_to=today)) == 3
        assert _horses(db_session, date_to=today - dt.timedelta(days=1)) == []

    def test_drafts_are_not_found(self, db_session: Session, library: Library) -> None:
        assert "Dusty" not in _horses(db_session, text="navicular")

    def test_amended_version_replaces_the_old_one_in_results(
        self, db_session: Session, library: Library
    ) -> None:
        case = library.fetlock
        actor = reader_actor(case.radiologist)
        first = service.reports_for_study(db_session, case.study.id)[0]
        amendment = service.start_follow_up(
            db_session, actor, case.radiologist, first.id, ReportKind.AMENDMENT
        )
        service.update_report(
            db_session,
            actor,
            case.radiologist,
            amendment.id,
            ReportContentIn(
                template="fetlock",
                findings=[
                    FindingIn(
                        limb="RH", structure="proximal_sesamoid_bones",
                        finding="fracture", grade=3,
                    )
                ],
                impression="Correction: apical sesamoid fracture, not osteoarthritis.",
            ),
        )  # fmt: skip
        service.sign_report(db_session, actor, case.radiologist, amendment.id)
        hits = search.search(
            db_session, search.SearchQuery(text="sesamoid fracture"), UTC
        ).hits
        assert [h.report.id for h in hits] == [amendment.id]
        assert _horses(db_session, finding="osteoarthritis") == []

    def test_pages(self, db_session: Session, library: Library) -> None:
        first = search.search(
            db_session, search.SearchQuery(text="navicular", page_size=1), UTC
        )
        second = search.search(
            db_session, search.SearchQuery(text="navicular", page_size=1, page=2), UTC
        )
        assert first.total == 2 and first.pages == 2
        assert len(first.hits) == len(second.hits) == 1
        assert first.hits[0].report.id != second.hits[0].report.id


def test_pages_beyond_the_counted_window(
    db_session: Session, library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "COUNT_CAP", 1)
    everything = search.search(db_session, search.SearchQuery(page_size=5), UTC)
    first = search.search(db_session, search.SearchQuery(page_size=1), UTC)
    third = search.search(db_session, search.SearchQuery(page_size=1, page=3), UTC)
    assert first.total == 1 and first.total_is_capped
    assert [h.report.id for h in third.hits] == [everything.hits[2].report.id]


def test_new_synonym_finds_signed_reports_after_reindex(
    db_session: Session, library: Library, run_jobs: Callable[[], int]
) -> None:
    from fetlock.reporting import vocabulary
    from fetlock.reporting.models import TermKind

    assert _horses(db_session, text="boat bone") == []
    term = vocabulary.get_term(db_session, TermKind.STRUCTURE, "navicular_bone")
    assert term is not None
    vocabulary.update_term(
        db_session,
        reader_actor(library.coded.radiologist),
        term.id,
        {"synonyms": [*term.synonym_list, "boat bone"]},
    )
    db_session.commit()
    assert run_jobs() >= 1
    db_session.expire_all()
    assert _horses(db_session, text="boat bone") == ["Ashgrove"]
