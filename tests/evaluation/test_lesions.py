"""core.evaluation.lesions: sizes and positions of known shapes, any orientation, the table, the sample."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from core.evaluation.lesions import COLUMNS, analyse_lesions
from core.scan import Scan
from core.segmentation import LESION, LIVER
from tests.helpers.phantom import make_phantom

SPACING = (0.7, 0.8, 3.0)


def scan_and_labels(shape=(40, 36, 12), spacing=SPACING, hu=50.0) -> tuple[Scan, np.ndarray]:
    """A uniform RAS scan (axis 2 runs inferior to superior) and an empty label map on its grid."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-10.0, 20.0, -30.0)
    return Scan(np.full(shape, hu, np.float32), affine), np.zeros(shape, np.uint8)


def test_a_box_lesion_measures_its_volume_diameter_hu_centroid_and_slices():
    scan, labels = scan_and_labels()
    labels[5:25, 5:25, 1:11] = LIVER
    labels[10:20, 10:16, 3:7] = LESION  # 10 x 6 voxels in plane, 4 slices
    scan.voxels[labels == LESION] = 20.0
    report = analyse_lesions(labels, scan)
    (lesion,) = report.lesions
    voxel_ml = 0.7 * 0.8 * 3.0 / 1000
    assert lesion.id == 1
    assert lesion.volume_ml == pytest.approx(240 * voxel_ml)
    assert lesion.longest_axial_diameter_mm == pytest.approx(math.hypot(10 * 0.7, 6 * 0.8))
    assert lesion.mean_hu == pytest.approx(20.0)
    assert lesion.centroid_voxel == pytest.approx((14.5, 12.5, 4.5))
    assert lesion.centroid_mm == pytest.approx((-10 + 14.5 * 0.7, 20 + 12.5 * 0.8, -30 + 4.5 * 3.0))
    assert (lesion.first_slice, lesion.last_slice) == (3, 6)
    assert report.liver_ml == pytest.approx(20 * 20 * 10 * voxel_ml)  # labels 1 and 2 together
    assert report.lesion_ml == pytest.approx(240 * voxel_ml)
    assert report.burden_pct == pytest.approx(100 * 240 / 4000)


def test_the_diameter_is_in_plane_only_and_a_single_voxel_measures_its_diagonal():
    scan, labels = scan_and_labels()
    labels[5, 5, 2:10] = LESION  # a column through 8 slices: long, but not in any axial plane
    (lesion,) = analyse_lesions(labels, scan).lesions
    assert lesion.longest_axial_diameter_mm == pytest.approx(math.hypot(0.7, 0.8))


def test_the_diameter_of_a_disk_is_about_twice_its_radius():
    scan, labels = scan_and_labels(shape=(80, 80, 3), spacing=(0.5, 0.5, 2.0))
    x, y = np.meshgrid(np.arange(80) * 0.5 - 20, np.arange(80) * 0.5 - 20, indexing="ij")
    labels[..., 1][x**2 + y**2 <= 12.0**2] = LESION
    (lesion,) = analyse_lesions(labels, scan).lesions
    assert 24.0 <= lesion.longest_axial_diameter_mm <= 24.0 + 2 * math.hypot(0.5, 0.5)


def test_lesions_are_26_connected_and_numbered_by_decreasing_volume():
    scan, labels = scan_and_labels()
    labels[2:4, 2:4, 2:4] = LESION  # 8 voxels
    labels[4, 4, 4] = LESION  # touches it at a corner only: the same lesion, 9 voxels
    labels[20:25, 20:25, 2:5] = LESION  # 75 voxels
    labels[30, 30, 8] = LESION  # 1 voxel
    report = analyse_lesions(labels, scan)
    assert [lesion.id for lesion in report.lesions] == [1, 2, 3]
    voxel_ml = scan.voxel_volume_ml
    assert [lesion.volume_ml for lesion in report.lesions] == pytest.approx([75 * voxel_ml, 9 * voxel_ml, voxel_ml])


