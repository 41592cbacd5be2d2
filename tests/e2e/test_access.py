"""Access control in a real browser: nothing before login, wrong password refused, the right one lets in."""

from __future__ import annotations

import pytest

from tests.e2e.app_server import App, screenshot
from tests.helpers.users import password, write_users

pytestmark = pytest.mark.e2e

PASSWORD = "lab-server-secret"
PAGE_HEADINGS = ("Segment", "Train", "Models")
OPEN_NOTICE = "open to anyone who can reach this address"


@pytest.fixture(scope="module")
def private_app():
    server = App(env={"LIVERSEG_PASSWORD": PASSWORD})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def users_app(tmp_path_factory):
    users = write_users(tmp_path_factory.mktemp("auth") / "users.toml", "alice")
    server = App(env={"LIVERSEG_USERS_FILE": str(users)})
    yield server
    server.stop()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(120_000)  # generous: CI machines may be loaded
    yield context
    context.close()


def assert_login_only(page) -> None:
    """The login form is there and no page content, navigation or open-access notice is."""
    page.get_by_role("button", name="Log in").wait_for()
    page.wait_for_load_state("networkidle")
    for heading in PAGE_HEADINGS:
        assert page.get_by_role("heading", name=heading).count() == 0
    assert page.get_by_test_id("stSidebarNav").count() == 0
    assert OPEN_NOTICE not in page.inner_text("body")


def log_in(page, password: str, user: str | None = None) -> None:
    if user is not None:
        page.get_by_label("User name").fill(user)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def signed_in(browser, app: App, user: str):
    """A new browser (context) signed in as ``user`` (password ``tests.helpers.users.password``) on the Segment page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(120_000)
    page = context.new_page()
    page.goto(app.url)
    log_in(page, password(user), user=user)
    page.get_by_role("heading", name="Segment").wait_for(timeout=300_000)
    return context, page


@pytest.mark.parametrize("path", ["", "/segment", "/train", "/models"])
def test_no_page_shows_anything_before_login(context, private_app, path):
    page = context.new_page()
    page.goto(private_app.url + path)
    assert_login_only(page)
    if not path:
        screenshot(page, "access-01-login")


@pytest.mark.parametrize(("path", "heading"), [("/segment", "Segment"), ("/train", "Train"), ("/models", "Models")])
def test_a_page_opened_first_on_a_fresh_server_asks_for_login_then_opens(context, path, heading):
    """The server's very first run is the one Streamlit may serve from pages/ without app.py: that
    visitor gets the login form too, and after it the page they asked for."""
    server = App(env={"LIVERSEG_PASSWORD": PASSWORD})
    try:
        page = context.new_page()
        page.goto(server.url + path)
        assert_login_only(page)
        log_in(page, PASSWORD)
        page.get_by_role("heading", name=heading).wait_for()
        assert "next=" not in page.url
    finally:
        server.stop()


def test_wrong_password_is_refused_and_the_right_one_lets_in(context, private_app):
    page = context.new_page()
    page.goto(private_app.url)
    log_in(page, "not-the-password")
    page.get_by_text("Wrong password.").wait_for()
    assert_login_only(page)
    screenshot(page, "access-02-wrong-password")

    log_in(page, PASSWORD)
    page.get_by_role("heading", name="Segment").wait_for()
    sidebar = page.get_by_test_id("stSidebar")
    assert "Signed in as" in sidebar.inner_text()
    assert OPEN_NOTICE not in page.inner_text("body")
    screenshot(page, "access-03-logged-in")
    sidebar.get_by_role("link", name="Models").click()
    page.get_by_role("heading", name="Models").wait_for()

    page.get_by_role("button", name="Log out").click()
    assert_login_only(page)


def test_a_bookmarked_page_opens_after_signing_in(context, private_app):
    page = context.new_page()
    page.goto(private_app.url + "/train")
    assert_login_only(page)
    assert "Page not found" not in page.inner_text("body")
    log_in(page, PASSWORD)
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    assert page.url.endswith("/train")


def test_a_new_tab_must_log_in_again(context, private_app):
    page = context.new_page()
    page.goto(private_app.url)
    log_in(page, PASSWORD)
    page.get_by_role("heading", name="Segment").wait_for()
    other = context.new_page()
    other.goto(private_app.url + "/train")
    assert_login_only(other)


def test_named_users_log_in_with_their_own_password(context, users_app):
    page = context.new_page()
    page.goto(users_app.url)
    assert_login_only(page)
    log_in(page, "alice-pass", user="mallory")
    page.get_by_text("Wrong user name or password.").wait_for()
    log_in(page, "alice-pass", user="alice")
    page.get_by_role("heading", name="Segment").wait_for()
    assert "alice" in page.get_by_test_id("stSidebar").inner_text()


def test_open_app_says_so_on_every_page(page):
    page.get_by_role("heading", name="Segment").wait_for()
    for heading in PAGE_HEADINGS:
        page.get_by_test_id("stSidebar").get_by_role("link", name=heading).click()
        page.get_by_role("heading", name=heading).wait_for()
        assert OPEN_NOTICE in page.inner_text("body")
    screenshot(page, "access-04-open-notice")
