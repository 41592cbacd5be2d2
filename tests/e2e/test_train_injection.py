"""Issue 22, finding 1 in a real browser: flags typed into the Train page's several-value fields start nothing.

Channels = ``4 8 --data /tmp/outside_data --out /tmp/pwned_out`` once trained on a case outside the
configured data folders and wrote a model to /tmp/pwned_out. Each several-value field now sends its
words as typed numbers (``ui.forms``), and ``core.jobs.requests`` refuses a word that is not one,
naming the field: no job is queued, no process starts, nothing is written outside the allowed folders.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.app_server import App
from tests.e2e.test_train_models import expand, fill, open_page
from tests.helpers import fake_training

pytestmark = pytest.mark.e2e

INJECTION = "4 8 --data /tmp/outside_data --out /tmp/pwned_out"
#: The Train page's several-value fields and the option each one sets.
FIELDS = {"Channels": "channels", "Patch size": "patch_size", "Voxel size (mm)": "spacing", "HU window": "hu_window",
          "Label probabilities": "label_probabilities"}
OUTSIDE = (Path("/tmp/outside_data"), Path("/tmp/pwned_out"))


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("injection")
    fake_training.labelled_phantoms(root / "data" / "phantoms")
    return {"LIVERSEG_DATA_DIRS": str(root / "data"), "LIVERSEG_JOBS_DIR": str(root / "jobs"),
            "LIVERSEG_TRAINED_DIR": str(root / "trained")}


@pytest.fixture(scope="module")
def server(places):
    app = App(env=places)
    yield app
    app.stop()
    fake_training.end_all(Path(places["LIVERSEG_JOBS_DIR"]))


def test_an_injection_in_each_several_value_field_runs_nothing_outside_the_data_folders(browser, server, places):
    before = {path: path.exists() for path in OUTSIDE}
    context = browser.new_context(viewport={"width": 1400, "height": 1900})
    context.set_default_timeout(90_000)
    page = context.new_page()
    try:
        open_page(page, server, "Train")
        for title in ("Start a new training job", "Patches and augmentation", "Model (for a new model"):
            expand(page, title)
        fill(page, "Model name", "pwned")
        for label, option in FIELDS.items():
            default = page.get_by_label(label, exact=True).input_value()
            fill(page, label, INJECTION)
            page.get_by_role("button", name="Start training").click()
            expect(page.get_by_test_id("stAlertContentError")).to_contain_text(f"training option '{option}'")
            assert not Path(places["LIVERSEG_JOBS_DIR"]).exists() or not any(Path(places["LIVERSEG_JOBS_DIR"]).iterdir())
            fill(page, label, default)  # one field at a time
    finally:
        context.close()
    assert {path: path.exists() for path in OUTSIDE} == before  # nothing written (or removed) outside
    assert not list(Path(places["LIVERSEG_DATA_DIRS"]).rglob("model.pt"))
