"""A run as a demo audience sees it, in headless Chromium: progress in plain words with the time, the start
button disabled while running, and after Done the picture on screen without scrolling at 1440x900 and
1280x720, and within a phone's width (390x844)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e import segment_page as viewer
from ui.progress import STAGE_WORDS

pytestmark = pytest.mark.e2e

STAGES = "(" + "|".join(map(re.escape, STAGE_WORDS.values())) + ")"  # whichever model runs, its stages in words


@pytest.fixture(scope="module")
def app(shipped_app):
    return shipped_app


def on_screen(page) -> dict:
    """The picture's box in the viewport, and whether the page has been scrolled."""
    return page.evaluate("""selector => {
        const box = document.querySelector(selector).getBoundingClientRect();
        const main = document.querySelector('[data-testid="stMain"]');
        return {top: box.top, bottom: box.bottom, left: box.left, right: box.right, width: box.width,
                scrolled: (main?.scrollTop || 0) + window.scrollY, pageWidth: document.documentElement.scrollWidth};
    }""", viewer.SLICE_CANVAS)


def test_a_run_reads_plainly_and_ends_with_the_picture_on_screen(browser, app):
    context, page = viewer.new_page(browser, app.url, 1440, 900)
    viewer.choose_sample(page)
    page.get_by_role("button", name="Find the liver and lesions").click()
    expect(page.get_by_role("button", name="Finding the liver and lesions…")).to_be_disabled()
    page.get_by_text(re.compile(STAGES + r"… \d+ s so far")).first.wait_for()
    page.get_by_text("Tumour burden").wait_for()
    viewer.wait_for_slice(page, 1, 10_000)
    box = on_screen(page)
    assert box["scrolled"] == 0 and 0 <= box["top"] and box["bottom"] <= 900, box
    expect(page.get_by_text("Done in", exact=False)).to_be_hidden()  # folded into "Details"
    page.get_by_text("Details").click()
    expect(page.get_by_text(re.compile(r"Done in [\d.]+ s on the (CPU|GPU) with model"))).to_be_visible()
    page.get_by_text("Details").click()

    page.set_viewport_size({"width": 1280, "height": 720})
    page.wait_for_timeout(500)
    box = on_screen(page)
    assert box["scrolled"] == 0 and 0 <= box["top"] and box["bottom"] <= 720, box
    for headline in ("Liver volume", "Tumour burden", "Lesions found"):
        expect(page.get_by_test_id("stMetric").filter(has_text=headline)).to_be_in_viewport()

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)
    box = on_screen(page)
    assert box["left"] >= 0 and box["right"] <= 390 and box["width"] >= 300 and box["pageWidth"] <= 390, box
    context.close()
