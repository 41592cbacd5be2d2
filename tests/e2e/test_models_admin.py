"""The Models page's "Make default" with named users, in a real browser: only an administrator may change the default."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.model import registry
from core.model.card import ModelCard
from core.model.unet import UNet
from tests.e2e.app_server import App, screenshot
from tests.e2e.test_access import signed_in
from tests.helpers.users import write_users

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def users_app(tmp_path_factory):
    """Named users alice (an administrator) and bob; trained/ holds a shipped stand-in (the default) and a model trained here."""
    root = tmp_path_factory.mktemp("models-admin")
    for name, shipped in (("shipped-standin", True), ("trained-here", False)):
        card = ModelCard(name=name, channels=[4, 8], patch_size=[16, 16, 16], spacing_mm=[4.0, 4.0, 4.0], shipped=shipped,
                         created="2026-01-01T00:00:00+00:00")
        registry.save_model(UNet(card.channels, num_classes=len(card.labels)), card, root / "trained" / name)
    users = write_users(root / "users.toml", "alice", "bob")
    server = App(env={"LIVERSEG_USERS_FILE": str(users), "LIVERSEG_ADMINS": "alice", "LIVERSEG_TRAINED_DIR": str(root / "trained"),
                      "LIVERSEG_JOBS_DIR": str(root / "jobs")})
    yield server
    server.stop()


def open_models(browser, app: App, user: str):
    context, page = signed_in(browser, app, user)
    page.get_by_test_id("stSidebar").get_by_role("link", name="Models").click()
    page.get_by_role("heading", name="trained-here").wait_for()
    return context, page


def test_a_user_who_is_not_an_administrator_sees_why_make_default_is_off(browser, users_app):
    context, page = open_models(browser, users_app, "bob")
    try:
        expect(page.get_by_test_id("stAlertContentInfo")).to_contain_text(
            "Only an administrator can change the default model, because it is the model every user's Segment page uses. "
            "You are signed in as bob, not as an administrator of this server")
        button = page.get_by_role("button", name="Make default")
        expect(button).to_have_count(1)
        expect(button).to_be_disabled()
        page.get_by_text("The Segment page uses shipped-standin.").wait_for()
        screenshot(page, "models-04-not-an-administrator")
    finally:
        context.close()


def test_an_administrator_makes_a_model_the_default(browser, users_app):
    context, page = open_models(browser, users_app, "alice")
    try:
        assert "(administrator)" in page.get_by_test_id("stSidebar").inner_text()
        expect(page.get_by_test_id("stAlertContentInfo")).to_have_count(0)
        page.get_by_role("button", name="Make default").click()
        page.get_by_text("for every user of this server?").wait_for()  # asked first
        page.locator(".st-key-default-trained-here button").click()
        page.get_by_text("The Segment page uses trained-here.").wait_for()
    finally:
        context.close()
