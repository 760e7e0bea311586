"""The viewer in Chromium against a live Fetlock: chart to image, tools, phone,
offline reopening and log-out.

The studies are real files (``deid-data``'s cat radiograph, 0.14 mm Pixel
Spacing, and its ultrasound clip) stored through the ingest service into the
live server's database and blob store, and attached to the demo horse Blaze.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, select
from tests.e2e.conftest import LiveServer
from tests.viewer.studydata import (
    CAT_PIXEL_SPACING_MM,
    StudyStore,
    cat_radiograph,
    radiograph_copy,
    today_minus,
    ultrasound_clip,
    ultrasound_copy,
)

from fetlock.audit.models import AuditEvent
from fetlock.viewer.routes import VIEWER_BUILD_DIR

pytestmark = pytest.mark.browser

CAT_ROWS, CAT_COLUMNS = 2614, 3072
FIRST_IMAGE_MS = 60_000


@dataclass(frozen=True)
class Studies:
    horse_id: int
    single: str  # one calibrated radiograph, the full cat
    small: str  # a 1200 x 1400 cut of it, where the size does not matter
    views: str  # two views of the left fore, for the hanging grid
    prior: str  # last year's left fore, no pixel spacing
    clip: str  # multi-frame ultrasound


@pytest.fixture(scope="module")
def studies(
    live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Studies]:
    if not (VIEWER_BUILD_DIR / ".vite" / "manifest.json").exists():
        pytest.skip("viewer not built: run `make install` with Node.js and npm")
    folder = tmp_path_factory.mktemp("viewer-files")
    store = StudyStore(live_server.database_url, live_server.data_dir)
    horse = store.horse("Blaze")

    def radiographs(date: str, views: list[tuple[str, Any]], **kw: Any) -> str:
        study_uid, series_uid = generate_uid(), generate_uid()
        paths = [
            radiograph_copy(
                cat_radiograph(),
                folder / f"{study_uid}-{n}.dcm",
                horse,
                study_uid=study_uid,
                series_uid=series_uid,
                study_date=date,
                description="Left fore foot",
                body_part="HOOF",
                view=view,
                instance_number=n,
                crop=crop,
                **kw,
            )
            for n, (view, crop) in enumerate(views, start=1)
        ]
        return store.store(paths, horse).StudyInstanceUID

    clip_uid = generate_uid()
    ultrasound_copy(
        ultrasound_clip(),
        folder / "clip.dcm",
        horse,
        study_uid=clip_uid,
        study_date=today_minus(20),
    )
    store.store([folder / "clip.dcm"], horse)
    result = Studies(
        horse_id=horse.id,
        single=radiographs(today_minus(1), [("LF-LM", None)]),
        small=radiographs(today_minus(5), [("RF-LM", (1200, 1400))]),
        views=radiographs(
            today_minus(2), [("LF-LM", (1200, 1000)), ("LF-DP", (1000, 1200))]
        ),
        prior=radiographs(today_minus(400), [("LF-LM", (900, 900))], calibrated=False),
        clip=clip_uid,
    )
    store.close()
    yield result


def viewer_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("window.fetlockViewer.state()")
    return state


def wait_first_image(page: Page) -> dict[str, Any]:
    page.wait_for_function(
        "window.fetlockViewer && (window.fetlockViewer.state().firstImageAt"
        " || window.fetlockViewer.state().error)",
        timeout=FIRST_IMAGE_MS,
    )
    state = viewer_state(page)
    assert state["error"] is None, state["error"]
    return state


def canvas_stats(page: Page, pane: int = 0) -> dict[str, float]:
    """Share of lit pixels and the spread of grey values in a pane's canvas."""
    stats: dict[str, float] = page.evaluate(
        """(pane) => {
          const canvas = document.querySelectorAll('.pane-canvas canvas')[pane];
          const ctx = canvas.getContext('2d');
          const {data} = ctx.getImageData(0, 0, canvas.width, canvas.height);
          let lit = 0, sum = 0, sum2 = 0, n = data.length / 4;
          for (let i = 0; i < data.length; i += 4) {
            const v = data[i];
            if (v > 16) lit++;
            sum += v; sum2 += v * v;
          }
          const mean = sum / n;
          return {lit: lit / n, std: Math.sqrt(sum2 / n - mean * mean),
                  width: canvas.width, height: canvas.height};
        }""",
        pane,
    )
    return stats


