import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from core.evaluation.lesions import analyse_lesions
from core.evaluation.metrics import DETECTION_KEYS, STRUCTURE_KEYS, evaluate
from core.segmentation import Segmentation
from core.viewing.numbers import cell
from core.viewing.report import NOT_FOR_CLINICAL_USE, detection_table, html_report, lesion_table, metrics_table
from core.viewing.slices import DisplayVolume
from tests.helpers.phantom import make_phantom


@pytest.fixture(scope="module")
def case():
    scan, labels = make_phantom(shape=(40, 32, 24), spacing=(6.0, 6.0, 8.0), lesions=2)
    scan = type(scan)(scan.voxels, scan.affine, source="<b>patient</b>.nii.gz")
    segmentation = Segmentation(labels, scan, model="tiny", device="cpu", seconds={"infer": 1.5, "read": 0.5}, notes=["a note"])
    lesions = analyse_lesions(labels, scan)
    reference = np.roll(labels, 1, axis=0)
    metrics = evaluate(labels, reference, scan.spacing)
    return segmentation, lesions, DisplayVolume.from_scan(scan, labels, reference), metrics


def test_lesion_table_numbers_slices_from_one(case):
    _, lesions, _, _ = case
    rows = lesion_table(lesions)
    assert len(rows) == len(lesions.lesions) > 0
    first = lesions.lesions[0]
    assert rows[0]["Axial slices"] == f"{first.first_slice + 1}–{first.last_slice + 1}"
    assert rows[0]["Volume (mL)"] == round(first.volume_ml, 3)


def test_metric_tables_explain_every_key(case):
    *_, metrics = case
    rows = metrics_table(metrics)
    assert len(rows) == len(STRUCTURE_KEYS) and all(row["What it means"] for row in rows)
    assert rows[0]["Measure"] == "Dice" and rows[0]["Liver"] == metrics["liver"]["dice"]
    assert [row["Value"] for row in detection_table(metrics)] == [metrics["lesion_detection"][k] for k in DETECTION_KEYS]


def test_report_is_one_self_contained_page(case):
    segmentation, lesions, shown, metrics = case
    page = html_report(segmentation, lesions, shown, metrics, notes=["1.5 mm assumed"])
    assert NOT_FOR_CLINICAL_USE in page and "1.5 mm assumed" in page and "a note" in page
    assert "&lt;b&gt;patient&lt;/b&gt;" in page and "<b>patient</b>" not in page  # names are escaped
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3
    for encoded in images:
        Image.open(io.BytesIO(base64.b64decode(encoded))).verify()
    assert "tiny" in page and "CPU, 2.0 s" in page
    assert page.count("<tr>") == 1 + len(lesions.lesions) + 1 + len(STRUCTURE_KEYS) + 1 + len(DETECTION_KEYS)
    assert "http" not in page.replace("<!DOCTYPE html>", "")  # nothing fetched from elsewhere
    assert "border:3px solid rgb(0, 230, 118)" in page  # the reference's outline in the legend


def test_report_lists_only_the_largest_lesions(case, monkeypatch):
    segmentation, lesions, shown, _ = case
    monkeypatch.setattr("core.viewing.report.MAX_REPORT_LESIONS", 1)
    page = html_report(segmentation, lesions, shown)
    assert page.count("<tr>") == 2 and f"… and {len(lesions.lesions) - 1} smaller lesions" in page


def test_report_without_reference_or_lesions():
    scan, labels = make_phantom(shape=(40, 32, 24), spacing=(6.0, 6.0, 8.0), lesions=0)
    segmentation = Segmentation(labels, scan, model="tiny", device="cpu")
    page = html_report(segmentation, analyse_lesions(labels, scan), DisplayVolume.from_scan(scan, labels))
    assert "Agreement with the reference" not in page and "<p>None.</p>" in page


def test_report_pictures_are_at_least_256_pixels_and_numbers_are_rounded(case):
    segmentation, lesions, volume, metrics = case
    page = html_report(segmentation, lesions, volume, metrics)
    for data in re.findall(r"data:image/png;base64,([^\"]+)", page):
        assert max(Image.open(io.BytesIO(base64.b64decode(data))).size) >= 256
    assert "height: 320px" in page
    assert cell(37.769) == "37.8" and cell(0.9573) == "0.957" and cell(3) == "3"
