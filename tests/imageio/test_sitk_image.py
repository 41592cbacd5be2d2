"""ITK's filters on the project's arrays: the same values as the scipy filters they replace."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from core.imageio.sitk_image import median_3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_3_is_scipys_median_filter_edges_included(dtype):
    rng = np.random.default_rng(0)
    array = rng.normal(size=(9, 7, 5)).astype(dtype) * 100
    array[0] = 3.0  # ties along a face
    filtered = median_3(array)
    assert filtered.dtype == dtype and filtered.shape == array.shape
    np.testing.assert_array_equal(filtered, ndimage.median_filter(array, size=3))
