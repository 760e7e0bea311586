"""Reading, reporting, signing and searching in Chromium against ``fetlock serve``.

The live server's demo practice has two studies waiting to be read (Hector
and Rio). The radiologist claims Hector's, reports a coded finding with a key
image and signs; the requesting veterinarian's open chart then shows the
signed PDF and the thumbnail without a reload, the header counts the
notification, and findings search lists Hector beside the demo's navicular
horses.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, Page, expect
from tests.e2e.conftest import PHONE_VIEWPORT, LiveServer

pytestmark = pytest.mark.browser

# The chart refreshes its sections every 2 s and the worker starts the PDF
# job on commit; this bounds the wait, it does not measure it.
CHART_WAIT_MS = 15_000


def test_claim_report_sign_and_search(
    live_server: LiveServer,
    browser: Browser,
    page: Page,
    login: Callable[[Page, str], None],
) -> None:
    # The radiologist claims Hector's study from the reading queue.
    login(page, "radiologist")
    page.goto(live_server.url("/reading"))
    row = page.locator("tr", has_text="Hector")
    expect(row).to_contain_text("HIGH")
    horse_href = row.locator("a").first.get_attribute("href")
    assert horse_href is not None and horse_href.startswith("/horses/")
    row.get_by_role("button", name="Claim and read").click()
    expect(page).to_have_url(re.compile(r"/reports/\d+/edit$"))
    expect(page.locator(".claimed-by")).to_contain_text("Dr Jürgen Falk")

    # Another user sees who is reading it.
    admin_context = browser.new_context(viewport=PHONE_VIEWPORT)
    admin = admin_context.new_page()
    login(admin, "admin")
    admin.goto(live_server.url("/reading"))
    expect(admin.locator("tr", has_text="Hector")).to_contain_text(
        "Being read by Dr Jürgen Falk"
    )
    # On the phone each study is a card that fits the screen.
    width = admin.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_VIEWPORT["width"], f"/reading is {width} px wide"
    reader = admin.locator("tr", has_text="Hector").locator("td.reader")
    assert reader.evaluate("cell => getComputedStyle(cell).display") == "block"
    admin_context.close()

    # The requesting veterinarian keeps Hector's chart open meanwhile.
    vet_context = browser.new_context(viewport={"width": 1280, "height": 900})
    vet = vet_context.new_page()
    login(vet, "vet")
    vet.goto(live_server.url(horse_href))
    expect(vet.locator("#reports-section")).to_contain_text("No reports yet")
    badge = vet.locator(".notification-count")
    expect(badge).to_be_visible()
    unread_before = int(badge.inner_text())

    # Report one coded finding with a key image, and sign.
    page.click("#add-finding")
    finding = page.locator(".finding").last
    finding.locator("[name=limb]").select_option("LF")
    finding.locator("[name=structure]").select_option("navicular_bone")
    finding.locator("[name=finding]").select_option("flexor_cortex_erosion")
    finding.locator("[name=grade]").select_option("2")
    finding.locator("[name=detail]").fill("Lucency of the flexor cortex.")
    page.locator(".key-image").last.check()
    page.fill("#impression", "Navicular changes with flexor cortex erosion.")

    # Signing without a structure names the field; nothing is signed.
    finding.locator("[name=structure]").select_option("")
    page.click("#sign-report")
    expect(page.locator("#editor-message")).to_contain_text("structure is missing")
    expect(finding.locator(".f-structure")).to_have_class(re.compile("has-error"))
    finding.locator("[name=structure]").select_option("navicular_bone")
    page.click("#sign-report")
    expect(page).to_have_url(re.compile(r"/reports/\d+$"))
    expect(page.locator(".report-view")).to_have_attribute("data-status", "final")
    expect(page.locator(".content-hash")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    report_path = page.url.removeprefix(live_server.base_url)

    # The open chart shows the signed PDF and the thumbnail, no click needed.
    section = vet.locator("#reports-section")
    expect(section.locator("a.report-pdf")).to_be_visible(timeout=CHART_WAIT_MS)
    expect(section.locator("img.report-thumb")).to_be_visible()
    pdf = vet.request.get(live_server.url(f"{report_path}/pdf"))
    assert pdf.ok and pdf.body().startswith(b"%PDF")
    expect(badge).to_have_text(str(unread_before + 1), timeout=5_000)
    vet.goto(live_server.url("/notifications"))
    expect(vet.locator(".notification.unread").first).to_contain_text(
        "Signed report for Hector"
    )
    vet_context.close()

    # Findings search lists Hector with the demo's navicular horses.
    page.goto(live_server.url("/reports/search"))
    page.fill("#q", "navicular changes")
    page.get_by_role("button", name="Search").click()
    horses = page.locator(".hit a.horse")
    expect(horses).to_have_count(4)
    names = sorted(horses.all_inner_texts())
    assert names == ["Duke", "Hector", "Marcel", "Storm"]
    page.locator("#limb").select_option("LF")
    page.locator("#finding").select_option("flexor_cortex_erosion")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".hit a.horse")).to_have_text(["Hector"])
