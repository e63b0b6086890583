"""A real browser (headless Chromium driven by Playwright) uses the demo app.

Logs in, reloads, sees the session survive and the cached page served from
cache, logs out, and checks that the session cookie is gone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
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
