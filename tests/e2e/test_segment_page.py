"""The Segment page as a new user meets it, in headless Chromium.

The sample: chosen, segmented, scrolled in all three planes, a lesion picked from
the table, its expert labels uploaded as the reference and the metrics read,
the 3D view opened, every download taken and opened. The real DICOM zip from
../shared/data: uploaded, segmented, scrolled in all three planes. A screenshot
at each step (screenshots/segment-*.png).
"""

from __future__ import annotations

import csv
import json
import re

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
from playwright.sync_api import expect

from core import config
from core.evaluation.lesions import COLUMNS
from tests.e2e import segment_page as viewer
from tests.e2e.app_server import screenshot

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def app(shipped_app):
    return shipped_app


@pytest.fixture
def page(page):
    page.set_default_timeout(120_000)  # a loaded 2-core machine
    page.get_by_role("heading", name="Segment").wait_for()
    return page


def scroll_all_planes(page, prefix: str) -> None:
    """In each plane: keys, wheel, buttons and slider each paint a new slice, and a fast wheel burst ends where it should."""
    for plane in ("axial", "coronal", "sagittal"):
        viewer.choose_plane(page, plane)
        count, start = viewer.slice_count(page), viewer.slice_number(page)
        direction = -1 if start > count // 2 else 1  # room for the moves below
        key, button = ("ArrowLeft", "Back") if direction < 0 else ("ArrowRight", "Next")
        expected = start
        for move in (lambda: viewer.move_slice(page, key), lambda: viewer.move_slice(page, key),
                     lambda: viewer.wheel_slice(page, 100 * direction), lambda: viewer.step_slice(page, button)):
            move()
            expected += direction
            assert viewer.slice_number(page) == expected
        viewer.wheel_burst(page, 5, 100 * direction)  # every notch counts
        expected += 5 * direction
        viewer.wait_for_slice(page, expected, expected)
        page.wait_for_timeout(300)
        assert viewer.slice_number(page) == expected  # and no further
        target = max(1, min(count, expected - 10 * direction))
        viewer.drag_slider(page, target)
        assert viewer.slice_number(page) == target
        viewer.full_screenshot(page, f"{prefix}-{plane}")


