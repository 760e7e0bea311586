"""Reception issues a syndicate owner's invoice from the horse's chart."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from .conftest import PHONE_VIEWPORT, LiveServer

pytestmark = pytest.mark.browser


def test_reception_issues_an_owner_invoice_from_the_chart(
    live_server: LiveServer, phone_page: Page, login: Callable[[Page, str], None]
) -> None:
    page = phone_page
    login(page, "reception")

    # Storm, the demo syndicate horse (50/30/20), has three draft invoices.
    page.goto(live_server.url("/horses"))
    page.fill("#q", "Storm")
    page.click("form.search button[type=submit]")
    page.locator("ul.results li a.result-title", has_text="Storm").first.click()
    expect(page.locator("h1")).to_contain_text("Storm")
    section = page.locator("#billing-section")
    visit = section.locator(".billing-visit").first
    drafts = visit.locator("li.invoice.draft")
    # The chart fetches the section after the page loads; allow for a busy
    # machine before the first fetch lands.
    expect(drafts).to_have_count(3, timeout=30_000)
    expect(visit.locator("tr.charge.procedure").first).to_be_visible()
    shares = [drafts.nth(i).locator(".share").inner_text() for i in range(3)]
    assert shares == ["50%", "30%", "20%"]
    owner = drafts.first.get_attribute("data-client-id")
    total = drafts.first.locator(".invoice-total").inner_text()

    # The largest owner's draft is issued from the chart.
    drafts.first.get_by_role("button", name="Issue").click()
    page.wait_for_url(re.compile(r".*/horses/\d+$"))
    issued = visit.locator("li.invoice.issued")
    expect(issued).to_have_count(1)
    expect(issued).to_have_attribute("data-client-id", owner or "")
    expect(issued.locator("a.invoice-link")).to_have_text(re.compile(r"^INV-\d{6}$"))
    expect(issued.locator(".invoice-total")).to_have_text(total)
    expect(visit.get_by_role("button", name="Issue")).to_have_count(2)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_VIEWPORT["width"], f"chart is {width} px wide"

    # The issued invoice opens on its own page with no Issue button, and
    # its PDF is served.
    number = issued.locator("a.invoice-link").inner_text()
    issued.locator("a.invoice-link").click()
    expect(page.locator("h1")).to_contain_text(number)
    expect(page.locator("article.invoice-page")).to_have_attribute(
        "data-status", "issued"
    )
    expect(page.get_by_role("button", name="Issue")).to_have_count(0)
    href = page.locator("a", has_text="PDF").first.get_attribute("href")
    assert href is not None
    pdf = page.request.get(live_server.url(href))
    assert pdf.status == 200
    assert pdf.body().startswith(b"%PDF")
