"""``abdomen_box``: the part of a CT the pretrained liver network was trained to look at.

The liver network was trained on abdomens cropped by a fixed recipe (Tang et al. 2020),
so it is shown the same crop: the body (the largest region above -150 HU), from 20 mm
below the pelvis' upper edge to 70 mm above the liver's dome, at most 489 x 408 x 408 mm.
The dome is found from the air in the lungs, the pelvis from the bone profile along the
body's axis. The array is in LPS order (x towards the patient's left, y posterior,
z towards the head), as the recipe defines it; where a heuristic finds nothing (no
lungs in view, no pelvis), the crop keeps the scan's whole extent on that side.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.signal import argrelextrema

TISSUE_HU, LUNG_HU, BONE_HU = -150, -600, 500
MAX_SIZE_MM = (489.0, 408.0, 408.0)
LIVER_HEIGHT_MAX_MM = 400.0
DOME_MARGIN_MM, HIP_MARGIN_MM = 70.0, 20.0
HIP_BONE_RATIO = 0.7


def _eroded_by_cross(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_erosion(mask)`` (6-neighbour cross, outside false), by shifted ANDs: 10x faster."""
    out = mask.copy()
    for axis in range(3):
        head = [slice(None)] * 3
        tail = [slice(None)] * 3
        head[axis], tail[axis] = slice(1, None), slice(None, -1)
        out[tuple(head)] &= mask[tuple(tail)]
        out[tuple(tail)] &= mask[tuple(head)]
        edge = [slice(None)] * 3
        for end in (0, -1):
            edge[axis] = end
            out[tuple(edge)] = False
    return out


