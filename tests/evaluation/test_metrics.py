"""core.evaluation.metrics: analytic shapes with known answers, the edge-case table, and SimpleITK as an independent check."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from core.evaluation import metrics
from core.evaluation.metrics import DETECTION_KEYS, STRUCTURE_KEYS, evaluate, lesion_detection, structure_metrics

ANISOTROPIC = (0.7, 0.7, 3.0)


def box(shape=(30, 30, 20), low=(10, 10, 5), high=(20, 20, 15)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(low, high))] = True
    return mask


def blobs(seed: int, shape=(40, 44, 16)) -> np.ndarray:
    """Irregular multi-component masks: smoothed noise above a threshold, clear of the array's edge."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 2.5)
    return _clear_edges(field > np.percentile(field, 80))


def _clear_edges(mask: np.ndarray) -> np.ndarray:
    """Keep masks off the array's edge, where ITK's and MedPy's surface conventions might differ."""
    mask[[0, -1]], mask[:, [0, -1]], mask[:, :, [0, -1]] = False, False, False
    return mask


# --- overlap and volume: boxes with known counts ---------------------------------------------


def test_overlap_of_shifted_boxes_matches_the_counts():
    reference, prediction = box(), box(low=(12, 10, 5), high=(22, 20, 15))  # 800 shared of 1000 each
    assert metrics.dice(prediction, reference) == pytest.approx(0.8)
    assert metrics.jaccard(prediction, reference) == pytest.approx(800 / 1200)
    assert metrics.sensitivity(prediction, reference) == pytest.approx(0.8)
    assert metrics.precision(prediction, reference) == pytest.approx(0.8)
    assert metrics.specificity(prediction, reference) == pytest.approx(1 - 200 / (reference.size - 1000))


def test_volume_difference_is_signed_and_in_millilitres():
    reference, prediction = box(), box(high=(20, 20, 17))  # 1200 voxels against 1000
    voxel_mm3 = 0.7 * 0.7 * 3.0
    assert metrics.volume_difference_ml(prediction, reference, ANISOTROPIC) == pytest.approx(200 * voxel_mm3 / 1000)
    assert metrics.volume_difference_ml(reference, prediction, ANISOTROPIC) == pytest.approx(-200 * voxel_mm3 / 1000)
    assert metrics.volume_difference_pct(prediction, reference) == pytest.approx(20.0)


# --- distances: exact cases ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "expected_mm"),
    [((5, 5, 8), 3 * 3.0), ((8, 9, 5), math.hypot(3 * 0.7, 4 * 0.7)), ((5, 5, 5), 0.0)],
    ids=["along-slices", "in-plane", "same-voxel"],
)
def test_single_voxels_are_their_own_surfaces_and_spacing_applies_per_axis(other, expected_mm):
    prediction, reference = np.zeros((12, 12, 12), bool), np.zeros((12, 12, 12), bool)
    prediction[5, 5, 5], reference[other] = True, True
    for function in (metrics.hausdorff_mm, metrics.hausdorff95_mm, metrics.assd_mm):
        assert function(prediction, reference, ANISOTROPIC) == pytest.approx(expected_mm)


@pytest.mark.parametrize(("axis", "step_mm"), [(0, 0.7), (1, 0.7), (2, 3.0)])
def test_hausdorff_of_a_box_shifted_by_two_voxels_is_two_voxel_sizes(axis, step_mm):
    reference = box()
    prediction = np.roll(reference, 2, axis=axis)
    assert metrics.hausdorff_mm(prediction, reference, ANISOTROPIC) == pytest.approx(2 * step_mm)


def test_voxels_on_the_array_edge_are_surface_and_the_distances_pool_as_medpy_does():
    # A full 3x3x3 block: every voxel but the centre touches the outside. The reference is the centre.
    prediction, reference = np.ones((3, 3, 3), bool), np.zeros((3, 3, 3), bool)
    reference[1, 1, 1] = True
    to_centre = [1.0] * 6 + [math.sqrt(2)] * 12 + [math.sqrt(3)] * 8  # faces, edges, corners
    pooled = to_centre + [1.0]  # the centre's nearest surface voxel of the block
    result = structure_metrics(prediction, reference, (1.0, 1.0, 1.0))
    assert result["hd_mm"] == pytest.approx(math.sqrt(3))
    assert result["hd95_mm"] == pytest.approx(np.percentile(pooled, 95))
    assert result["assd_mm"] == pytest.approx((np.mean(to_centre) + 1.0) / 2)


