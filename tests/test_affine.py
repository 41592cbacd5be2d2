"""Spacing and voxel volume from an affine: axis-aligned, oblique and flipped grids."""

import nibabel as nib
import numpy as np
import pytest

from core.affine import MM3_PER_ML, spacing_mm, voxel_volume_ml
from core.scan import Scan
from core.viewing.slices import DisplayVolume


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """Rodrigues' rotation matrix about ``axis``."""
    x, y, z = np.asarray(axis, float) / np.linalg.norm(axis)
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _affine(matrix: np.ndarray, origin=(10.0, -20.0, 30.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = matrix, origin
    return affine


def test_axis_aligned_grid():
    affine = _affine(np.diag([0.7, 0.8, 2.5]))
    assert spacing_mm(affine) == (0.7, 0.8, 2.5)
    assert voxel_volume_ml(affine) == pytest.approx(0.7 * 0.8 * 2.5 / 1000)
    assert all(type(s) is float for s in spacing_mm(affine))
    assert type(voxel_volume_ml(affine)) is float


def test_oblique_grid_keeps_its_voxel_size():
    # Columns are the steps along i, j, k: rotating them in space changes no length.
    matrix = _rotation(np.array([1.0, 2.0, 0.5]), 23.0) @ np.diag([0.6, 0.9, 3.0])
    affine = _affine(matrix)
    assert spacing_mm(affine) == pytest.approx((0.6, 0.9, 3.0))
    assert voxel_volume_ml(affine) == pytest.approx(0.6 * 0.9 * 3.0 / MM3_PER_ML)
    assert voxel_volume_ml(affine) == pytest.approx(abs(np.linalg.det(matrix)) / 1000)


@pytest.mark.parametrize("flips", [(-1, 1, 1), (1, -1, 1), (-1, -1, 1), (1, 1, -1)])
def test_flipped_axes_give_positive_sizes(flips):
    # LPS-stored DICOM (x and y flipped) and a reversed slice order are the common cases.
    affine = _affine(np.diag(np.multiply(flips, (0.75, 0.75, 5.0))))
    assert spacing_mm(affine) == (0.75, 0.75, 5.0)
    assert voxel_volume_ml(affine) == pytest.approx(0.75 * 0.75 * 5.0 / 1000)
    assert voxel_volume_ml(affine) > 0


def test_permuted_axes_follow_the_array():
    # Array axis i runs along S, j along R, k along A: spacing is per array axis, not per RAS axis.
    matrix = np.array([[0.0, 0.8, 0.0], [0.0, 0.0, 0.9], [2.0, 0.0, 0.0]])
    assert spacing_mm(_affine(matrix)) == (2.0, 0.8, 0.9)


def test_scan_and_display_volume_use_it():
    matrix = _rotation(np.array([0.0, 0.0, 1.0]), 30.0) @ np.diag([-0.7, 0.8, 2.5])
    affine = _affine(matrix)
    scan = Scan(np.zeros((4, 5, 6), np.float32), affine)
    assert scan.spacing == spacing_mm(affine)
    assert scan.voxel_volume_ml == voxel_volume_ml(affine)
    volume = DisplayVolume.from_scan(scan, np.zeros(scan.shape, np.uint8))
    # The display volume is the scan turned to the closest canonical order: same voxel sizes, reordered.
    order = nib.io_orientation(affine)[:, 0].astype(int)
    assert sorted(volume.spacing) == pytest.approx(sorted(scan.spacing))
    assert volume.spacing == spacing_mm(volume.affine)
    assert all(volume.spacing[int(target)] == pytest.approx(scan.spacing[axis]) for axis, target in enumerate(order))