def download(page, button: str, folder):
    with page.expect_download() as taken:
        page.get_by_role("button", name=button).click()
    path = folder / taken.value.suggested_filename
    taken.value.save_as(path)
    return path


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_sample_from_first_click_to_downloads(page, tmp_path):
    page.get_by_role("button", name="Try the sample scan").wait_for()
    viewer.full_screenshot(page, "segment-01-start")
    viewer.choose_sample(page)
    expect(page.get_by_text("1.5 mm isotropic assumed").first).to_be_visible()  # the sample's spacing is an assumption, said so
    viewer.segment(page)
    for headline in ("Liver volume", "Tumour burden", "Lesions found"):
        page.get_by_test_id("stMetric").filter(has_text=headline).wait_for()
    page.get_by_text("Details").click()
    expect(page.get_by_text(re.compile(r"Done in [\d.]+ s on the (CPU|GPU) with model"))).to_be_visible()
    viewer.full_screenshot(page, "segment-02-result")

    scroll_all_planes(page, "segment-03")
    before_hover = viewer.slice_number(page)
    number = "[-−]?[\\d.]+"  # Plotly writes a true minus sign
    assert re.search(rf"{number} HU\s*\({number}, {number}, {number}\) mm RAS", viewer.hover_readout(page))
    assert viewer.slice_number(page) == before_hover  # hovering and the wheel's readout move nothing
    viewer.chart_screenshot(page, "segment-03-sagittal-hover")
    viewer.choose_plane(page, "coronal")  # each plane keeps its own slice
    coronal = viewer.slice_number(page)
    viewer.choose_plane(page, "sagittal")
    viewer.choose_plane(page, "coronal")
    assert viewer.slice_number(page) == coronal

    # The lesion table: a lesion away from the slice shown, picked by a click on its row, brings every plane to it.
    open_tab(page, "Downloads")
    with open(download(page, "Lesion table (CSV)", tmp_path), newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == COLUMNS
    open_tab(page, "Slices")
    viewer.choose_plane(page, "axial")
    shown = viewer.slice_number(page)
    ranges = [(int(row["first_slice"]) + 1, int(row["last_slice"]) + 1) for row in rows[:8]]  # the rows on screen
    row = next((n for n, (first, last) in enumerate(ranges) if not first <= shown <= last), 0)
    others = {plane: page.locator(viewer.pane_canvas(plane)).get_attribute("data-slice") for plane in ("coronal", "sagittal")}
    viewer.choose_lesion(page, row, across=0.6)
    viewer.wait_for_slice(page, *ranges[row])
    page.locator(".lsv-three input").check()  # and the other planes went through it too
    moved = {plane: page.locator(viewer.pane_canvas(plane)).get_attribute("data-slice") for plane in ("coronal", "sagittal")}
    assert moved != others
    page.locator(".lsv-three input").uncheck()
    viewer.full_screenshot(page, "segment-04-lesion-chosen")

    # The expert labels as reference: metrics in plain words, detection counts, the agreement colours.
    viewer.upload_reference(page, config.SAMPLE_LABELS)
    open_tab(page, "Compare with reference")
    page.get_by_test_id("stMetric").filter(has_text="False alarms").wait_for()
    expect(page.get_by_text("Compared with: lits117_labels.nii.gz")).to_be_visible()
    page.get_by_role("cell", name="Overlap of the model's and the reference's region", exact=False).wait_for()
    viewer.full_screenshot(page, "segment-05-metrics")
    open_tab(page, "Slices")
    viewer.display_change(page, lambda: page.locator(".lsv-compare select").select_option("lesion"))
    page.locator(".lsv-legend").get_by_text("In the reference only (missed by the model)").wait_for()
    viewer.full_screenshot(page, "segment-06-agreement")

    open_tab(page, "3D view")
    page.get_by_text("Show the 3D view").click()
    page.locator("[data-testid=stPlotlyChart] .gl-container canvas").first.wait_for()
    page.wait_for_timeout(1000)  # WebGL draws after the canvas appears
    viewer.full_screenshot(page, "segment-07-3d")

    # Every download, opened.
    open_tab(page, "Downloads")
    scan = nib.load(config.SAMPLE_SCAN)
    labels_path = download(page, "Label map (NIfTI)", tmp_path)
    assert labels_path.name == "lits117_labels.nii.gz"  # a safe name, as the dataset names it
    labels = nib.load(labels_path)
    assert labels.shape == scan.shape and np.allclose(labels.affine, scan.affine)
    assert set(np.unique(np.asarray(labels.dataobj))) <= {0, 1, 2}
    with open(download(page, "Metrics (CSV)", tmp_path), newline="", encoding="utf-8") as stream:
        metrics_rows = list(csv.DictReader(stream))
    assert tuple(metrics_rows[0]) == ("structure", "metric", "value")
    metrics = json.loads(download(page, "Metrics (JSON)", tmp_path).read_text(encoding="utf-8"))
    assert {"liver", "lesion", "lesion_detection"} <= set(metrics) and "dice" in metrics["liver"]
    expect(page.get_by_text("DICOM SEG: not available, a DICOM SEG needs a DICOM source", exact=False)).to_be_visible()
    report = download(page, "Report (HTML)", tmp_path)
    text = report.read_text(encoding="utf-8")
    assert "not for clinical use" in text and text.count("data:image/png;base64,") == 3
    page.goto(report.as_uri())
    screenshot(page, "segment-08-report")


def test_real_dicom_zip_is_uploaded_segmented_and_scrolled(page, shared_data, tmp_path):
    viewer.upload_scan(page, shared_data / "ircad-1.1" / "ct_dicom.zip")
    expect(page.get_by_text("512 × 512 × 129 voxels")).to_be_visible()
    viewer.segment(page)
    for plane in ("coronal", "sagittal", "axial"):  # a plane switch draws in the browser: no new segmentation, no rerun
        took = viewer.display_change(page, lambda plane=plane: viewer.choose_plane(page, plane), viewer.pane_canvas(plane))
        assert took < 1000, f"{plane} took {took:.0f} ms"
    scroll_all_planes(page, "segment-09-dicom")

    # Its DICOM SEG: read back by highdicom, on the uploaded series.
    open_tab(page, "Downloads")
    seg = hd.seg.segread(download(page, "Segmentation (DICOM SEG)", tmp_path))
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["Liver", "Lesion"]
    assert (seg.Rows, seg.Columns) == (512, 512) and 0 < seg.NumberOfFrames <= 2 * 129
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    frames = {item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
              for item in seg.PerFrameFunctionalGroupsSequence}
    assert frames <= referenced and len(referenced) == 129
