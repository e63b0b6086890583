"""A real browser (headless Chromium driven by Playwright) uses the demo app.

Logs in, reloads, sees the session survive and the cached page served from
cache, logs out, and checks that the session cookie is gone; clicks the
showcase's buttons, watches the live chart update, and saves a screenshot.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def test_login_session_cache_logout(browser: Any, demo_url: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)

    page.goto(demo_url + "/")
    assert page.text_content("#visits") == "1"
    page.fill("#name", "Ada")
    page.click("#login")
    page.wait_for_selector("#user")
    assert page.text_content("#user") == "Ada"

    page.reload()
    assert page.text_content("#user") == "Ada"
    visits = int(page.text_content("#visits") or "0")
    assert visits >= 3  # index after login redirect, then the reload

    page.goto(demo_url + "/cached")
    first = page.text_content("#rendered")
    # Navigate rather than reload: a reload sends "Cache-Control: max-age=0",
    # which the page cache honours as a request to revalidate.
    page.click("nav a[href='/']")
    page.click("nav a[href='/cached']")
    assert page.text_content("#rendered") == first
    assert "Served from cache" in (page.text_content("#cache-status") or "")

    page.goto(demo_url + "/")
    assert any(cookie["name"] == "session" for cookie in context.cookies())
    page.click("#logout")
    page.wait_for_selector("#logged-out")
    assert not any(cookie["name"] == "session" for cookie in context.cookies())
    context.close()


def test_showcase_buttons_and_live_chart(browser: Any, demo_url: str, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(15_000)
    failed: list[str] = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(demo_url + "/")
    assert page.title() == "cachekit demo"
    page.fill("#name", "Grace")
    page.click("#login")
    page.wait_for_selector("#cycled")
    assert page.text_content("#user") == "Grace"
    page.wait_for_function("Number(document.querySelector('#chart').dataset.samples) >= 2")

    page.click("#fetch-cached")
    page.wait_for_selector("#cached-result:has-text('rendered at')")
    assert (page.text_content("#cached-result") or "").split()[0] in ("HIT", "MISS")

    page.click("#traffic")
    page.wait_for_selector("#traffic-result:has-text('40 requests')")
    # The chart's counters follow the traffic within a poll or two.
    page.wait_for_function("Number(document.querySelector('#chart').dataset.hits) >= 30")

    page.fill("#stampede-n", "15")
    page.click("#stampede")
    page.wait_for_selector("#stampede-result[data-renders]")
    assert page.get_attribute("#stampede-result", "data-requests") == "15"
    assert page.get_attribute("#stampede-result", "data-renders") == "1"
    assert "15 requests → 1 render" in (page.text_content("#stampede-result") or "")

    page.click("#purge")
    page.wait_for_selector("#purge-result:has-text('next fetch')")
    assert "MISS" in (page.text_content("#purge-result") or "")
    page.click("#purge-tag")
    page.wait_for_selector("#purge-result:has-text('tag')")
    assert "MISS" in (page.text_content("#purge-result") or "")

    page.click("#swr")
    page.wait_for_selector("#swr-result[data-stale]", timeout=20_000)
    assert int(page.get_attribute("#swr-result", "data-stale") or "0") >= 1

    # The chart keeps moving: two more samples after the last button, so it shows them all.
    seen = int(page.get_attribute("#chart", "data-samples") or "0")
    page.wait_for_function(f"Number(document.querySelector('#chart').dataset.samples) >= {seen + 2}")
    stale = page.get_attribute("#swr-result", "data-stale")
    assert f"{stale} stale" in (page.text_content("#totals") or "")  # the totals count what SWR served
    shot = tmp_path / "demo.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert failed == []  # no 404 (favicon included) and no error on any request
    assert errors == []
    context.close()
