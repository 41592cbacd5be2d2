"""A reload within the session keeps the signed-in user and their last result, for that user only (issue 21).

Named users alice and bob; alice segments the sample with the fast cascade, sets the viewer, reloads, and is
still signed in with the result on screen and the viewer as she left it; bob, in another browser, never sees
it; a token works once; after signing out a reload asks for the password again.
"""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import expect

from core import config
from tests.e2e import segment_page
from tests.e2e.app_server import App, screenshot
from tests.e2e.test_access import assert_login_only, log_in, signed_in
from tests.e2e.test_train_models import expand
from tests.helpers.users import password, write_users
from widgets.browser_token import COOKIE

pytestmark = pytest.mark.e2e

FAST_MODEL = "liverseg-cascade-v1"


@pytest.fixture(scope="module")
def users_app(tmp_path_factory):
    """Named users alice and bob; the fast cascade is the one model (a segmentation in seconds, not a minute)."""
    root = tmp_path_factory.mktemp("reload")
    shutil.copytree(config.ROOT / "trained" / FAST_MODEL, root / "trained" / FAST_MODEL)
    users = write_users(root / "users.toml", "alice", "bob")
    server = App(env={**segment_page.APP_ENV, "LIVERSEG_USERS_FILE": str(users), "LIVERSEG_TRAINED_DIR": str(root / "trained")})
    yield server
    server.stop()


def assert_signed_in_as(page, user: str) -> None:
    expect(page.get_by_test_id("stSidebar")).to_contain_text(f"Signed in as {user}")


def painted(page) -> tuple[str, str]:
    """The plane and slice the viewer has painted."""
    segment_page._wait_for_viewer(page)
    canvas = page.locator(segment_page.SLICE_CANVAS)
    return canvas.get_attribute("data-plane"), canvas.get_attribute("data-slice")


def test_a_reload_keeps_the_user_and_their_result_for_them_only(browser, users_app):
    context, page = signed_in(browser, users_app, "alice")
    try:
        segment_page.choose_sample(page)
        segment_page.segment(page)
        lesions = page.get_by_test_id("stMetric").filter(has_text="Lesions found").inner_text()
        segment_page.choose_plane(page, "coronal")  # what the user set in the viewer
        segment_page.move_slice(page)
        segment_page.choose_window(page, "Liver")
        shown = painted(page)
        assert not [c for c in context.cookies() if c["name"] == COOKIE]  # no token in the cookie jar while the tab is open

        page.reload()
        assert_signed_in_as(page, "alice")
        page.get_by_text("Tumour burden").wait_for()
        assert page.get_by_test_id("stMetric").filter(has_text="Lesions found").inner_text() == lesions
        assert painted(page) == shown  # the viewer as the user left it, painted from the kept packs
        expect(page.locator(".lsv-window")).to_have_value("Liver")
        expect(page.get_by_role("button", name="Find the liver and lesions")).to_have_count(0)  # no second run
        expand(page, "Details")
        page.get_by_text(f"with model {FAST_MODEL}").wait_for()
        assert not [c for c in context.cookies() if c["name"] == COOKIE]  # the token it came with is deleted, used once
        screenshot(page, "reload-01-kept")

        # Another user, in another browser, signs in and reloads: their own session, never alice's result.
        other, bob = signed_in(browser, users_app, "bob")
        try:
            bob.reload()
            assert_signed_in_as(bob, "bob")
            bob.get_by_role("button", name="Try the sample scan").wait_for()
            expect(bob.get_by_text("Tumour burden")).to_have_count(0)
            # A token bob's browser made up, or alice's from before her reload, lets nobody in.
            other.add_cookies([{"name": COOKIE, "value": "made-up-token", "url": users_app.url}])
            fresh = other.new_page()
            fresh.goto(users_app.url)
            assert_login_only(fresh)
        finally:
            other.close()

        # A new tab of alice's browser signs in afresh: the sign-in is this tab's.
        tab = context.new_page()
        tab.goto(users_app.url)
        assert_login_only(tab)
        tab.close()

        page.get_by_role("button", name="Log out").click()
        assert_login_only(page)
        page.reload()
        assert_login_only(page)
    finally:
        context.close()


def test_on_a_phone_a_reload_keeps_the_sign_in_too(browser, users_app):
    """The token's component sits in the sidebar, which a phone keeps folded away."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    context.set_default_timeout(120_000)
    try:
        page = context.new_page()
        page.goto(users_app.url)
        log_in(page, password("bob"), user="bob")
        page.get_by_role("heading", name="Segment").wait_for(timeout=300_000)
        page.reload()
        page.get_by_role("heading", name="Segment").wait_for()
        assert_signed_in_as(page, "bob")
        expect(page.get_by_role("button", name="Log in")).to_have_count(0)
    finally:
        context.close()