def test_concentric_spheres_are_their_radius_difference_apart():
    spacing = (0.5, 0.5, 0.5)
    x, y, z = np.meshgrid(*[np.arange(60) * 0.5 - 15] * 3, indexing="ij")
    radius = np.sqrt(x**2 + y**2 + z**2)
    result = structure_metrics(radius <= 8.0, radius <= 11.0, spacing)
    assert result["hd_mm"] == pytest.approx(3.0, abs=0.5)  # within a voxel of the analytic 3 mm
    assert result["assd_mm"] == pytest.approx(3.0, abs=0.5)
    assert result["volume_diff_ml"] == pytest.approx(4 / 3 * math.pi * (8**3 - 11**3) / 1000, rel=0.03)


# --- edge cases: the module docstring's table --------------------------------------------------


def _empty():
    return np.zeros((10, 10, 10), bool)


def _cube():
    mask = _empty()
    mask[3:6, 3:6, 3:6] = True  # 27 voxels
    return mask


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        (_empty(), _cube(), {"dice": 0.0, "jaccard": 0.0, "sensitivity": 0.0, "specificity": 1.0, "precision": None,
                             "hd_mm": None, "hd95_mm": None, "assd_mm": None, "volume_diff_ml": -0.027, "volume_diff_pct": -100.0}),
        (_cube(), _empty(), {"dice": 0.0, "jaccard": 0.0, "sensitivity": None, "specificity": 1 - 27 / 1000, "precision": 0.0,
                             "hd_mm": None, "hd95_mm": None, "assd_mm": None, "volume_diff_ml": 0.027, "volume_diff_pct": None}),
        (_empty(), _empty(), {"dice": 1.0, "jaccard": 1.0, "sensitivity": None, "specificity": 1.0, "precision": None,
                              "hd_mm": 0.0, "hd95_mm": 0.0, "assd_mm": 0.0, "volume_diff_ml": 0.0, "volume_diff_pct": None}),
    ],
    ids=["empty-prediction", "empty-reference", "both-empty"],
)
def test_edge_cases_follow_the_documented_table(prediction, reference, expected):
    result = structure_metrics(prediction, reference, (1.0, 1.0, 1.0))
    assert list(result) == list(STRUCTURE_KEYS)
    assert result == pytest.approx(expected)
    assert metrics.dice(prediction, reference) == expected["dice"]
    assert metrics.hausdorff_mm(prediction, reference, (1.0, 1.0, 1.0)) == expected["hd_mm"]


def test_specificity_is_undefined_when_the_reference_fills_the_array():
    full = np.ones((4, 4, 4), bool)
    assert metrics.specificity(full, full) is None


def test_masks_must_be_boolean_and_on_one_grid():
    with pytest.raises(TypeError):
        metrics.dice(np.ones((3, 3, 3), np.uint8), np.ones((3, 3, 3), bool))
    with pytest.raises(ValueError, match="one grid"):
        metrics.dice(np.ones((3, 3, 3), bool), np.ones((3, 3, 4), bool))


# --- an independent implementation: SimpleITK ---------------------------------------------------


def _image(mask: np.ndarray, spacing) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))  # SimpleITK indexes (x, y, z) = array[z, y, x]
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    return image


def _sitk_surface_distances(prediction, reference, spacing):
    """Directed surface distances with ITK's face-connected contours and Maurer distance maps."""
    contours = [sitk.LabelContour(_image(mask, spacing), fullyConnected=False) for mask in (prediction, reference)]
    maps = [sitk.GetArrayFromImage(sitk.Abs(sitk.SignedMaurerDistanceMap(c, squaredDistance=False, useImageSpacing=True))) for c in contours]
    surfaces = [sitk.GetArrayFromImage(c).astype(bool) for c in contours]
    return maps[1][surfaces[0]], maps[0][surfaces[1]], contours


