"""The demo practice's reports: navicular search finds exactly the navicular horses."""

from __future__ import annotations

from sqlalchemy.orm import Session

from fetlock.config import Settings
from fetlock.demo import seed_demo
from fetlock.reporting import search, service


def test_demo_navicular_search_finds_exactly_the_navicular_horses(
    db_session: Session, settings: Settings
) -> None:
    assert seed_demo(db_session, settings, password="demo-password-long")
    db_session.commit()

    for text in ("navicular changes", "navicular"):
        result = search.search(db_session, search.SearchQuery(text=text), settings.zone)
        horses = sorted(h.horse.barn_name for h in result.hits if h.horse)
        assert horses == ["Duke", "Marcel", "Storm"], text
    coded = search.search(
        db_session, search.SearchQuery(structure="navicular_bone"), settings.zone
    )
    assert {h.horse.barn_name for h in coded.hits if h.horse} == {
        "Duke",
        "Marcel",
        "Storm",
    }
    waiting = [item.horse.barn_name for item in service.reading_queue(db_session)]
    assert waiting == ["Hector", "Rio"]
    for hit in coded.hits:
        assert service.verify_signature(db_session, hit.report)
