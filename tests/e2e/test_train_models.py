"""Train and Models pages in a real browser, as a new user would use them.

A short real training on two small phantoms is started from the Train page; its
curves update by themselves; the page is reloaded and the app restarted while it
runs, and the job is still followed; a second job is cancelled; the finished model
appears on the Models page, is made the default, and the Segment page uses it.

The app gets its own data, jobs and trained folders (environment variables), so
the test never touches the checkout's trained/ or .jobs/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from core.jobs import records
from core.jobs.runner import JobRunner
from core.model import registry
from core.model.card import ModelCard
from core.model.unet import UNet
from tests.e2e.app_server import App, screenshot
from tests.helpers import fake_training

pytestmark = pytest.mark.e2e

#: Tiny patches and network; the run lasts its time limit (1.5 min) on any machine, long enough to restart the app mid-run.
OPTIONS = {"Epochs": "500", "Time limit (minutes)": "1.5", "Patches per epoch": "4", "Validation cases": "1", "Patch size": "16 16 16",
           "Channels": "4 8", "Voxel size (mm)": "4"}
CURVE_POINTS = "() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => (p.data || []).reduce((n, t) => n + t.x.length, 0))"


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """Phantom training data, an empty jobs folder and a trained/ holding one shipped (stand-in) model."""
    root = tmp_path_factory.mktemp("train-e2e")
    fake_training.labelled_phantoms(root / "data" / "phantoms")
    card = ModelCard(name="shipped-standin", channels=[4, 8], patch_size=[16, 16, 16], spacing_mm=[4.0, 4.0, 4.0], shipped=True,
                     created="2026-01-01T00:00:00+00:00")
    registry.save_model(UNet(card.channels, num_classes=len(card.labels)), card, root / "trained" / card.name)
    return {"LIVERSEG_DATA_DIRS": str(root / "data"), "LIVERSEG_JOBS_DIR": str(root / "jobs"),
            "LIVERSEG_TRAINED_DIR": str(root / "trained")}


@pytest.fixture
def server(places) -> Iterator[list[App]]:
    """The app (a list, so the test can replace it by a restarted one); jobs left running are cancelled at the end."""
    servers = [App(env=places)]
    yield servers
    servers[-1].stop()
    fake_training.end_all(Path(places["LIVERSEG_JOBS_DIR"]))


@pytest.fixture
def context(browser):
    # Tall, because Streamlit scrolls inside the page: a full-page screenshot shows only the viewport.
    context = browser.new_context(viewport={"width": 1400, "height": 1900})
    context.set_default_timeout(90_000)
    yield context
    context.close()


def open_page(page, app: App, title: str) -> None:
    """Open the app at its root and go to ``title`` through the navigation, as a user does."""
    page.goto(app.url)
    # Let the first page finish importing torch: two script runs importing it at once can fail (app.py should warm it up).
    page.get_by_role("heading", name="Segment").wait_for(timeout=300_000)
    page.get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()


def fill(page, label: str, value: str) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")  # Streamlit takes a value on Enter or blur


def expand(page, title: str) -> None:
    """Open the expander whose summary holds ``title`` unless it is open already."""
    summary = page.locator("summary", has_text=title).first
    if summary.locator("xpath=..").get_attribute("open") is None:
        summary.click()


def start_job(page, name: str) -> None:
    for title in ("Start a new training job", "Data", "Patches and augmentation", "Model (for a new model"):
        expand(page, title)
    fill(page, "Model name", name)
    for label, value in OPTIONS.items():
        fill(page, label, value)
    page.get_by_role("radiogroup", name="Device").get_by_text("cpu", exact=True).click()
    page.get_by_role("button", name="Start training").click()
    page.get_by_role("heading", name=name).wait_for()


def curve_points(page) -> list[int]:
    return page.evaluate(CURVE_POINTS)


def wait_for_more_points(page, than: int) -> int:
    page.wait_for_function(f"() => ({CURVE_POINTS})()[0] > {than}", timeout=180_000)
    return curve_points(page)[0]


def follow(page, name: str) -> None:
    """Choose the job to follow by its model name."""
    page.get_by_role("combobox", name="Job").click()
    page.get_by_role("option", name=name).first.click()
    page.get_by_role("heading", name=name).wait_for()


def test_train_follow_through_restart_cancel_and_use_the_model(context, server, places):
    page = context.new_page()
    open_page(page, server[-1], "Train")
    page.get_by_text("data/phantoms (2 labelled cases)").wait_for()
    page.get_by_label("Epochs", exact=True).wait_for()
    screenshot(page, "train-00-new-job")
    start_job(page, "e2e-model")

    # The curves fill in by themselves: no click, no reload.
    page.get_by_text("running").first.wait_for(timeout=120_000)
    first = wait_for_more_points(page, 0)
    second = wait_for_more_points(page, first)
    screenshot(page, "train-01-running")

    # A second job, started now, waits in the queue behind the first (the page follows the job just started).
    start_job(page, "e2e-cancel")
    page.get_by_text("Waiting for the running job to finish").wait_for()
    page.get_by_role("heading", name="e2e-cancel").scroll_into_view_if_needed()
    screenshot(page, "train-02-queued")

    page.reload()  # a new session follows the running job
    page.get_by_role("heading", name="e2e-model").wait_for()
    assert wait_for_more_points(page, 0) >= second  # the same job, its curve kept

    server[-1].stop()  # the app goes away mid-run; the jobs do not
    server.append(App(env=places))
    open_page(page, server[-1], "Train")
    page.get_by_role("heading", name="e2e-model").wait_for()
    after_restart = wait_for_more_points(page, second - 1)  # the curve as it was, at least
    # Still followed: the curve grows, unless the run finished meanwhile (on a fast machine), which the page then says.
    page.wait_for_function(f"() => ({CURVE_POINTS})()[0] > {after_restart} || "
                           "document.body.innerText.includes('The model is registered as e2e-model')", timeout=180_000)
    if page.get_by_text("The model is registered as e2e-model").is_visible():
        expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)  # the page has redrawn the ended job
    screenshot(page, "train-03-after-restart")

    follow(page, "e2e-cancel")  # queued still (or started, if the first has just finished): cancel it either way
    page.get_by_role("button", name="Cancel job").click()
    page.get_by_text("Cancelled: cancelled by the user").wait_for()
    screenshot(page, "train-04-cancelled")

    follow(page, "e2e-model")
    page.get_by_text("The model is registered as e2e-model").wait_for(timeout=300_000)
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)  # the page has redrawn the ended job
    assert min(curve_points(page)) > 0  # loss and validation Dice curves
    screenshot(page, "train-05-finished")
    runner = JobRunner(Path(places["LIVERSEG_JOBS_DIR"]))
    assert sorted((job.name, job.state, job.model) for job in runner.jobs()) == [
        ("e2e-cancel", records.CANCELLED, None), ("e2e-model", records.SUCCEEDED, "e2e-model")]

    page.get_by_role("link", name="Models").click()
    page.get_by_role("heading", name="e2e-model").wait_for()
    page.get_by_text("The Segment page uses shipped-standin.").wait_for()
    page.get_by_role("button", name="Make default").first.click()  # e2e-model's card: the default's says "Default"
    page.get_by_text("for every user of this server?").wait_for()  # asked first
    page.locator(".st-key-default-e2e-model button").click()
    page.get_by_text("The Segment page uses e2e-model.").wait_for()
    expect(page.get_by_role("button", name="Make default")).to_have_count(1)  # the page has redrawn both cards
    screenshot(page, "models-01-default")
    page.get_by_text("Model card").first.click()
    page.get_by_text("Command to reproduce").wait_for()
    screenshot(page, "models-02-card")

    page.get_by_role("link", name="Segment").click()
    page.get_by_role("button", name="Try the sample scan").click()
    page.get_by_role("button", name="Find the liver and lesions").click()
    page.get_by_text("Details").wait_for(timeout=180_000)
    page.get_by_text("Details").click()  # the run's facts are folded there
    page.get_by_text("with model e2e-model").wait_for()
    screenshot(page, "models-03-segment-uses-it")
