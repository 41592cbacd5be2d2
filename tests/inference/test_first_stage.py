"""FirstStageRegion: the cascade's first stage decides where the second may find liver."""

from __future__ import annotations

import numpy as np

from core.inference.first_stage import FirstStageRegion
from core.scan import Scan
from core.segmentation import BACKGROUND, LESION, LIVER


def probabilities_with(mask: np.ndarray) -> np.ndarray:
    """One-hot class probabilities: liver where ``mask`` is set."""
    probabilities = np.zeros((3, *mask.shape), np.float32)
    probabilities[LIVER] = mask
    probabilities[BACKGROUND] = 1 - probabilities[LIVER]
    return probabilities


def coarse_grid(spacing: float = 5.0) -> np.ndarray:
    return np.diag([spacing, spacing, spacing, 1.0])


def test_the_region_is_the_largest_liver_widened_by_the_margin_in_mm():
    liver = np.zeros((30, 30, 30), bool)
    liver[10:20, 10:20, 10:20] = True  # the liver
    liver[25:27, 25:27, 25:27] = True  # a smaller false find, apart from it
    region = FirstStageRegion.from_probabilities(probabilities_with(liver), coarse_grid(), margin_mm=10.0)
    assert region.liver_ml == 1000 * 125 / 1000  # 10^3 voxels of 125 uL; the false find is not counted
    assert not region.mask[26, 26, 26]
    assert region.mask[8, 15, 15] and not region.mask[7, 15, 15]  # 10 mm = 2 voxels of 5 mm, not 3


def test_liver_and_lesion_together_make_the_organ():
    probabilities = np.zeros((3, 10, 10, 10), np.float32)
    probabilities[BACKGROUND] = 1
    probabilities[:, 4:6, 4:6, 4:6] = [[[[0.2]]], [[[0.4]]], [[[0.4]]]]  # neither class alone above a half
    region = FirstStageRegion.from_probabilities(probabilities, coarse_grid(), margin_mm=0.0)
    assert region is not None and region.mask.sum() == 8
    assert FirstStageRegion.from_probabilities(probabilities_with(np.zeros((5, 5, 5), bool)), coarse_grid(), 5.0) is None


def test_crop_covers_the_region_on_the_scans_own_grid():
    liver = np.zeros((20, 20, 20), bool)
    liver[5:10, 6:12, 8:10] = True
    region = FirstStageRegion.from_probabilities(probabilities_with(liver), coarse_grid(), margin_mm=0.0)
    scan = Scan(np.zeros((100, 100, 100), np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))  # 1 mm voxels, same origin
    crop = scan.crop(scan.box_around(region.mask, region.affine))
    start = crop.affine[:3, 3]
    # Voxel 5 of 5 mm is centred at 25 mm; one coarse voxel of margin (interpolation) and one scan voxel more.
    assert np.all(start <= [25 - 5, 30 - 5, 40 - 5]) and np.all(start >= [25 - 5 - 2, 30 - 5 - 2, 40 - 5 - 2])
    stop = start + crop.shape
    assert np.all(stop >= [45 + 5, 55 + 5, 45 + 5]) and np.all(stop <= [45 + 5 + 3, 55 + 5 + 3, 45 + 5 + 3])
    np.testing.assert_array_equal(region.crop(scan).affine, crop.affine)


def test_confine_makes_everything_outside_the_region_background():
    liver = np.zeros((20, 20, 20), bool)
    liver[5:10, 5:10, 5:10] = True
    region = FirstStageRegion.from_probabilities(probabilities_with(liver), coarse_grid(), margin_mm=0.0)
    fine = np.full((3, 50, 50, 50), 1 / 3, np.float32)  # 2 mm grid over the same space
    fine_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    region.confine(fine, fine_affine)
    inside, outside = (15, 15, 15), (40, 40, 40)  # 30 mm: in the liver; 80 mm: far from it
    assert np.allclose(fine[:, inside[0], inside[1], inside[2]], 1 / 3)
    assert list(fine[:, outside[0], outside[1], outside[2]]) == [1.0, 0.0, 0.0]
    assert np.allclose(fine.sum(axis=0), 1.0) and fine[LESION].max() > 0
