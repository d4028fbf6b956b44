"""The web UI in a real headless Chromium (Playwright) against a live server.

Search by position, open an image (it loads, zoom re-renders it, the catalogue overlay and
pixel read-out work), open a light curve (one SVG marker per epoch of the API), click the
periodogram and check the curve is folded.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

CHROMIUM = Path("/usr/bin/chromium")

# CI (.ci/run) installs Debian's chromium and sets ZSDS_REQUIRE_BROWSER: there a missing
# browser fails the tests instead of skipping them.
pytestmark = pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get(
    "ZSDS_REQUIRE_BROWSER"), reason="no /usr/bin/chromium")


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def engine(live_server, archive_home):
    from zsds.db import connect

    eng = connect(archive_home.db_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors: {errors}"


def _sql(engine, q: str) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(text(q), conn)


def test_search_and_image_viewer(live_server, engine, page, tmp_path) -> None:
    sci = _sql(engine, "SELECT relpath, ra, dec, rcid FROM archive_images WHERE tbl = 'sci' "
                       "ORDER BY obsjd DESC LIMIT 1").iloc[0]
    want = _get_json(f"{live_server}/ui/api/images?pos={sci.ra}+{sci.dec}&size=0&tbl=sci")["n"]
    assert want > 1
    page.goto(live_server + "/")
    page.fill("#pos", f"{sci.ra:.6f} {sci.dec:+.6f}")
    page.fill("#size", "0")
    page.click("#search-btn")
    page.wait_for_selector("table#images tbody tr")
    page.screenshot(path=str(tmp_path / "search.png"))
    rows = page.locator("table#images tbody tr")
    assert rows.count() == want
    # Sortable columns: a click on "date" sorts ascending, a second click descending.
    dates = 'Array.from(document.querySelectorAll("#images tbody tr td:nth-child(2)"))' \
            '.map(td => parseFloat(td.dataset.v))'
    page.click("table#images th:nth-child(2)")
    asc = page.evaluate(dates)
    page.click("table#images th:nth-child(2)")
    desc = page.evaluate(dates)
    assert asc == sorted(asc) and desc == sorted(asc, reverse=True) and asc != desc

    # Open the first image of the table.
    page.click("table#images tbody tr:first-child a.view")
    page.wait_for_url("**/ui/image?**")
    img_ready = "() => { const i = document.getElementById('image');" \
                " return i.complete && i.naturalWidth > 0 && i.dataset.src; }"
    page.wait_for_function(img_ready)
    first = page.evaluate("() => [document.getElementById('image').dataset.src,"
                          " document.getElementById('image').naturalWidth,"
                          " document.getElementById('image').dataset.zoom]")
    assert first[1] > 0
    page.click("#zoom-in")
    page.wait_for_function(
        "(old) => { const i = document.getElementById('image');"
        " return i.dataset.src !== old && i.complete && i.naturalWidth > 0; }", arg=first[0])
    second = page.evaluate("() => [document.getElementById('image').dataset.src,"
                           " document.getElementById('image').naturalWidth,"
                           " document.getElementById('image').dataset.zoom]")
    assert float(second[2]) == pytest.approx(float(first[2]) * 1.25, rel=1e-3)
    assert "scale=" + second[2] in second[0]
    # Mouse-wheel zoom re-renders too.
    box = page.locator("#viewport").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -200)
    page.wait_for_function(
        "(old) => document.getElementById('image').dataset.src !== old", arg=second[0])
    # Catalogue overlay: circles appear, as many as the catalogue's sources in view.
    page.check("#show-catalog")
    page.wait_for_selector("#overlay circle.src")
    assert page.locator("#overlay circle.src").count() > 0
    # Pixel read-out under the mouse: RA/Dec from the WCS and a value.
    page.mouse.move(box["x"] + box["width"] / 2 + 3, box["y"] + box["height"] / 2 + 3)
    page.wait_for_function("() => document.getElementById('ro-ra').textContent.includes('°')")
    assert page.inner_text("#ro-val") != "–"
    page.screenshot(path=str(tmp_path / "image.png"))


def test_lightcurve_viewer(live_server, engine, page, tmp_path) -> None:
    oid = int(_sql(engine, """SELECT o.oid FROM lc_objects o JOIN matchfiles m
                              ON m.field = o.field AND m.rcid = o.rcid AND m.fid = o.fid
                              WHERE o.ngoodobs >= 10 AND o.nobs < m.nexposures
                              ORDER BY o.nobs DESC, o.oid LIMIT 1""").oid[0])
    api = _get_json(f"{live_server}/ui/api/lightcurve?oid={oid}")
    n_pts = sum(len(c["mjd"]) for c in api["curves"])
    n_lim = sum(len(c["limits"]["mjd"]) for c in api["curves"])
    assert n_pts > 0 and n_lim > 0

    # Reach it from the search page, as a user would.
    page.goto(f"{live_server}/ui/lightcurves?pos={api['object']['ra']}+"
              f"{api['object']['dec']}&radius=2")
    page.click(f"a.lc[href='/ui/lightcurve?oid={oid}']")
    page.wait_for_url(f"**/ui/lightcurve?oid={oid}")
    page.wait_for_function(f"() => document.querySelectorAll('#lc-plot circle.pt').length "
                           f"== {n_pts}")
    assert page.locator("#lc-plot circle.pt").count() == n_pts
    assert page.locator("#lc-plot path.ul").count() == n_lim
    assert page.locator("#lc-plot line.err").count() == n_pts
    assert page.get_attribute("#lc-plot", "data-mode") == "time"
    cx_time = page.evaluate("() => Array.from(document.querySelectorAll('#lc-plot circle.pt'))"
                            ".map(c => +c.getAttribute('cx'))")

    # Periodogram drawn; click at its best peak.
    page.wait_for_selector("#periodogram path.pgram")
    pgram = _get_json(f"{live_server}/ui/api/periodogram?oid={oid}")
    f = pgram["frequency"]
    frac = (pgram["best_frequency"] - f[0]) / (f[-1] - f[0])
    # The plot frame spans x = 62 .. width - 16 of the SVG's user units (== CSS pixels).
    bb = page.locator("#periodogram").bounding_box()
    x = bb["x"] + 62 + frac * (bb["width"] - 62 - 16)
    page.mouse.click(x, bb["y"] + bb["height"] / 2)
    page.wait_for_function("() => document.getElementById('lc-plot').dataset.mode === 'phase'")
    period = float(page.input_value("#period"))
    assert period == pytest.approx(pgram["best_period"], rel=0.02)
    # Folded: every point drawn at two phases (0..2), x positions changed.
    assert page.locator("#lc-plot circle.pt").count() == 2 * n_pts
    assert page.locator("#periodogram line.pmark").count() == 1
    cx_phase = page.evaluate("() => Array.from(document.querySelectorAll('#lc-plot circle.pt'))"
                             ".map(c => +c.getAttribute('cx'))")
    assert sorted(cx_phase[::2]) != sorted(cx_time)
    assert "phase" in page.text_content("#lc-plot")
    page.screenshot(path=str(tmp_path / "lightcurve.png"), full_page=True)
    assert (tmp_path / "lightcurve.png").stat().st_size > 10_000
    # Back to time.
    page.click("#mode-time")
    assert page.get_attribute("#lc-plot", "data-mode") == "time"
    assert page.locator("#lc-plot circle.pt").count() == n_pts