def _box_filtered(mask: np.ndarray, size: int, erode: bool) -> np.ndarray:
    """What ``binary_erosion`` (``erode``) or ``binary_dilation`` by a ``size``-cube (odd) gives, outside
    false. A cube is separable: per axis, the AND (or OR) of the mask shifted by up to ``size // 2``
    voxels either way, as whole-array logical operations (6x faster than scipy's 1D filters)."""
    combine = np.logical_and if erode else np.logical_or
    for axis in range(3):
        shifted = mask.copy()
        for shift in range(1, size // 2 + 1):
            later, earlier = [slice(None)] * 3, [slice(None)] * 3
            later[axis], earlier[axis] = slice(shift, None), slice(None, -shift)
            combine(shifted[tuple(later)], mask[tuple(earlier)], out=shifted[tuple(later)])
            combine(shifted[tuple(earlier)], mask[tuple(later)], out=shifted[tuple(earlier)])
        if erode:  # a voxel within half the cube of the edge sees the false outside
            edges = [slice(None)] * 3
            for edge in (slice(0, size // 2), slice(max(0, mask.shape[axis] - size // 2), None)):
                edges[axis] = edge
                shifted[tuple(edges)] = False
        mask = shifted
    return mask


def _largest_region_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    return ndimage.find_objects(labels, max_label=largest)[largest - 1]


def _smoothed_profile(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` per axial slice, summed over a 7-slice window."""
    return np.convolve(mask.sum(axis=(0, 1)), np.ones(7, int), mode="same")


def _extrema(profile: np.ndarray, comparator, order: int, step: int) -> np.ndarray:
    """Local extrema, relaxing ``order`` by ``step`` until some are found (none in a monotonic profile)."""
    while True:
        found = argrelextrema(profile, comparator, order=order)[0]
        if len(found) or order == 1:
            return found
        order = max(1, order - step)


def _dome_slice(volume: np.ndarray, body: tuple[slice, ...]) -> tuple[int, tuple[int, int]] | None:
    """The slice of the liver's dome, from the air inside the body (lungs, bowel), and the (x, y) centre
    of that air's box; ``None`` where the scan shows no lungs."""
    inside = np.full(volume.shape, volume.min(), volume.dtype)
    inside[body] = volume[body]
    inside[:, :, -1] = 0  # a lung cut by the top of the field must not join the air outside the body
    air = inside < LUNG_HU
    opened = _box_filtered(_box_filtered(air[:, :, :-1], 5, erode=True), 5, erode=False)
    air[:, :, :-1] = opened  # an opening: lungs do not join the outside through the nose
    padded = np.pad(air, ((3, 3), (3, 3), (0, 0)), constant_values=True)  # one region of outside air
    labels, count = ndimage.label(padded)
    labels = labels[3:-3, 3:-3, :]
    counts = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(float)
    counts[counts == 0] = -1  # regions only in the padding rank last
    if len(counts) < 3:
        return None
    order = np.argsort(counts, kind="stable")
    outside = 1 + int(np.flatnonzero(counts == counts[order[-1]])[0])
    body_air = (labels != outside) & air
    if not body_air.any():
        return None
    air_box = ndimage.find_objects(body_air.view(np.uint8))[0]
    centre = ((air_box[0].start + air_box[0].stop + 1) // 2, (air_box[1].start + air_box[1].stop + 1) // 2)
    profile = _smoothed_profile(body_air)
    low, high = profile.min(), profile.max()
    lung = np.flatnonzero(profile > low + 0.5 * (high - low))
    if len(lung) == 0:
        return None
    starts = np.flatnonzero(np.diff(lung, prepend=0) != 1)
    dome = lung[0]
    if len(starts) > 1 and np.any(profile[lung[starts[1] - 1]:lung[starts[1]]] < low + 0.2 * (high - low)):
        dome = lung[starts[1]]
    lungs = [1 + int(np.flatnonzero(counts == counts[order[rank]])[0]) for rank in (-2, -3)]
    boxes = ndimage.find_objects(labels, max_label=max(lungs))
    lowest = [boxes[lung_label - 1][2].start for lung_label in lungs]
    return max(int(dome), int(lowest[int(np.argmax(lowest))])), centre


def _hip_slice(volume: np.ndarray, dome: int) -> int:
    """The slice of the pelvis' upper edge below ``dome``, or 0 where the bone profile shows none."""
    profile = _smoothed_profile(volume > BONE_HU)[:dome]
    if len(profile) < 3:
        return 0
    peak = int(np.argmax(profile))
    minima = _extrema(profile, np.less, 15, 3)
    maxima = _extrema(profile, np.greater, 15, 3)
    if len(minima) == 0 or len(maxima) == 0:
        return 0
    trough = int(minima[np.argsort(profile[minima])[0]])
    ranked = maxima[np.argsort(profile[maxima])]
    second = int(ranked[-2] if len(ranked) > 1 else ranked[-1])
    if trough < peak and trough < second:
        trough = second + int(np.argmin(profile[second:]))
    local_maxima = _extrema(profile, np.greater, 5, 1)
    ratio = HIP_BONE_RATIO
    while True:
        high = np.flatnonzero(profile > ratio * (profile[peak] - profile[trough]) + profile[trough])
        candidates = np.intersect1d(local_maxima, high)
        if (len(high) and len(candidates)) or ratio <= 0.05:
            break
        ratio = max(ratio - 0.1, 0.05)
    below = candidates[candidates < trough]
    return int(below[-1]) if len(below) >= 2 else 0


def _limit(box: slice, size_mm: float, spacing: float, centre: int) -> slice:
    """``box`` shrunk to ``size_mm``, cutting each side in proportion to its distance from ``centre``."""
    size = box.stop - box.start
    excess = size * spacing - size_mm
    if excess <= 0:
        return box
    start = int(np.ceil((centre - box.start) / size * excess / spacing))
    stop = int(np.ceil((box.stop - centre) / size * excess / spacing))
    return slice(box.start + start, box.stop - stop)


def abdomen_box(volume: np.ndarray, spacing) -> tuple[slice, slice, slice]:
    """The crop of ``volume`` (HU, LPS order) that the liver network sees, as array slices."""
    spacing = np.asarray(spacing, float)
    body = _largest_region_box(_eroded_by_cross(volume > TISSUE_HU))
    if body is None:
        return (slice(0, volume.shape[0]), slice(0, volume.shape[1]), slice(0, volume.shape[2]))
    found = _dome_slice(volume, body)
    if found is None:
        dome, hip = volume.shape[2], 0
        centre = ((body[0].start + body[0].stop + 1) // 2, (body[1].start + body[1].stop + 1) // 2)
    else:
        (dome, centre), hip = found, _hip_slice(volume, found[0])
    if (dome - hip) * spacing[2] > LIVER_HEIGHT_MAX_MM:
        hip = dome - int(LIVER_HEIGHT_MAX_MM / spacing[2])
    z = slice(max(0, hip - int(HIP_MARGIN_MM / spacing[2])), min(volume.shape[2], dome + int(DOME_MARGIN_MM / spacing[2])))
    crop = volume[body[0], body[1], z]
    trunk = _largest_region_box(_box_filtered(crop > TISSUE_HU, 5, erode=True))
    x, y = body[0], body[1]
    if trunk is not None:
        x = slice(x.start + trunk[0].start, x.start + trunk[0].stop)
        y = slice(y.start + trunk[1].start, y.start + trunk[1].stop)
    x = _limit(x, MAX_SIZE_MM[0], spacing[0], centre[0])
    y = _limit(y, MAX_SIZE_MM[1], spacing[1], centre[1])
    excess = (z.stop - z.start) * spacing[2] - MAX_SIZE_MM[2]
    if excess > 0:  # too tall: cut from below, the liver lies under the dome
        z = slice(z.start + int(np.ceil(excess / spacing[2])), z.stop)
    return x, y, z
