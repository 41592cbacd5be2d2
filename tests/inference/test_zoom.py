"""``zoom``: the centred resampling the pretrained networks were trained with; ``linear_zoom_of_box``: scipy's way back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from core.inference.zoom import linear_zoom_of_box, reach, zoom, zoomed_shape


def _reference_1d(values: np.ndarray, factor: float) -> np.ndarray:
    """The definition, voxel by voxel: centred grids; linear when enlarging, overlap-weighted average when shrinking."""
    n, size = len(values), math.ceil(len(values) * factor)
    out = np.zeros(size)
    if factor > 1:
        for i in range(size):
            centre = (i - 0.5 * size + 0.5) / factor + 0.5 * n - 0.5
            left = math.floor(centre)
            for index, weight in ((left, left + 1 - centre), (left + 1, centre - left)):
                if 0 <= index < n:
                    out[i] += values[index] * weight
        return out
    for j in range(n):  # each input voxel spreads over the output voxels it overlaps
        low, high = factor * (j - 0.5 * n) + 0.5 * size, factor * (j + 1 - 0.5 * n) + 0.5 * size
        for i in range(math.floor(low), math.ceil(high)):
            out[i] += values[j] * (min(high, i + 1) - max(low, i))
    return out


@pytest.mark.parametrize("factor", [0.38, 0.5, 0.57 / 1.0, 1.6 / 3.0, 2.1, 3.0])
def test_each_axis_follows_the_definition(factor):
    values = np.random.default_rng(0).normal(size=23)
    volume = np.broadcast_to(values[:, None, None], (23, 2, 3))
    assert np.allclose(zoom(volume, (factor, 1, 1))[:, 1, 2], _reference_1d(values, factor), atol=1e-5)


def test_shrinking_by_a_whole_factor_averages_blocks():
    volume = np.arange(4 * 4 * 2, dtype=np.float32).reshape(4, 4, 2)
    assert np.allclose(zoom(volume, (0.5, 0.5, 0.5)), volume.reshape(2, 2, 2, 2, 1, 2).mean(axis=(1, 3, 5)))


def test_sizes_round_up_and_unit_factors_leave_an_axis():
    out = zoom(np.ones((10, 7, 5)), (0.57 / 1.5, 1, 2.5))
    assert out.shape == (4, 7, 13)
    assert out.dtype == np.float32


@pytest.mark.parametrize("factors", [(0.57, 0.57, 0.83), (1.6, 1.0, 2.5)])
def test_a_box_of_the_output_is_that_part_of_the_whole_zoom(factors):
    volume = np.random.default_rng(1).normal(size=(31, 27, 19))
    whole = zoom(volume, factors)
    assert whole.shape == zoomed_shape(volume.shape, factors)
    box = tuple(slice(n // 4, n - n // 3) for n in whole.shape)
    np.testing.assert_allclose(zoom(volume, factors, box), whole[box], atol=1e-5)


def test_reach_holds_every_output_voxel_an_input_box_touches():
    factors, shape, box = (0.57, 1.6, 1.0), (31, 27, 19), (slice(5, 9), slice(26, 27), slice(0, 3))
    volume = np.zeros(shape)
    volume[box] = 1
    touched = zoom(volume, factors) > 0  # every weight is positive: touched is exactly where the box reaches
    assert reach(box, shape, factors) == ndimage.find_objects(touched.view(np.uint8))[0]


@pytest.mark.parametrize(("full_shape", "out_shape", "box"), [
    ((29, 29, 12), (51, 51, 22), (slice(4, 24), slice(6, 22), slice(1, 11))),  # enlarged, as the lesion map goes back
    ((10, 8, 7), (50, 40, 13), (slice(0, 10), slice(3, 4), slice(6, 7))),  # a box at the far edge, one voxel thick
])
def test_the_zoom_of_a_box_is_scipys_zoom_of_the_whole(full_shape, out_shape, box):
    rng = np.random.default_rng(0)
    full = np.zeros(full_shape)
    full[box] = rng.random(full[box].shape) * (rng.random(full[box].shape) > 0.5)
    part, region = linear_zoom_of_box(full[box], box, full_shape, out_shape)
    mine = np.zeros(out_shape)
    mine[region] = part
    expected = ndimage.zoom(full, np.array(out_shape) / full_shape, order=1, prefilter=False)
    assert expected.shape == out_shape
    np.testing.assert_allclose(mine, expected, rtol=0, atol=1e-12)
    assert expected[region].sum() == pytest.approx(expected.sum())  # nothing outside the region
