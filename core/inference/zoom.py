"""``zoom``: the resampling the pretrained networks were trained with (centred grids, separable, per axis).

Along each axis with ``n`` voxels and zoom factor ``f`` the output has ``ceil(n * f)``
voxels whose grid is centred on the input's. Enlarging interpolates linearly between
the two nearest input voxels (beyond the edge: 0); shrinking averages each
output voxel over the input voxels it overlaps, weighted by the overlap, so a thin
structure keeps its mass. Each axis is one matrix product.
"""

from __future__ import annotations

import math

import numpy as np


def _weights(n: int, factor: float) -> np.ndarray:
    """The (ceil(n * factor), n) matrix that resamples one axis."""
    size = math.ceil(n * factor)
    matrix = np.zeros((size, n), np.float32)
    if factor > 1:
        centres = (np.arange(size) - 0.5 * size + 0.5) / factor + 0.5 * n - 0.5
        left = np.floor(centres).astype(int)
        for offset, weight in ((0, left + 1 - centres), (1, centres - left)):
            index = left + offset
            inside = (index >= 0) & (index < n)
            matrix[np.arange(size)[inside], index[inside]] = weight[inside]
        return matrix
    lower = factor * (np.arange(n) - 0.5 * n) + 0.5 * size
    upper = factor * (np.arange(n) + 1 - 0.5 * n) + 0.5 * size
    first = np.floor(lower).astype(int)
    last = np.ceil(upper).astype(int) - 1
    one_bin = first == last
    matrix[first[one_bin], np.arange(n)[one_bin]] = factor
    split = ~one_bin
    boundary = np.ceil(lower[split])
    matrix[first[split], np.arange(n)[split]] += boundary - lower[split]
    matrix[last[split], np.arange(n)[split]] += upper[split] - boundary
    return matrix


def zoom(volume: np.ndarray, factors) -> np.ndarray:
    """``volume`` (3D) resampled by ``factors`` (one per axis; 1 leaves an axis as it is), float32."""
    out = np.asarray(volume, np.float32)
    for axis, factor in enumerate(factors):
        factor = float(factor)
        if factor == 1:
            continue
        # tensordot makes one BLAS product of the whole volume (matmul on a moved axis
        # loops over non-contiguous stacks: 3-6x slower, the same sums).
        out = np.moveaxis(np.tensordot(_weights(out.shape[axis], factor), out, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(out)
