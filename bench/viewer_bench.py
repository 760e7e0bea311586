"""Chart click to first full-resolution image, on a throttled mobile link.

Starts ``fetlock serve`` with the demo practice in a temporary directory,
stores a 7 MB radiograph (``deid-data``'s cat radiograph cut to 1870 x 1870
12-bit pixels, 6.99 MB of pixel data) for the demo horse Blaze, once as JPEG
2000 lossless and once uncompressed, and drives Debian's Chromium:

1. log in, open Blaze's chart and wait until the service worker controls the
   page and has stored the application shell (what every visit to Fetlock
   does before a study is clicked);
2. throttle the service worker to 20 Mbit/s down, 5 Mbit/s up, 40 ms round
   trip (CDP ``Network.emulateNetworkConditions``). Once it controls the page,
   the worker makes every network request on the measured path (the viewer
   page, DICOMweb); throttling the page as well would count each response
   twice, since Chromium also throttles what the worker hands the page (a 7 MB
   frame took 5.7 s instead of 2.8 s);
3. click the study on the chart and time until the viewer has rendered the
   image at full resolution (``fetlockViewer.state().firstImageAt``): first
   view;
4. wait until the study is stored on the device, go back to the chart, click
   again: from cache.

Bytes are the encoded (on the wire) sizes of the responses the service worker
fetched from the network between the click and the first image. Run:

    .venv/bin/python bench/viewer_bench.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402
from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402
from pydicom.uid import JPEG2000Lossless, generate_uid  # noqa: E402
from tests.viewer.studydata import (  # noqa: E402
    StudyStore,
    cat_radiograph,
    radiograph_copy,
    today_minus,
)

from fetlock.dicomweb.wado import jpeg_ls_frame_key  # noqa: E402
from fetlock.imaging.ingest import instance_blob_key  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]
PASSWORD = "fetlock-bench-password"
SIDE = 1870  # 1870 x 1870 x 2 bytes = 6.99 MB of pixels
MOBILE = {
    "offline": False,
    "latency": 40,
    "downloadThroughput": 20_000_000 / 8,
    "uploadThroughput": 5_000_000 / 8,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fetlock_server(data_dir: Path, render: str) -> Iterator[tuple[str, StudyStore]]:
    port = free_port()
    env = {
        **os.environ,
        "FETLOCK_VIEWER_RENDER_MODE": render,
        "FETLOCK_DATA_DIR": str(data_dir),
        "FETLOCK_SECRET_KEY": "bench-secret-key-not-for-production",
        "FETLOCK_DICOM_ENABLED": "false",
    }
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [bin_dir / "fetlock", "demo", "--password", PASSWORD],
        env=env,
        check=True,
        capture_output=True,
    )
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(
        [
            bin_dir / "fetlock",
            "serve",
            "--no-dicom",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    store = StudyStore(
        f"sqlite:///{(data_dir / 'fetlock.sqlite3').resolve()}", data_dir
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    break
            except OSError as exc:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(
                        f"fetlock serve did not start; see {log.name}"
                    ) from exc
                time.sleep(0.3)
        yield base, store
    finally:
        store.close()
        process.terminate()
        process.wait(timeout=20)
        log.close()


def make_radiographs(store: StudyStore, folder: Path) -> dict[str, tuple[str, int]]:
    """Store the 7 MB radiograph twice; return {form: (study UID, file size)}."""
    horse = store.horse("Blaze")
    studies = {}
    for form in ("JPEG 2000 lossless", "uncompressed"):
        study_uid = generate_uid()
        path = radiograph_copy(
            cat_radiograph(),
            folder / f"{form.split()[0]}.dcm",
            horse,
            study_uid=study_uid,
            series_uid=generate_uid(),
            study_date=today_minus(1 if form == "uncompressed" else 2),
            description=f"Left fore foot ({form})",
            body_part="HOOF",
            view="LF-LM",
            instance_number=1,
            crop=(SIDE, SIDE),
        )
        if form != "uncompressed":
            ds = pydicom.dcmread(path)
            ds.compress(JPEG2000Lossless)
            ds.save_as(path, enforce_file_format=True)
        store.store([path], horse)
        studies[form] = (study_uid, path.stat().st_size)
        wait_for_jpeg_ls_copy(store, pydicom.dcmread(path, stop_before_pixels=True))
    return studies


def wait_for_jpeg_ls_copy(store: StudyStore, ds: pydicom.Dataset) -> None:
    """Wait for the JPEG-LS copy the server's job worker makes once the study settles.

    A practice views a study minutes after it arrives, by when the copy
    exists; without it the first view also waits for the encoding.
    """
    key = jpeg_ls_frame_key(
        instance_blob_key(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID),
        1,
    )
    started = time.monotonic()
    while not store.blobs.exists(key):
        if time.monotonic() - started > 60:
            sys.exit(f"the server made no JPEG-LS copy {key} within 60 s")
        time.sleep(0.1)
    print(f"JPEG-LS copy kept {time.monotonic() - started:.1f} s after storing")


class Throttle:
    """Mobile network conditions on every service worker, and its byte count."""

    def __init__(self, browser: Browser) -> None:
        self.browser_session = browser.new_browser_cdp_session()
        self.bytes: dict[str, int] = {}
        self.urls: dict[str, str] = {}
        self.counting = False
        self.browser_session.on("Target.receivedMessageFromTarget", self._message)
        self._next_id = 1_000_000

    def _message(self, params: dict[str, Any]) -> None:
        message = json.loads(params["message"])
        method = message.get("method")
        event = message.get("params", {})
        if method == "Network.responseReceived":
            self.urls[event["requestId"]] = event["response"]["url"]
        elif method == "Network.loadingFinished" and self.counting:
            url = self.urls.get(event["requestId"], "?")
            self.bytes[url] = self.bytes.get(url, 0) + int(event["encodedDataLength"])

    def _send(self, session_id: str, method: str, params: dict[str, Any]) -> None:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        self.browser_session.send(
            "Target.sendMessageToTarget",
            {"sessionId": session_id, "message": json.dumps(message)},
        )

    def apply(self) -> None:
        targets = self.browser_session.send("Target.getTargets")["targetInfos"]
        workers = [t for t in targets if t["type"] == "service_worker"]
        if not workers:
            raise RuntimeError("no service worker to throttle")
        for target in workers:
            # NOTE: the non-flattened CDP session is the only one Playwright's
            # browser session can address; Chromium still supports it.
            session_id = self.browser_session.send(
                "Target.attachToTarget",
                {"targetId": target["targetId"], "flatten": False},
            )["sessionId"]
            self._send(session_id, "Network.enable", {})
            self._send(session_id, "Network.emulateNetworkConditions", MOBILE)


def click_and_time(
    page: Page, base: str, horse_id: int, uid: str
) -> tuple[int, dict[str, int]]:
    page.goto(f"{base}/horses/{horse_id}")
    selector = f"#studies-section a[href='/viewer/studies/{uid}']"
    page.locator(selector).first.wait_for(timeout=30_000)
    clicked_at: int = page.evaluate(
        "s => { const t = Date.now(); document.querySelector(s).click(); return t; }",
        selector,
    )
    page.wait_for_function(
        "window.fetlockViewer && (window.fetlockViewer.state().firstImageAt"
        " || window.fetlockViewer.state().error)",
        timeout=120_000,
    )
    state = page.evaluate("window.fetlockViewer.state()")
    # When the frame's bytes had arrived, from the browser's resource timing.
    frame_end = page.evaluate(
        "Math.round(Math.max(0, ...performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/frames/')).map(e => e.responseEnd)))"
    )
    state["timings"]["frameReceived"] = frame_end
    if state["error"]:
        raise RuntimeError(state["error"])
    pane = state["panes"][0]
    if (pane["rows"], pane["columns"]) != (SIDE, SIDE) or pane["imageQuality"] != 8:
        raise RuntimeError(f"not the full-resolution image: {pane}")
    return int(state["firstImageAt"]) - clicked_at, state["timings"]


def measure(browser: Browser, base: str, horse_id: int, uid: str) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("#username", "vet")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{base}/horses/{horse_id}")
    page.wait_for_function(
        "navigator.serviceWorker.controller !== null", timeout=60_000
    )
    page.wait_for_function(
        "caches.keys().then(k => k.some(n => n.startsWith('fetlock-shell-')))"
    )
    throttle = Throttle(browser)
    throttle.apply()

    throttle.counting = True
    first, first_steps = click_and_time(page, base, horse_id, uid)
    throttle.counting = False
    first_bytes = dict(throttle.bytes)
    page.wait_for_function(
        "window.fetlockViewer.state().offline.complete === true", timeout=180_000
    )
    throttle.bytes.clear()
    throttle.counting = True
    cached, cached_steps = click_and_time(page, base, horse_id, uid)
    throttle.counting = False
    cached_bytes = dict(throttle.bytes)
    context.close()
    return {
        "first_ms": first,
        "first_bytes": sum(first_bytes.values()),
        "first_frame_bytes": sum(v for k, v in first_bytes.items() if "/frames/" in k),
        "cached_ms": cached,
        "cached_bytes": sum(cached_bytes.values()),
        "first_steps": first_steps,
        "cached_steps": cached_steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per stored form")
    parser.add_argument(
        "--render",
        choices=("auto", "gpu", "cpu"),
        default="auto",
        help="Cornerstone rendering (FETLOCK_VIEWER_RENDER_MODE); headless "
        "Chromium has only a software GPU",
    )
    parser.add_argument(
        "--steps",
        action="store_true",
        help="also print when each step of opening the viewer ended (ms after "
        "the viewer page started loading)",
    )
    args = parser.parse_args()
    if not (REPO / "src/fetlock/web/static/viewer/.vite/manifest.json").exists():
        sys.exit("the viewer is not built: run `make install` (needs Node.js and npm)")

    with tempfile.TemporaryDirectory(prefix="fetlock-viewer-bench-") as tmp:
        folder = Path(tmp)
        with fetlock_server(folder / "data", args.render) as (base, store):
            studies = make_radiographs(store, folder)
            horse_id = store.horse("Blaze").id
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                print(
                    f"{SIDE} x {SIDE} x 12-bit radiograph, 6.99 MB of pixels; "
                    "20 Mbit/s down, 5 Mbit/s up, 40 ms RTT; "
                    f"render={args.render}; median of {args.runs} runs"
                )
                print(
                    f"{'stored form':<20} {'file MB':>8} {'first view ms':>14} "
                    f"{'MB moved':>9} {'frame MB':>9} {'from cache ms':>14} "
                    f"{'MB moved':>9}"
                )
                for form, (uid, size) in studies.items():
                    runs = [
                        measure(browser, base, horse_id, uid) for _ in range(args.runs)
                    ]

                    def median(key: str, runs: list[dict[str, Any]] = runs) -> float:
                        return statistics.median(r[key] for r in runs)

                    print(
                        f"{form:<20} {size / 1e6:>8.2f} {median('first_ms'):>14.0f} "
                        f"{median('first_bytes') / 1e6:>9.2f} "
                        f"{median('first_frame_bytes') / 1e6:>9.2f} "
                        f"{median('cached_ms'):>14.0f} "
                        f"{median('cached_bytes') / 1e6:>9.2f}"
                    )
                    if args.steps:
                        for run in runs:
                            print(f"  first view {run['first_steps']}")
                            print(f"  from cache {run['cached_steps']}")
                browser.close()


if __name__ == "__main__":
    main()
