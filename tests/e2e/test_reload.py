"""A reload within the session keeps the signed-in user and their last result, for that user only (issue 21).

Named users alice and bob; alice segments the sample with the fast cascade (chosen under Expert settings),
reloads, and is still signed in with the result on screen; bob, in another browser, never sees it; a token
works once; after signing out a reload asks for the password again.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e import segment_page
from tests.e2e.app_server import App, screenshot
from tests.e2e.test_access import assert_login_only, signed_in
from tests.helpers.users import write_users
from widgets.browser_token import COOKIE

pytestmark = pytest.mark.e2e

FAST_MODEL = "liverseg-cascade-v1"


@pytest.fixture(scope="module")
def users_app(tmp_path_factory):
    users = write_users(tmp_path_factory.mktemp("auth") / "users.toml", "alice", "bob")
    server = App(env={**segment_page.APP_ENV, "LIVERSEG_USERS_FILE": str(users)})
    yield server
    server.stop()


def assert_signed_in_as(page, user: str) -> None:
    expect(page.get_by_test_id("stSidebar")).to_contain_text(f"Signed in as {user}")


def painted_slice(page) -> str:
    segment_page._wait_for_viewer(page)
    return page.locator(segment_page.SLICE_CANVAS).get_attribute("data-slice")


def test_a_reload_keeps_the_user_and_their_result_for_them_only(browser, users_app):
    context, page = signed_in(browser, users_app, "alice")
    try:
        segment_page.choose_sample(page)
        page.get_by_role("button", name="Find the liver and lesions").wait_for()  # the sample's run has ended
        page.get_by_text("Expert settings").click()
        model = page.get_by_role("combobox", name="Model")
        model.click()
        page.keyboard.type(FAST_MODEL)  # typed: the list can close as the expander settles
        page.keyboard.press("Enter")
        expect(model).to_have_value(FAST_MODEL)
        segment_page.segment(page)
        lesions = page.get_by_test_id("stMetric").filter(has_text="Lesions found").inner_text()
        focus = painted_slice(page)
        assert not [c for c in context.cookies() if c["name"] == COOKIE]  # no token in the cookie jar while the tab is open

        page.reload()
        assert_signed_in_as(page, "alice")
        page.get_by_text("Tumour burden").wait_for()
        assert page.get_by_test_id("stMetric").filter(has_text="Lesions found").inner_text() == lesions
        assert painted_slice(page) == focus  # the viewer at the same point, painted from the kept packs
        expect(page.get_by_role("button", name="Find the liver and lesions")).to_have_count(0)  # no second run
        page.get_by_text("Details").click()
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
