"""`essence ui` in a real browser: Debian's chromium driven by Playwright (no browser download).

One user's session on the shipped toy models: load the page, upload a target, find a direction, download
it, apply it, move the strength slider and see the results change, download the grid, images and
direction; upload photos as the sources, see each beside its reconstruction, move the slider and see the
results change; invert a photo in the Invert tab and download its latents; list and compare the runs.
Every request the page makes is observed, and any that would leave 127.0.0.1 is blocked and fails the test. Screenshots go to $ESSENCE_UI_SCREENSHOTS (default: the test's
temporary folder); $ESSENCE_UI_TIMEOUT_MS shortens each wait (default 120 s) when debugging. Skipped when
chromium or playwright is absent (.ci/run installs chromium).
"""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")

import essence  # noqa: E402
from ui_support import TARGET, is_loopback, loopback_guard, serve, sprite_photos, toy_run  # noqa: E402

CHROMIUM = Path(os.environ.get("ESSENCE_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEPS = 20
TIMEOUT_MS = 120_000

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture
def screenshots(tmp_path):
    folder = Path(os.environ.get("ESSENCE_UI_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page(tmp_path):
    """A fresh chromium profile; every request is recorded, and any leaving 127.0.0.1 blocked."""
    seen: list[str] = []
    blocked: list[str] = []

    def local(url: str) -> bool:
        parsed = urlparse(url)
        return parsed.scheme in ("data", "blob", "about") or is_loopback(parsed.hostname or "")

    def route(r) -> None:
        seen.append(r.request.url)
        if local(r.request.url):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            accept_downloads=True,
            viewport={"width": 1280, "height": 1000},
        )
        context.route("**/*", route)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("websocket", lambda ws: (seen.append(ws.url), None if local(ws.url) else blocked.append(ws.url)))
        page.set_default_timeout(float(os.environ.get("ESSENCE_UI_TIMEOUT_MS", TIMEOUT_MS)))
        try:
            yield page, seen
        finally:
            context.close()
    assert seen, "the request observer saw nothing"
    assert blocked == [], f"the page asked for things outside 127.0.0.1: {blocked}"
    assert errors == [], f"errors in the page: {errors}"


def _download(page, selector: str, folder: Path) -> Path:
    with page.expect_download() as info:
        page.click(selector)
    download = info.value
    path = folder / download.suggested_filename
    download.save_as(path)
    return path


def _image_bytes(page, selector: str) -> bytes:
    src = page.locator(selector).first.get_attribute("src")
    return page.request.get(src).body()


def test_a_session_in_chromium(tmp_path, browser_page, screenshots, monkeypatch):
    page, seen = browser_page
    monkeypatch.chdir(tmp_path)  # as a user runs it: `essence ui --runs runs` in a folder of their own
    runs = Path("runs")
    toy_run(runs / "earlier", seed=0)  # something to compare with
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with loopback_guard() as refused, serve(runs, tmp_path / "scratch") as (url, state):
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("#find")
        print(f"page ready in {time.perf_counter() - started:.1f} s")

        # Find a direction: upload a target, a short optimisation on the toy models, live view, download.
        page.set_input_files("#target input[type=file]", str(TARGET))
        page.wait_for_selector("#target img")
        page.locator("#steps input").fill(str(STEPS))
        page.click("#find")
        page.wait_for_selector("#find-status:has-text('running')")
        page.wait_for_selector("#find-status:has-text('completed')")
        assert f"step {STEPS}/{STEPS}" in page.inner_text("#find-status")
        assert page.locator("#loss img").count() == 1 and page.locator("#preview img").count() == 1
        page.screenshot(path=str(screenshots / "ui-find.png"), full_page=True)
        found = essence.load_direction(_download(page, "#find-download", downloads))
        (run,) = [p for p in runs.iterdir() if p.name.startswith("in-domain-")]
        assert essence.load_direction(run / "direction.safetensors").b.equal(found.b)

        # Apply: the new run is picked; the grid, then the slider re-renders the results.
        page.get_by_role("tab", name="Apply").click()
        sync_api.expect(page.locator("#apply-run input")).to_have_value(run.name, timeout=30_000)
        page.click("#apply")
        page.wait_for_selector("#grid img")
        page.wait_for_function("document.querySelectorAll('#results img').length == 6")
        before = _image_bytes(page, "#results img")
        slider = page.locator("#strength input[type=range]")
        box = slider.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2)  # towards -0.4
        page.wait_for_function(
            "src => document.querySelector('#results img').getAttribute('src') != src",
            arg=page.locator("#results img").first.get_attribute("src"),
        )
        after = _image_bytes(page, "#results img")
        assert after != before
        assert float(page.locator("#strength input[type=number]").input_value()) < 0
        page.screenshot(path=str(screenshots / "ui-apply.png"), full_page=True)
        grid = _download(page, "#grid-download", downloads)
        images = _download(page, "#images-download", downloads)
        direction = _download(page, "#direction-download", downloads)
        assert grid.suffix == ".png" and essence.load_direction(direction).b.equal(found.b)
        with zipfile.ZipFile(images) as zf:
            assert len(zf.namelist()) == 6 * 4  # 6 sources x the default 4 strengths

        # Photos as the sources: aligned and inverted, each shown beside G(w); the slider moves them.
        photos = sprite_photos(tmp_path / "photos")
        photos_started = time.perf_counter()
        page.locator("#source-kind").get_by_text("photos", exact=True).click()
        page.set_input_files("#source-photos input[type=file]", photos)
        uploaded = "n => document.querySelectorAll(`#ID a[href*='gradio_api/file=']`).length == n"  # on the server
        page.wait_for_function(uploaded.replace("ID", "source-photos"), arg=2)
        page.click("#apply")
        page.wait_for_function("document.querySelectorAll('#photo-pairs img').length == 4")
        page.wait_for_function("document.querySelectorAll('#results img').length == 2")
        sync_api.expect(page.locator("#photo-pairs")).to_contain_text("cat.png: G(w)")
        before = _image_bytes(page, "#results img")
        box = slider.bounding_box()  # the photo fields moved it
        page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)  # towards 1.7
        page.wait_for_function(
            "src => document.querySelector('#results img').getAttribute('src') != src",
            arg=page.locator("#results img").first.get_attribute("src"),
        )
        assert _image_bytes(page, "#results img") != before
        assert float(page.locator("#strength input[type=number]").input_value()) > 1
        assert state.inversions.inverted == 2
        page.screenshot(path=str(screenshots / "ui-photos.png"), full_page=True)

        # Invert a photo: the aligned crop beside G(w), and its latents as `essence invert` writes them.
        page.get_by_role("tab", name="Invert a photo").click()
        page.set_input_files("#invert-photos input[type=file]", photos[:1])
        page.wait_for_function(uploaded.replace("ID", "invert-photos"), arg=1)
        page.click("#invert")
        page.wait_for_selector("#invert-status:has-text('1 image(s)')")
        page.wait_for_function("document.querySelectorAll('#invert-pairs img').length == 2")
        page.wait_for_selector("#invert-sheet img")
        latents = essence.load_latents(_download(page, "#latents-download", downloads))
        assert latents.shape == (1, 8, 128)
        assert state.inversions.inverted == 2  # the photo inverted as a source is not inverted again
        page.screenshot(path=str(screenshots / "ui-invert.png"), full_page=True)
        print(f"photo sources and the Invert tab in {time.perf_counter() - photos_started:.1f} s")

        # Runs: both listed; compare them.
        page.get_by_role("tab", name="Runs").click()
        page.click("#refresh")
        sync_api.expect(page.locator("#runs-table")).to_contain_text(run.name)
        sync_api.expect(page.locator("#runs-table")).to_contain_text("earlier")
        page.locator("#compare-pick input").click()
        page.get_by_role("option", name="earlier").click()
        page.locator("#compare-pick input").click()
        page.get_by_role("option", name=run.name).click()
        page.click("#compare")
        page.wait_for_selector("#figure img")
        page.screenshot(path=str(screenshots / "ui-runs.png"), full_page=True)
    assert refused == []
    assert any(urlparse(u).path.startswith("/gradio_api") for u in seen)
