"""core.imageio.ground_truth: label checks, reorientation, resampling through the affines, refusal when apart."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import LiverSegError
from core.evaluation.metrics import dice
from core.imageio.ground_truth import LabelGrid, load_ground_truth
from core.segmentation import LESION
from tests.helpers.phantom import make_phantom


@pytest.fixture
def ras_phantom():
    return make_phantom(shape=(48, 40, 32), spacing=(8.0, 8.0, 10.0), seed=1, lesions=2)


def test_labels_on_the_scan_grid_come_back_unchanged(ras_phantom, write_nifti):
    scan, labels = ras_phantom
    truth = load_ground_truth(write_nifti(labels, scan.affine), scan)
    assert truth.labels.dtype == np.uint8
    np.testing.assert_array_equal(truth.labels, labels)
    assert not truth.liver_only and truth.warnings == []


def test_a_binary_liver_mask_has_no_lesions(ras_phantom, write_nifti):
    scan, labels = ras_phantom
    truth = load_ground_truth(write_nifti((labels > 0).astype(np.uint8), scan.affine), scan)
    assert truth.liver_only
    assert set(np.unique(truth.labels)) == {0, 1}


@pytest.mark.parametrize("values", [(0, 255), (0, 1, 2, 3)])
def test_other_label_values_are_refused_with_what_to_do(ras_phantom, write_nifti, values):
    scan, labels = ras_phantom
    relabelled = np.asarray(values, np.uint8)[np.minimum(labels, len(values) - 1)]
    relabelled[0, 0, 0] = values[-1]
    with pytest.raises(LiverSegError, match=rf"label values {values[-1]}.*expected 0 background, 1 liver, 2 lesion"):
        load_ground_truth(write_nifti(relabelled, scan.affine), scan)


@pytest.mark.parametrize("axcodes", ["LPS", "SAR", "IPL"])
def test_the_same_grid_stored_in_another_orientation_is_reoriented_exactly(ras_phantom, write_nifti, axcodes):
    scan, labels = ras_phantom
    stored_scan, stored = make_phantom(shape=(48, 40, 32), spacing=(8.0, 8.0, 10.0), seed=1, lesions=2, axcodes=axcodes)
    assert stored.shape != labels.shape or not np.array_equal(stored, labels)
    truth = load_ground_truth(write_nifti(stored, stored_scan.affine), scan)
    np.testing.assert_array_equal(truth.labels, labels)
    assert len(truth.warnings) == 1 and "voxel for voxel (exact" in truth.warnings[0]


def test_a_coarser_grid_is_resampled_onto_the_scan_with_a_warning(ras_phantom, write_nifti):
    scan, labels = ras_phantom
    coarse_affine = scan.affine @ np.diag([2.0, 2.0, 2.0, 1.0])  # coarse voxel i sits on fine voxel 2i
    truth = load_ground_truth(write_nifti(labels[::2, ::2, ::2], coarse_affine), scan)
    assert truth.labels.shape == scan.shape
    assert dice(truth.labels > 0, labels > 0) > 0.9
    assert np.array_equal(truth.labels[::2, ::2, ::2], labels[::2, ::2, ::2])  # shared voxel centres keep their label
    assert any("resampled" in warning for warning in truth.warnings)


def test_a_reference_half_outside_the_scan_warns_about_the_lost_volume(ras_phantom, write_nifti):
    scan, labels = ras_phantom
    shifted = scan.affine.copy()
    shifted[0, 3] += 0.5 * 48 * 8.0  # half the field of view to the right
    truth = load_ground_truth(write_nifti(labels, shifted), scan)
    assert any("mL in the file" in warning for warning in truth.warnings)
    assert truth.labels.any()


def test_a_reference_that_does_not_overlap_the_scan_is_refused(ras_phantom, write_nifti):
    scan, labels = ras_phantom
    far = scan.affine.copy()
    far[2, 3] += 1000.0  # a metre above the scan
    with pytest.raises(LiverSegError, match="does not overlap the scan"):
        load_ground_truth(write_nifti(labels, far), scan)


def test_a_bare_grid_stands_in_for_a_scan(ras_phantom, write_nifti):
    scan, labels = ras_phantom
    truth = load_ground_truth(write_nifti(labels, scan.affine), LabelGrid(scan.shape, scan.affine))
    assert np.count_nonzero(truth.labels == LESION) == np.count_nonzero(labels == LESION)


def test_a_reference_covering_part_of_the_scan_warns_with_its_share_and_is_scored_on_that_part(ras_phantom, write_nifti):
    """Issue 22, finding 7: a cropped reference halved Dice with only a note that it was "mapped voxel for voxel"."""
    from core import pipeline
    from core.scan import Scan

    scan, labels = ras_phantom
    box = (slice(4, 40), slice(4, 36), slice(6, 26))  # 36x32x20 of the 48x40x32 scan: 37.5%
    cropped = Scan(labels, scan.affine).crop(box)
    truth = load_ground_truth(write_nifti(np.ascontiguousarray(cropped.voxels), cropped.affine), scan)
    assert truth.covered_share == pytest.approx(36 * 32 * 20 / (48 * 40 * 32))
    assert any("covers only 38% of the scan" in warning and "measured on that part only" in warning for warning in truth.warnings)
    scores = pipeline.score(labels, scan.spacing, truth)  # the full, correct labels: outside the reference is not counted
    assert scores["liver"]["dice"] == pytest.approx(1.0)
    assert scores["notes"][0] == "measured on the 38% of the scan that the reference covers, not on the whole scan"


def test_a_reference_covering_the_whole_scan_has_no_coverage_mask(ras_phantom, write_nifti):
    scan, labels = ras_phantom
    truth = load_ground_truth(write_nifti(labels[::-1], scan.affine @ np.diag([-1, 1, 1, 1]) + np.array(
        [[0, 0, 0, (labels.shape[0] - 1) * 8.0], [0] * 4, [0] * 4, [0] * 4])), scan)
    assert truth.covered is None and truth.covered_share == 1.0
