"""The bad-input corpus (tests/test_bad_inputs.py) uploaded on the Segment page.

Every file gives an error box that names the problem, never a traceback; the
page goes on working (the sample still loads), and no upload stays on disk.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.e2e.app_server import App, screenshot
from tests.test_bad_inputs import AFFINE, SCAN_CASES, labels_volume, save_nifti

pytestmark = pytest.mark.e2e

# Folders and missing files cannot be uploaded; variants that differ only inside the reader (which the
# command-line corpus covers one by one) are left out to keep the browser layer short.
LEFT_OUT = ("empty-folder", "missing-file", "truncated-nifti", "random-bytes-nifti", "gzip-of-garbage", "zip-absolute-member",
            "zip-backslash-member")
UPLOADABLE = [case for case in SCAN_CASES if case.id not in LEFT_OUT]


@pytest.fixture(scope="module")
def upload_root(tmp_path_factory):
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def bad_app(upload_root, tmp_path_factory):
    trained = tmp_path_factory.mktemp("trained")
    make_stand_in_model(trained)  # so that the page offers to segment whether or not a model is installed here
    server = App(env={"LIVERSEG_UPLOAD_DIR": str(upload_root), "LIVERSEG_TRAINED_DIR": str(trained)})
    yield server
    server.stop()


@pytest.fixture
def segment_page(browser, bad_app):
    """A new tab for each upload: a replaced upload's error box would otherwise still show the last message."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)  # generous: CI machines may be loaded
    page.goto(bad_app.url)
    page.get_by_role("heading", name="Segment").wait_for()
    yield page
    context.close()


def make_stand_in_model(folder) -> None:
    from core.model import registry
    from core.model.card import ModelCard
    from core.model.unet import UNet

    card = ModelCard(name="stand-in", channels=[4, 8], patch_size=[32, 32, 32])
    registry.save_model(UNet(card.channels), card, folder / "stand-in")


def upload(page, label: str, path) -> None:
    uploader = page.get_by_test_id("stFileUploader").filter(has_text=label)
    uploader.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(path)


def files_under(root) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


@pytest.mark.parametrize("case", UPLOADABLE, ids=lambda case: case.id)
def test_bad_scan_upload_shows_a_clear_message(case, segment_page, upload_root, tmp_path):
    page = segment_page
    upload(page, "Or upload a CT scan", case.build(tmp_path))
    error = page.get_by_test_id("stAlertContentError")
    expect(error).to_contain_text(re.compile(case.message, re.IGNORECASE), timeout=120_000)
    lines = [line for line in error.inner_text().splitlines() if line.strip() and line.strip() != "error"]  # "error": the icon
    assert len(lines) == 1, lines  # one message, not a dump
    assert page.get_by_test_id("stException").count() == 0
    assert "Traceback" not in page.inner_text("body")
    assert files_under(upload_root) == []
    if case.id == "zip-dotdot-member":
        screenshot(page, "bad-upload-zip-dotdot")


def test_after_a_bad_upload_the_page_still_works_and_a_misfit_reference_is_refused(segment_page, upload_root, tmp_path):
    page = segment_page
    bomb = next(case for case in SCAN_CASES if case.id == "zip-bomb")
    upload(page, "Or upload a CT scan", bomb.build(tmp_path))
    expect(page.get_by_test_id("stAlertContentError")).to_contain_text("zip bomb")
    page.get_by_role("button", name="Try the sample scan").click()
    page.get_by_role("button", name="Find the liver and lesions").wait_for()
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)

    page.get_by_text("Compare with a reference segmentation").click()
    elsewhere = AFFINE.copy()
    elsewhere[:3, 3] = (5000.0, 0.0, 0.0)  # a mask from another scan's field of view
    upload(page, "Reference label map", save_nifti(labels_volume((20, 20, 12)).astype(np.uint8), tmp_path / "other_gt.nii.gz", elsewhere))
    expect(page.get_by_test_id("stAlertContentError")).to_contain_text("does not overlap the scan")
    assert page.get_by_test_id("stException").count() == 0
    assert files_under(upload_root) == []
    screenshot(page, "bad-upload-misfit-reference")
