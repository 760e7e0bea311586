"""A veterinarian on a phone: search, open the chart, write and sign a note."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from .conftest import PHONE_VIEWPORT, LiveServer

pytestmark = pytest.mark.browser


def _assert_no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_VIEWPORT["width"], (
        f"{page.url} is {width} px wide on a {PHONE_VIEWPORT['width']} px screen"
    )


def test_vet_signs_a_soap_note_from_the_chart_on_a_phone(
    live_server: LiveServer, phone_page: Page, login: Callable[[Page, str], None]
) -> None:
    page = phone_page
    login(page, "vet")

    # Search by the registered name, typed without capitals.
    page.goto(live_server.url("/horses"))
    _assert_no_sideways_scroll(page)
    page.fill("#q", "oakridge tempest")
    page.click("form.search button[type=submit]")
    result = page.locator("ul.results li")
    expect(result).to_have_count(1)
    expect(result).to_contain_text("Storm")

    result.locator("a.result-title").click()
    expect(page.locator("h1")).to_contain_text("Storm")
    expect(page.locator(".patient-id")).to_have_text("FL000002")
    expect(page.locator("dd.owners")).to_contain_text("Oakridge Racing Syndicate 50%")
    for heading in ("Imaging orders", "Studies", "Billing"):
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
    _assert_no_sideways_scroll(page)

    # The horse is in hospital: the banner links a note to that admission.
    page.click(".current-visit a.new-note")
    expect(page.locator("h1")).to_have_text("New SOAP note")
    _assert_no_sideways_scroll(page)
    page.fill("#subjective", "Bright, eating hay, passing normal droppings.")
    page.fill("#objective", "HR 40, RR 12, T 37.6 °C. Normal gut sounds all quadrants.")
    page.fill("#assessment", "Colic resolved with medical treatment.")
    page.fill("#plan", "Discharge tomorrow; walk in hand 10 minutes twice daily.")
    page.click("button[name=action][value=sign]")

    # Back on the chart, the new note is signed by the logged-in vet.
    page.wait_for_url("**/horses/*#note-*")
    note_id = page.url.rsplit("#note-", 1)[1]
    note = page.locator(f"#note-{note_id}")
    expect(note).to_have_attribute("data-status", "signed")
    expect(note.locator(".signature")).to_contain_text("Signed by Dr Sarah Whitfield")
    expect(note).to_contain_text("Colic resolved with medical treatment.")
    # A signed note offers an addendum, never an edit.
    expect(note.get_by_role("link", name="Add addendum")).to_be_visible()
    expect(note.get_by_role("link", name="Edit draft")).to_have_count(0)
    _assert_no_sideways_scroll(page)


def _end_sessions(live_server: LiveServer) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(live_server.database_url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM login_session"))
    engine.dispose()


def _log_in_after_expiry(page: Page, live_server: LiveServer, username: str) -> None:
    """Log in on the login page that a form sent after the session ended leads to."""
    page.wait_for_url(re.compile(r"/login\?expired=1&"))
    page.fill("#username", username)
    page.fill("#password", live_server.password)
    page.click("form button[type=submit]")


def test_form_restored_after_session_ends(
    live_server: LiveServer, page: Page, login: Callable[[Page, str], None]
) -> None:
    login(page, "vet")
    page.goto(live_server.url("/horses"))
    page.fill("#q", "oakridge tempest")
    page.click("form.search button[type=submit]")
    page.locator("ul.results li a.result-title").click()
    page.click(".current-visit a.new-note")
    expect(page.locator("h1")).to_have_text("New SOAP note")
    form_url = page.url
    page.fill("#subjective", "Quiet, pawing twice in the last hour.")
    page.fill("#plan", "Recheck at 18:00.")

    # The session ends while the note is being written.
    _end_sessions(live_server)
    page.click("button[name=action][value=sign]")

    page.wait_for_url(re.compile(r"/login\?expired=1&"))
    expect(page.locator("p.notice")).to_contain_text("session ended")
    _log_in_after_expiry(page, live_server, "vet")

    # Back on the form, which drops the restore flag from the address.
    expect(page).to_have_url(form_url)
    expect(page.locator("#restored-form")).to_be_visible()
    expect(page.locator("#subjective")).to_have_value(
        "Quiet, pawing twice in the last hour."
    )
    expect(page.locator("#plan")).to_have_value("Recheck at 18:00.")
    page.click("button[name=action][value=sign]")
    page.wait_for_url("**/horses/*#note-*")
    note_id = page.url.rsplit("#note-", 1)[1]
    expect(page.locator(f"#note-{note_id}")).to_contain_text("Recheck at 18:00.")


def test_restored_rows_keep_order_and_user(
    live_server: LiveServer, page: Page, login: Callable[[Page, str], None]
) -> None:
    login(page, "vet")
    page.goto(live_server.url("/horses/1/owners"))
    form_url = page.url
    shares = ["12.5", "37.5", "50"]
    for row, share in enumerate(shares, start=1):
        page.fill(f"#owner_percent_{row}", share)
    _end_sessions(live_server)

    page.click("form.card button[type=submit]")
    _log_in_after_expiry(page, live_server, "vet")

    expect(page).to_have_url(form_url)
    expect(page.locator("#restored-form")).to_be_visible()
    for row, share in enumerate(shares, start=1):
        expect(page.locator(f"#owner_percent_{row}")).to_have_value(share)

    # Someone else logging in on this tab does not get them.
    page.fill("#owner_percent_1", "99")
    _end_sessions(live_server)
    page.click("form.card button[type=submit]")
    _log_in_after_expiry(page, live_server, "admin")
    expect(page).to_have_url(form_url)
    expect(page.locator("#restored-form")).to_have_count(0)
    expect(page.locator("#owner_percent_1")).not_to_have_value("99")


def test_chart_keeps_unsent_text_when_the_session_ends(
    live_server: LiveServer, page: Page, login: Callable[[Page, str], None]
) -> None:
    login(page, "vet")
    page.goto(live_server.url("/horses/1"))
    box = page.locator("textarea").first
    box.evaluate(
        "element => { const d = element.closest('details'); if (d) d.open = true; }"
    )
    box.fill("Lame left fore since this morning.")
    _end_sessions(live_server)

    expect(page.locator("#session-ended")).to_be_visible(timeout=10_000)
    expect(box).to_have_value("Lame left fore since this morning.")
    assert page.url.endswith("/horses/1")