def settled_page_point(page: Page, point: tuple[int, int]) -> tuple[float, float]:
    """Page coordinates of an image pixel, once the layout has stopped moving."""
    script = "p => window.fetlockViewer.imageToPage(0, p)"
    previous = None
    for _ in range(50):
        current = tuple(page.evaluate(script, list(point)))
        if current == previous:
            return current  # type: ignore[return-value]
        previous = current
        page.wait_for_timeout(200)
    raise AssertionError(f"the image kept moving: last at {previous}")


def settled_measurement(page: Page) -> dict[str, Any]:
    """The only measurement, once the viewer has recomputed it for its final handles.

    Cornerstone computes a length while it renders, one frame behind the
    mouse, so a busy machine can show the value of an earlier drag position
    for a moment after the button is released.
    """
    previous = None
    for _ in range(50):
        (current,) = viewer_state(page)["measurements"]
        if current == previous:
            return current  # type: ignore[no-any-return]
        previous = current
        page.wait_for_timeout(200)
    raise AssertionError(f"the measurement kept changing: last {previous}")


def open_from_chart(
    page: Page, live_server: LiveServer, horse_id: int, uid: str
) -> None:
    page.goto(live_server.url(f"/horses/{horse_id}"))
    link = page.locator(f"#studies-section a[href='/viewer/studies/{uid}']").first
    link.wait_for(timeout=15_000)
    link.click()
    page.wait_for_url(f"**/viewer/studies/{uid}")


def test_chart_link_opens_study_at_full_resolution(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    login(page, "vet")
    open_from_chart(page, live_server, studies.horse_id, studies.single)
    state = wait_first_image(page)

    pane = state["panes"][0]
    assert pane["studyInstanceUID"] == studies.single
    assert (pane["rows"], pane["columns"]) == (CAT_ROWS, CAT_COLUMNS)
    assert (pane["fileRows"], pane["fileColumns"]) == (CAT_ROWS, CAT_COLUMNS)
    assert pane["imageQuality"] == 8  # Cornerstone's FULL_RESOLUTION
    stats = canvas_stats(page)
    assert stats["lit"] > 0.2, stats
    assert stats["std"] > 20, stats

    # At 1:1 one image pixel covers one device pixel: nothing is resampled.
    page.get_by_role("button", name="1:1").click()
    ratio = viewer_state(page)["panes"][0]["devicePixelsPerImagePixel"]
    assert ratio == pytest.approx(1.0, abs=0.01)

    engine = create_engine(live_server.database_url)
    with engine.connect() as conn:
        views = conn.execute(
            select(AuditEvent.actor_name, AuditEvent.horse_id).where(
                AuditEvent.action == "study.view",
                AuditEvent.object_id == studies.single,
            )
        ).all()
    engine.dispose()
    assert ("vet", studies.horse_id) in views


@pytest.mark.parametrize("render", ["gpu", "cpu"])
def test_length_on_calibrated_radiograph_in_millimetres(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
    render: str,
) -> None:
    login(page, "vet")
    page.goto(live_server.url(f"/viewer/studies/{studies.single}?render={render}"))
    wait_first_image(page)
    page.get_by_role("button", name="Length").click()

    start, end = (600, 900), (2600, 1700)
    x0, y0 = settled_page_point(page, start)
    x1, y1 = settled_page_point(page, end)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=4)
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    page.locator("#measurements li").first.wait_for()

    measurement = settled_measurement(page)
    assert measurement["unit"] == "mm"
    expected = math.dist(start, end) * CAT_PIXEL_SPACING_MM
    # The mouse lands on whole CSS pixels; each covers this many image pixels.
    image_px_per_css_px = 1 / (
        viewer_state(page)["panes"][0]["devicePixelsPerImagePixel"]
        / page.evaluate("window.devicePixelRatio")
    )
    tolerance = 2 * image_px_per_css_px * CAT_PIXEL_SPACING_MM
    assert measurement["value"] == pytest.approx(expected, abs=tolerance)
    # And exactly: the handles' distance in pixels times 0.14 mm.
    handles = measurement["points"]
    exact = math.dist(handles[0][:2], handles[1][:2]) * CAT_PIXEL_SPACING_MM
    assert measurement["value"] == pytest.approx(exact, rel=1e-6)
    text = page.locator("#measurements li").first.inner_text()
    assert text.startswith(f"Length {measurement['value']:.2f} mm")


