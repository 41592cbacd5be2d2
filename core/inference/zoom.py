"""``zoom``: the resampling the pretrained networks were trained with (centred grids, separable, per axis);
``linear_zoom_of_box``: scipy's linear zoom, by which the recipe takes its masks back, on a box only.

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


def zoomed_shape(shape, factors) -> tuple[int, ...]:
    """The shape ``zoom`` gives ``shape`` by ``factors``."""
    return tuple(math.ceil(n * float(f)) for n, f in zip(shape, factors))


def reach(box: tuple[slice, ...], shape, factors) -> tuple[slice, ...]:
    """The output voxels of ``zoom`` (``shape`` by ``factors``) that input voxels in ``box`` contribute to."""
    region = []
    for part, n, factor in zip(box, shape, factors):
        rows = np.flatnonzero(_weights(int(n), float(factor))[:, part].any(axis=1))
        region.append(slice(int(rows[0]), int(rows[-1]) + 1) if len(rows) else slice(0, 0))
    return tuple(region)


def zoom(volume: np.ndarray, factors, box: tuple[slice, ...] | None = None) -> np.ndarray:
    """``volume`` (3D) resampled by ``factors`` (one per axis; 1 leaves an axis as it is), float32;
    with ``box`` (slices of the output), only that part, computed from the input voxels it needs."""
    out = np.asarray(volume, np.float32)
    for axis, factor in enumerate(factors):
        rows = slice(None) if box is None else box[axis]
        at = (slice(None),) * axis
        factor = float(factor)
        if factor == 1:
            out = out[(*at, rows)]
            continue
        matrix = _weights(out.shape[axis], factor)[rows]
        used = np.flatnonzero(matrix.any(axis=0))
        columns = slice(int(used[0]), int(used[-1]) + 1) if len(used) else slice(0, 0)
        # tensordot makes one BLAS product of the whole volume (matmul on a moved axis
        # loops over non-contiguous stacks: 3-6x slower, the same sums).
        out = np.moveaxis(np.tensordot(matrix[:, columns], out[(*at, columns)], axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(out)


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) matrix of ``ndimage.zoom(..., order=1, prefilter=False)`` along one axis: output
    voxel ``i`` at input coordinate ``i * (n_in - 1) / (n_out - 1)``, between its two neighbours."""
    matrix = np.zeros((n_out, n_in))
    step = (n_in - 1) / (n_out - 1) if n_out > 1 else 1.0
    coordinates = np.arange(n_out) * step
    left = np.floor(coordinates).astype(int)
    fraction = coordinates - left
    matrix[np.arange(n_out), left] = 1 - fraction
    right = np.minimum(left + 1, n_in - 1)
    matrix[np.arange(n_out), right] += np.where(left + 1 < n_in, fraction, 0)
    return matrix


def linear_zoom_of_box(values: np.ndarray, box: tuple[slice, ...], full_shape, out_shape) -> tuple[np.ndarray, tuple[slice, ...]]:
    """What ``ndimage.zoom(full, out_shape / full_shape, order=1, prefilter=False)`` gives, where ``full``
    is zero but for ``values`` at ``box``: its part that can be non-zero, and where that part lies.

    The recipe takes its masks back to the scan's voxels this way; computing only the output voxels
    whose neighbours reach the box (a few percent of a scan) saves the rest. Per axis one matrix
    product with scipy's coordinates and weights, in float64 as scipy computes them.
    """
    out = np.asarray(values, np.float64)
    region = []
    for axis, (part, n_in, n_out) in enumerate(zip(box, full_shape, out_shape)):
        matrix = _linear_weights(int(n_in), int(n_out))[:, part]
        rows = np.flatnonzero((matrix > 0).any(axis=1))
        if len(rows) == 0:
            return np.zeros((0, 0, 0)), (slice(0, 0),) * 3
        rows = slice(int(rows[0]), int(rows[-1]) + 1)
        out = np.moveaxis(np.tensordot(matrix[rows], out, axes=([1], [axis])), 0, axis)
        region.append(rows)
    return out, tuple(region)