def _near_miss(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A prediction that is the reference grown in-plane and shifted by a slice: a realistic small error."""
    reference = blobs(seed)
    grown = ndimage.binary_dilation(reference, np.ones((3, 3, 1), bool))
    return _clear_edges(np.roll(grown, 1, axis=2)), reference


@pytest.mark.parametrize(
    "pair", [lambda: (blobs(1), blobs(2)), lambda: (blobs(3), blobs(4)), lambda: _near_miss(5)], ids=["unrelated", "unrelated2", "near-miss"]
)
def test_agrees_with_simpleitk_overlap_and_distance_filters(pair):
    prediction, reference = pair()
    ours = structure_metrics(prediction, reference, ANISOTROPIC)

    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(_image(prediction, ANISOTROPIC), _image(reference, ANISOTROPIC))  # ITK's source, then target
    assert ours["dice"] == pytest.approx(overlap.GetDiceCoefficient())
    assert ours["jaccard"] == pytest.approx(overlap.GetJaccardCoefficient())
    assert ours["sensitivity"] == pytest.approx(1 - overlap.GetFalseNegativeError())
    assert ours["precision"] == pytest.approx(1 - overlap.GetFalseDiscoveryRate())
    assert ours["specificity"] == pytest.approx(1 - overlap.GetFalsePositiveError())  # ITK's FPE is FP / negatives
    shapes = sitk.LabelShapeStatisticsImageFilter()
    volumes = []
    for mask in (prediction, reference):
        shapes.Execute(_image(mask, ANISOTROPIC))
        volumes.append(shapes.GetPhysicalSize(1) / 1000)
    assert ours["volume_diff_ml"] == pytest.approx(volumes[0] - volumes[1])

    to_reference, to_prediction, contours = _sitk_surface_distances(prediction, reference, ANISOTROPIC)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(*contours)
    assert ours["hd_mm"] == pytest.approx(hausdorff.GetHausdorffDistance(), abs=1e-4)
    assert ours["hd95_mm"] == pytest.approx(np.percentile(np.concatenate([to_reference, to_prediction]), 95), abs=1e-4)
    assert ours["assd_mm"] == pytest.approx((to_reference.mean() + to_prediction.mean()) / 2, abs=1e-4)


# --- lesion-wise detection ----------------------------------------------------------------------


def test_lesion_detection_counts_found_split_missed_and_false_lesions():
    reference, prediction = np.zeros((40, 40, 20), bool), np.zeros((40, 40, 20), bool)
    reference[2:8, 2:8, 2:8] = True  # found in two pieces: one detection
    prediction[2:4, 2:8, 2:8] = prediction[6:8, 2:8, 2:8] = True
    reference[20:24, 20:24, 2:6] = True  # missed
    reference[30:34, 2:6, 2:6] = True  # touched by a single predicted voxel: detected
    prediction[33, 5, 5] = True
    prediction[10:12, 30:32, 10:12] = True  # false positive
    prediction[12, 32, 12] = True  # meets the false positive only at a corner: the same (26-connected) lesion
    result = lesion_detection(prediction, reference)
    assert result == pytest.approx(
        {"reference_lesions": 3, "predicted_lesions": 4, "true_positives": 2, "confirmed": 3, "false_positives": 1, "missed": 1,
         "recall": 2 / 3, "precision": 3 / 4, "f1": 2 * (2 / 3) * (3 / 4) / (2 / 3 + 3 / 4)}
    )


@pytest.mark.parametrize(
    ("predicted", "referenced", "expected"),
    [(False, False, {"recall": None, "precision": None, "f1": 1.0}),
     (True, False, {"recall": None, "precision": 0.0, "f1": 0.0}),
     (False, True, {"recall": 0.0, "precision": None, "f1": 0.0})],
    ids=["none", "only-predicted", "only-referenced"],
)
def test_lesion_detection_edge_cases(predicted, referenced, expected):
    prediction, reference = _cube() if predicted else _empty(), _cube() if referenced else _empty()
    result = lesion_detection(prediction, reference)
    assert {key: result[key] for key in expected} == expected


# --- evaluate: the JSON contract ------------------------------------------------------------------


def test_evaluate_scores_liver_as_labels_one_and_two_together(phantom):
    scan, labels = phantom
    everything_liver = np.where(labels > 0, 1, 0).astype(np.uint8)
    result = evaluate(everything_liver, labels, scan.spacing)
    assert list(result) == ["liver", "lesion", "lesion_detection", "notes"]
    assert list(result["liver"]) == list(STRUCTURE_KEYS) and list(result["lesion_detection"]) == list(DETECTION_KEYS)
    assert result["liver"]["dice"] == 1.0 and result["liver"]["hd_mm"] == 0.0
    assert result["lesion"]["sensitivity"] == 0.0 and result["lesion"]["precision"] is None
    assert result["lesion_detection"]["missed"] == result["lesion_detection"]["reference_lesions"] == 3
    json.dumps(result, allow_nan=False)  # plain JSON: no NaN, no numpy types


def test_evaluate_reports_lesions_as_not_available_for_a_liver_only_reference(phantom):
    scan, labels = phantom
    result = evaluate(labels, (labels > 0).astype(np.uint8), scan.spacing, liver_only=True)
    assert result["liver"]["dice"] == 1.0
    assert set(result["lesion"].values()) == {None} and set(result["lesion_detection"].values()) == {None}
    assert list(result["lesion"]) == list(STRUCTURE_KEYS)
    assert any("not available" in note for note in result["notes"])