def test_undecodable_frame_shows_an_error(
    browser: Browser,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    # Without the service worker, so that the route below intercepts the request.
    context = browser.new_context(service_workers="block")
    page = context.new_page()
    boundary = "damaged"
    body = (
        (
            f"--{boundary}\r\nContent-Type: image/jls; "
            "transfer-syntax=1.2.840.10008.1.2.4.80\r\n\r\n"
        ).encode()
        + b"\xff\xd8\xff\xf7 not a codestream"
        + f"\r\n--{boundary}--".encode()
    )
    context.route(
        "**/frames/**",
        lambda route: route.fulfill(
            status=200,
            headers={
                "Content-Type": f'multipart/related; type="image/jls"; '
                f"boundary={boundary}"
            },
            body=body,
        ),
    )
    try:
        login(page, "vet")
        page.goto(live_server.url(f"/viewer/studies/{studies.single}"))
        page.wait_for_function(
            "window.fetlockViewer && window.fetlockViewer.state().error",
            timeout=FIRST_IMAGE_MS,
        )
        error = viewer_state(page)["error"]
        assert error.startswith("Could not show 1.")
        assert "Reload the page" in error
        assert page.locator("#viewer-error").is_visible()
    finally:
        context.close()


def test_uncalibrated_prior_warns_and_measures_in_pixels(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    login(page, "vet")
    page.goto(live_server.url(f"/viewer/studies/{studies.prior}"))
    wait_first_image(page)
    warning = page.locator(".pane-warning").first
    assert warning.is_visible()
    assert "No pixel spacing" in warning.inner_text()
    assert viewer_state(page)["panes"][0]["calibrated"] is False


def test_grid_and_one_click_comparison_with_prior(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    login(page, "vet")
    page.goto(live_server.url(f"/viewer/studies/{studies.views}"))
    wait_first_image(page)
    page.wait_for_function("window.fetlockViewer.state().panes.every(p => p.rows)")
    state = viewer_state(page)
    assert state["layout"] == "grid"
    assert [p["fileColumns"] for p in state["panes"]] == [1000, 1200]

    # Priors of the same region come first, newest first; one click compares.
    listed = page.locator("#priors li").evaluate_all(
        "items => items.map(i => i.dataset.studyUid)"
    )
    ours = [studies.single, studies.small, studies.prior, studies.clip]
    # The demo may give Blaze studies of its own; only these are ordered here.
    assert [uid for uid in listed if uid in ours] == ours
    page.locator(f"#priors li[data-study-uid='{studies.prior}'] [data-compare]").click()
    page.wait_for_function(
        "window.fetlockViewer.state().layout === 'compare'"
        " && window.fetlockViewer.state().panes.every(p => p.rows)"
    )
    panes = viewer_state(page)["panes"]
    assert [p["studyInstanceUID"] for p in panes] == [studies.views, studies.prior]
    assert canvas_stats(page, 1)["lit"] > 0.1


def test_cine_plays_ultrasound_at_chosen_frame_rate(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    login(page, "vet")
    page.goto(live_server.url(f"/viewer/studies/{studies.clip}"))
    state = wait_first_image(page)
    assert state["panes"][0]["count"] > 1
    assert page.locator("#cine").is_visible()
    page.fill("#cine-fps", "10")
    page.dispatch_event("#cine-fps", "change")
    page.click("#cine-play")
    page.wait_for_function(
        "window.fetlockViewer.state().panes[0].index >= 2", timeout=20_000
    )
    state = viewer_state(page)
    assert state["panes"][0]["playing"] is True
    assert state["panes"][0]["framesPerSecond"] == 10
    page.click("#cine-play")
    assert viewer_state(page)["panes"][0]["playing"] is False


def gesture(page: Page, fingers: list[list[tuple[float, float]]]) -> None:
    """Move each finger along its path (same number of points per finger)."""
    session = page.context.new_cdp_session(page)

    def send(kind: str, points: list[tuple[float, float]]) -> None:
        session.send(
            "Input.dispatchTouchEvent",
            {
                "type": kind,
                "touchPoints": [
                    {"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)
                ],
            },
        )

    send("touchStart", [path[0] for path in fingers])
    for step in range(1, len(fingers[0])):
        send("touchMove", [path[step] for path in fingers])
        page.wait_for_timeout(30)
    send("touchEnd", [])
    session.detach()


@pytest.fixture
def touch_phone(browser: Browser) -> Iterator[Page]:
    context: BrowserContext = browser.new_context(
        viewport={"width": 390, "height": 844},
        has_touch=True,
        is_mobile=True,
        device_scale_factor=3,
    )
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def no_sideways_scroll(page: Page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"page scrolls sideways: {widths}"


def test_phone_touch_pinch_pan_and_window(
    touch_phone: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    page = touch_phone
    login(page, "vet")
    page.goto(live_server.url(f"/horses/{studies.horse_id}"))
    page.locator("#studies-section a[href^='/viewer/studies/']").first.wait_for()
    no_sideways_scroll(page)
    page.goto(live_server.url(f"/viewer/studies/{studies.small}"))
    before = wait_first_image(page)["panes"][0]
    no_sideways_scroll(page)

    box = page.locator(".pane-canvas").first.bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    # Pinch out: two fingers moving apart zoom in.
    gesture(
        page,
        [
            [(cx - 20 - 8 * i, cy) for i in range(10)],
            [(cx + 20 + 8 * i, cy) for i in range(10)],
        ],
    )
    zoomed = viewer_state(page)["panes"][0]
    assert zoomed["zoom"] > before["zoom"] * 1.2, (before["zoom"], zoomed["zoom"])

    # One finger in W/L mode (the default) changes the window.
    gesture(page, [[(cx, cy + 6 * i) for i in range(10)]])
    windowed = viewer_state(page)["panes"][0]
    assert windowed["voiRange"] != zoomed["voiRange"]

    # One finger in Pan mode drags the image, leaving the window alone.
    pan = page.get_by_role("button", name="Pan")
    # Selected by click: in CI Chromium twice dropped a synthetic tap on this
    # button sent right after the touch gesture above. The touch path under
    # test is the drag on the canvas below.
    pan.click()
    expect(pan).to_have_attribute("aria-pressed", "true")
    x0, y0 = page.evaluate("p => window.fetlockViewer.imageToPage(0, p)", [700, 600])
    gesture(page, [[(cx + 5 * i, cy) for i in range(10)]])
    # The camera change reaches imageToPage once the pane has rendered again.
    deadline = time.monotonic() + 5
    while True:
        x1, y1 = page.evaluate(
            "p => window.fetlockViewer.imageToPage(0, p)", [700, 600]
        )
        if x1 - x0 > 20 or time.monotonic() > deadline:
            break
        page.wait_for_timeout(50)
    after = viewer_state(page)
    # On failure, say whether the drag reached the window tool instead.
    assert x1 - x0 > 20, (x0, x1, after["primaryTool"], after["panes"][0]["voiRange"])
    assert after["panes"][0]["voiRange"] == windowed["voiRange"]

    # The window sliders are a touch control too.
    page.locator("#wl-width").fill("600")
    page.locator("#wl-width").dispatch_event("input")
    voi = viewer_state(page)["panes"][0]["voiRange"]
    assert voi["upper"] - voi["lower"] == pytest.approx(600, abs=1)
    no_sideways_scroll(page)


def test_offline_reopens_study_from_device_then_logout_clears(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    login(page, "vet")
    page.goto(live_server.url(f"/horses/{studies.horse_id}"))
    page.wait_for_function(
        "navigator.serviceWorker.controller !== null", timeout=30_000
    )
    open_from_chart(page, live_server, studies.horse_id, studies.small)
    wait_first_image(page)
    page.wait_for_function(
        "window.fetlockViewer.state().offline.complete === true", timeout=60_000
    )
    # Visit the chart again so the page that lists offline studies is stored.
    page.goto(live_server.url(f"/horses/{studies.horse_id}"))
    page.locator(f"#offline-studies a[data-offline-study='{studies.small}']").wait_for()

    context = page.context
    served: list[tuple[str, bool]] = []
    context.set_offline(True)
    try:
        page.on(
            "response",
            lambda r: served.append((r.url, r.from_service_worker)),
        )
        page.reload()
        assert page.evaluate("navigator.onLine") is False
        link = page.locator(f"#offline-studies a[data-offline-study='{studies.small}']")
        link.wait_for()
        assert "No signal" in page.locator("#offline-studies h3").inner_text()
        link.click()
        page.wait_for_url(f"**/viewer/studies/{studies.small}")
        state = wait_first_image(page)
        pane = state["panes"][0]
        assert (pane["rows"], pane["columns"]) == (1200, 1400)
        assert pane["imageQuality"] == 8
        assert canvas_stats(page)["lit"] > 0.2
        frames = [(url, sw) for url, sw in served if "/frames/" in url]
        assert frames, "no frame was requested while offline"
        assert all(sw for _, sw in frames), frames
    finally:
        context.set_offline(False)

    page.goto(live_server.url(f"/horses/{studies.horse_id}"))
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login**")
    leftovers = page.evaluate(
        """async () => {
          const urls = [];
          for (const name of await caches.keys()) {
            for (const request of await (await caches.open(name)).keys()) {
              urls.push(request.url);
            }
          }
          const dbs = indexedDB.databases ? await indexedDB.databases() : [];
          let rows = 0;
          if (dbs.some(d => d.name === 'fetlock-offline')) {
            rows = await new Promise((resolve) => {
              const open = indexedDB.open('fetlock-offline');
              open.onsuccess = () => {
                const db = open.result;
                if (!db.objectStoreNames.contains('studies')) { resolve(0); return; }
                const count = db.transaction('studies').objectStore('studies').count();
                count.onsuccess = () => resolve(count.result);
              };
            });
          }
          return {urls, rows};
        }"""
    )
    kept = [
        url
        for url in leftovers["urls"]
        if any(part in url for part in ("/dicomweb/", "/horses", "/viewer/"))
    ]
    assert kept == []
    assert leftovers["rows"] == 0


def test_external_viewer_links_on_the_page(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    login(page, "vet")
    page.goto(live_server.url(f"/viewer/studies/{studies.small}"))
    weasis = page.locator("#external-viewers a[data-viewer='Weasis']")
    href = weasis.get_attribute("href") or ""
    assert href.startswith("weasis://?%24dicom%3Ars")
    assert f"studyUID%3D{studies.small}" in href
    assert f"http%3A%2F%2F127.0.0.1%3A{live_server.base_url.rsplit(':', 1)[1]}" in href


def test_radiologist_marks_key_image_in_draft(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    login(page, "radiologist")
    page.goto(live_server.url(f"/viewer/studies/{studies.views}"))
    wait_first_image(page)
    config = page.evaluate(
        "JSON.parse(document.getElementById('viewer-config').textContent)"
    )
    headers = {"X-CSRF-Token": config["csrfToken"]}

    # With no draft report yet, the viewer says what to do first.
    page.get_by_role("button", name="★ Key image").click()
    status = page.locator("#viewer-status")
    status.filter(has_text="no draft report").wait_for()

    created = page.request.post(
        live_server.url(config["keyImages"]["reportsUrl"]), headers=headers, data={}
    )
    assert created.status == 201, created.text()
    report_id = created.json()["id"]

    page.fill("#key-caption", "LF lateromedial")
    page.get_by_role("button", name="★ Key image").click()
    page.wait_for_function("window.fetlockViewer.state().keyImages.length === 1")
    (sop,) = viewer_state(page)["keyImages"]
    assert sop == viewer_state(page)["panes"][0]["sopInstanceUID"]

    report = page.request.get(live_server.url(f"/api/v1/reports/{report_id}")).json()
    marked = [(k["sop_instance_uid"], k["caption"]) for k in report["key_images"]]
    assert marked == [(sop, "LF lateromedial")]


STORED_ON_DEVICE = """async () => {
  const rows = await new Promise((resolve) => {
    const open = indexedDB.open('fetlock-offline');
    open.onsuccess = () => {
      const store = open.result.transaction('studies').objectStore('studies');
      const request = store.getAll();
      request.onsuccess = () => resolve(request.result);
    };
  });
  const cache = await caches.open('fetlock-studies');
  const urls = (await cache.keys()).map(r => r.url);
  return {rows, urls};
}"""


def test_budget_evicts_least_recently_viewed_study(
    page: Page,
    live_server: LiveServer,
    login: Callable[[Page, str], None],
    studies: Studies,
) -> None:
    login(page, "vet")
    complete = "window.fetlockViewer.state().offline.complete === true"
    page.goto(live_server.url(f"/viewer/studies/{studies.small}"))
    wait_first_image(page)
    page.wait_for_function(complete, timeout=60_000)
    (first,) = page.evaluate(STORED_ON_DEVICE)["rows"]
    assert first["studyUID"] == studies.small
    assert first["bytes"] > 0

    # A budget that holds the first study but not both.
    page.evaluate(
        """bytes => new Promise((resolve) => {
          const open = indexedDB.open('fetlock-offline');
          open.onsuccess = () => {
            const tx = open.result.transaction('settings', 'readwrite');
            tx.objectStore('settings').put({key: 'budgetBytes', value: bytes});
            tx.oncomplete = () => resolve();
          };
        })""",
        first["bytes"] + 1000,
    )
    page.goto(live_server.url(f"/viewer/studies/{studies.views}"))
    wait_first_image(page)
    page.wait_for_function(complete, timeout=60_000)

    stored = page.evaluate(STORED_ON_DEVICE)
    assert [row["studyUID"] for row in stored["rows"]] == [studies.views]
    assert not [url for url in stored["urls"] if studies.small in url]
    assert [url for url in stored["urls"] if studies.views in url]
