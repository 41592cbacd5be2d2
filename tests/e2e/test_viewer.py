"""The viewer's display changes on the sample, in headless Chromium: each one painted in the browser, none reruns the page.

Window presets and right-drag (with a reset), layer toggles and opacity, Ctrl+wheel zoom and
drag to pan, the crosshair linking the three planes, hover, and a distance in mm; each
asserted on the painted canvas.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e import segment_page as viewer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def app(shipped_app):
    return shipped_app


@pytest.fixture(scope="module")
def page(browser, app):
    """One page for the module: the sample, segmented once."""
    context, page = viewer.new_page(browser, app.url, 1440, 900)
    viewer.choose_sample(page)
    viewer.segment(page)
    viewer.count_reruns(page)
    yield page
    context.close()


def window_words(page) -> str:
    return page.locator(".lsv-wl").inner_text()


def test_window_presets_and_drag_are_painted_without_a_rerun(page):
    viewer.choose_plane(page, "axial")
    before = viewer.picture(page)
    assert viewer.choose_window(page, "Bone") < 1000
    assert viewer.picture(page) != before and window_words(page) == "W 2500 / L 480 HU"
    viewer.choose_window(page, "Abdomen")
    assert viewer.picture(page) == before  # the same window, the same picture
    assert viewer.drag_window(page, 60, 30) < 1000
    assert window_words(page) != "W 400 / L 40 HU" and viewer.picture(page) != before
    assert page.locator(".lsv-window").input_value() == "Custom"
    viewer.display_change(page, lambda: page.get_by_role("button", name="Reset view").click())
    assert window_words(page) == "W 400 / L 40 HU" and viewer.picture(page) == before
    assert viewer.reruns(page) == 0


def test_layers_and_opacity_are_painted_without_a_rerun(page):
    before = viewer.picture(page)
    assert viewer.toggle_layer(page, "Liver") < 1000
    assert viewer.picture(page) != before
    assert page.locator(".lsv-legend").inner_text().count("Liver") == 0
    viewer.toggle_layer(page, "Liver")
    assert viewer.picture(page) == before
    assert viewer.set_opacity(page, 1.0) < 1000
    assert viewer.picture(page) != before
    viewer.set_opacity(page, 0.4)
    assert viewer.picture(page) == before
    assert viewer.reruns(page) == 0


def test_plane_switch_is_painted_at_once(page):
    for plane in ("coronal", "sagittal", "axial"):
        took = viewer.display_change(page, lambda plane=plane: viewer.choose_plane(page, plane), viewer.pane_canvas(plane))
        assert took < 1000, f"{plane} took {took:.0f} ms"
    assert viewer.reruns(page) == 0


def test_zoom_pan_and_reset(page):
    before = viewer.picture(page)
    corner = viewer.pixel(page, 0.02, 0.5)
    assert viewer.zoom(page, -400) < 1000
    assert float(page.locator(".lsv").get_attribute("data-zoom")) > 1.5
    assert viewer.picture(page) != before
    x, y = viewer.picture_centre(page)
    zoomed = viewer.picture(page)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 80, y + 40, steps=4)
    page.mouse.up()
    page.wait_for_timeout(100)
    assert viewer.picture(page) != zoomed  # panned
    page.get_by_role("button", name="Reset view").click()
    page.wait_for_timeout(100)
    assert viewer.picture(page) == before and viewer.pixel(page, 0.02, 0.5) == corner
    assert viewer.reruns(page) == 0


def test_a_click_moves_the_other_planes_to_that_point(page):
    page.locator(".lsv-three input").check()
    panes = {plane: viewer.pane_canvas(plane) for plane in ("axial", "coronal", "sagittal")}
    page.locator(panes["sagittal"]).wait_for()
    slices = {plane: page.locator(selector).get_attribute("data-slice") for plane, selector in panes.items()}
    page.locator(panes["axial"]).scroll_into_view_if_needed()
    box = page.locator(panes["axial"]).bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.7)
    page.wait_for_timeout(200)
    moved = {plane: page.locator(selector).get_attribute("data-slice") for plane, selector in panes.items()}
    assert moved["axial"] == slices["axial"]
    assert moved["coronal"] != slices["coronal"] and moved["sagittal"] != slices["sagittal"]
    page.locator(".lsv-three input").uncheck()
    assert viewer.reruns(page) == 0


def test_hover_reads_hu_and_a_distance_is_measured_in_mm(page):
    viewer.choose_plane(page, "axial")
    number = "-?[\\d.]+"
    assert re.search(rf"{number} HU\s*\({number}, {number}, {number}\) mm RAS", viewer.hover_readout(page))
    page.get_by_role("button", name="Measure").click()
    x, y = viewer.picture_centre(page)
    box = page.locator(viewer.SLICE_CANVAS).bounding_box()
    page.mouse.move(x - 50, y)
    page.mouse.down()
    page.mouse.move(x + 50, y, steps=5)
    page.mouse.up()
    distance = float(re.search(r"Distance: ([\d.]+) mm", page.locator(".lsv-distance").inner_text()).group(1))
    # The sample is 128 voxels of 1.5 mm a side, fitted into the picture's shorter side.
    expected = 100 * 128 * 1.5 / min(box["width"], box["height"])
    assert distance == pytest.approx(expected, rel=0.05)
    page.get_by_role("button", name="Measure").click()
    assert viewer.reruns(page) == 0