def test_no_lesions_and_no_liver():
    scan, labels = scan_and_labels()
    empty = analyse_lesions(labels, scan)
    assert (empty.lesions, empty.lesion_ml, empty.liver_ml, empty.burden_pct) == ([], 0.0, 0.0, None)
    assert empty.to_csv() == ",".join(COLUMNS) + "\n"
    labels[5:10, 5:10, 5:10] = LIVER
    assert analyse_lesions(labels, scan).burden_pct == 0.0


def test_the_table_rows_and_csv_carry_every_lesion():
    scan, labels = make_phantom(shape=(48, 40, 32), spacing=(8.0, 8.0, 10.0), lesions=2, seed=3)
    report = analyse_lesions(labels, scan)
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert len(rows) == len(report.lesions) == len(report.rows()) >= 1
    assert tuple(rows[0]) == COLUMNS
    assert float(rows[0]["volume_ml"]) == pytest.approx(report.lesions[0].volume_ml, abs=0.001)
    assert int(rows[-1]["id"]) == len(report.lesions)


@pytest.mark.parametrize("axcodes", ["LPS", "SAR", "IRP", "PLI"])
def test_the_report_is_the_same_in_any_stored_orientation(axcodes):
    reference = analyse_lesions(*reversed(make_phantom(axcodes="RAS", seed=2)))
    scan, labels = make_phantom(axcodes=axcodes, seed=2)
    report = analyse_lesions(labels, scan)
    assert len(report.lesions) == len(reference.lesions) >= 2
    for ours, theirs in zip(report.lesions, reference.lesions):
        assert ours.volume_ml == pytest.approx(theirs.volume_ml)
        assert ours.longest_axial_diameter_mm == pytest.approx(theirs.longest_axial_diameter_mm)
        assert ours.mean_hu == pytest.approx(theirs.mean_hu)
        assert ours.centroid_mm == pytest.approx(theirs.centroid_mm)
        assert (ours.first_slice, ours.last_slice) == (theirs.first_slice, theirs.last_slice)
        # The voxel centroid is in the file's own order, and maps to the same point.
        assert scan.affine[:3, :3] @ ours.centroid_voxel + scan.affine[:3, 3] == pytest.approx(theirs.centroid_mm)
    assert report.liver_ml == pytest.approx(reference.liver_ml)


def test_labels_must_be_on_the_scan_grid():
    scan, labels = scan_and_labels()
    with pytest.raises(ValueError, match="grid"):
        analyse_lesions(labels[:-1], scan)


def test_the_sample_lesion_burden(sample_paths):
    from core.imageio.nifti import read_label_map, read_scan

    scan_path, labels_path = sample_paths
    scan = read_scan(scan_path)
    labels, _ = read_label_map(labels_path)
    report = analyse_lesions(labels, scan)
    voxel_ml = 1.5**3 / 1000  # the sample's assumed 1.5 mm isotropic voxels
    assert report.lesion_ml == pytest.approx(130_083 * voxel_ml) == pytest.approx(439.0, abs=0.05)
    assert report.liver_ml == pytest.approx((485_268 + 130_083) * voxel_ml)
    assert sum(lesion.volume_ml for lesion in report.lesions) == pytest.approx(report.lesion_ml)
    assert all(-100 < lesion.mean_hu < 200 for lesion in report.lesions)  # soft tissue, not air or bone


def test_confidence_is_the_mean_lesion_probability_and_absent_without_probabilities():
    scan, labels = scan_and_labels()
    labels[5:25, 5:25, 1:11] = LIVER
    labels[10:14, 10:14, 3:5] = LESION
    probability = np.zeros(labels.shape, np.uint8)
    probability[10:14, 10:14, 3:5] = 204  # 0.8
    probability[10, 10, 3] = 0
    [lesion] = analyse_lesions(labels, scan, probability).lesions
    assert lesion.confidence == pytest.approx(0.8 * 31 / 32)
    [row] = list(csv.DictReader(io.StringIO(analyse_lesions(labels, scan, probability).to_csv())))
    assert row["confidence"] == "0.78"
    [without] = analyse_lesions(labels, scan).lesions
    assert without.confidence is None
    [row] = list(csv.DictReader(io.StringIO(analyse_lesions(labels, scan).to_csv())))
    assert row["confidence"] == ""
