"""The running app in a real headless Chromium (Debian's, driven by playwright).

The app is started with ``streamlit run`` on a free localhost port for the test
session. Without ``/usr/bin/chromium`` the tests skip with that reason, except
in CI (``LIVERSEG_REQUIRE_E2E=1``), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.e2e.app_server import CHROMIUM, CHROMIUM_FLAGS, App
from tests.e2e.segment_page import APP_ENV


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not shutil.which(CHROMIUM):
        if os.environ.get("LIVERSEG_REQUIRE_E2E"):
            pytest.fail(f"{CHROMIUM} is missing but LIVERSEG_REQUIRE_E2E is set (CI installs Debian's chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium) to run the e2e tests")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def app() -> Iterator[App]:
    server = App()
    yield server
    server.stop()


@pytest.fixture
def page(browser, app):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(app.url)
    yield page
    context.close()


@pytest.fixture(scope="module")
def shipped_app() -> Iterator[App]:
    """The app as shipped (the model in trained/, the sample in the cache), without a file watcher, for one test module."""
    server = App(env=APP_ENV)
    yield server
    server.stop()
