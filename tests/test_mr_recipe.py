"""The pretrained pair's MR recipe (``benchmarks/mr_recipe.py``) on synthetic MR-like volumes."""

from __future__ import annotations

import numpy as np

from benchmarks.mr_recipe import mr_abdomen_box, scaled_for_liver


def mr_torso(shape=(100, 80, 160), body_width: float = 70) -> np.ndarray:
    """An LPS-ordered MR-like torso: no signal outside, fat-like signal in an elliptic body, a bright organ."""
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((x - shape[0] / 2) / (body_width / 2)) ** 2 + ((y - shape[1] / 2) / 28) ** 2 <= 1
    volume = np.zeros(shape, np.float32)
    volume[np.broadcast_to(body, shape)] = 300
    volume[shape[0] // 2 - 25 : shape[0] // 2 - 5, 30:50, :] = 700  # on the patient's right (low x in LPS)
    return volume


def test_the_crop_keeps_the_body_and_the_top_408_mm():
    volume = mr_torso()
    x, y, z = mr_abdomen_box(volume, (3.0, 3.0, 3.0))
    body_x = np.flatnonzero(volume.any(axis=(1, 2)))
    body_y = np.flatnonzero(volume.any(axis=(0, 2)))
    assert body_x[0] <= x.start <= body_x[0] + 3 and body_x[-1] - 3 <= x.stop <= body_x[-1] + 1  # eroded by 2 voxels
    assert body_y[0] - 3 <= y.start and y.stop <= body_y[-1] + 1
    # 400 mm of liver height and 30 mm above: 143 slices from the top, then cut from below to 408 mm (136 slices)
    assert z == slice(160 - 136, 160)


def test_a_wide_body_is_cut_equally_on_both_sides_to_the_trained_width():
    volume = mr_torso(shape=(200, 80, 20), body_width=180)
    x, _, _ = mr_abdomen_box(volume, (3.0, 3.0, 3.0))
    body_x = np.flatnonzero(volume.any(axis=(1, 2)))
    assert (x.stop - x.start) * 3.0 <= 489
    assert abs((x.start - body_x[0]) - (body_x[-1] + 1 - x.stop)) <= 1


def test_the_liver_network_sees_the_lower_80_percent_of_the_range():
    image = np.array([10.0, 50.0, 90.0, 100.0, 110.0], np.float32)  # range 100: the lower 80 % is 10..90
    np.testing.assert_allclose(scaled_for_liver(image), [-0.5, 0.0, 0.5, 0.5, 0.5])
    assert (scaled_for_liver(np.full((3, 3), 7.0)) == -0.5).all()  # a flat volume has no range to scale

