"""The pretrained pair's MR recipe (Tang et al. 2020): what the two networks were shown of an abdominal MR.

The authors' package (pyliverlesionseg 0.3) has an MR branch beside its CT one, written here
from its description and source (no code copied):

- the abdomen crop for MR (``mr_abdomen_box``): the body's front and back from the sum of
  the signal along the front-back axis, the body's left-right extent from the largest
  region above 1 % of the maximum signal (after a 5-voxel cube erosion), the top 430 mm
  (at most 400 mm of liver height plus 30 mm), at most 489 x 408 x 408 mm;
- the liver network's intensities (``scaled_for_liver``): after the same resampling as CT
  (1.5 mm, median filter 3, 3 mm), clipped to the lower 80 % of the volume's range and
  scaled to [-0.5, 0.5].

The package's lesion scaling for MR (centred on the liver's median) is not written here: the
lesion network looks only inside the liver that the liver network finds, and it finds none.

MR is refused (README, Limitations), so the product has no MR branch and this recipe lives
beside ``benchmarks/mr_verdict.py``, which runs it and shows that the networks find no liver on
the shared MR scan with it. Arrays are in LPS order (x towards the patient's left, y posterior,
z towards the head) where the recipe defines them so, as in ``core.inference.abdomen_crop``.
The profile heuristics count voxels, not millimetres, as the package does.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.signal import argrelextrema, convolve

from core.inference.abdomen_crop import MAX_SIZE_MM

TISSUE_RATIO = 0.01  # body: signal above 1 % of the maximum
LIVER_HEIGHT_MAX_MM, TOP_MARGIN_MM = 400.0, 30.0
EDGE_HALF_WIDTH = 30  # voxels on each side of the front-back profile's edge detector
FRONT_ORDER, FRONT_BEFORE_BACK = 70, 100  # voxels: how far apart the profile's peaks and edges are looked for
LIVER_RANGE = 0.8  # the liver network sees the lower 80 % of the range


def _peaks(profile: np.ndarray) -> np.ndarray:
    """Local maxima of ``profile``, from order 70 down in steps of 10 (at least 2) until there are two."""
    order = FRONT_ORDER
    peaks = argrelextrema(profile, np.greater, order=order)[0]
    while len(peaks) <= 1 and order != 2:
        order = max(order - 10, 2)
        peaks = argrelextrema(profile, np.greater, order=order)[0]
    return peaks


def _front_peak(edges: np.ndarray, back: int) -> int:
    """The index of the body's front edge among the rises of the front-back profile."""
    peaks = _peaks(edges)
    if len(peaks) == 1:
        return int(peaks[0])
    if len(peaks) == 0:  # a flat profile: the package has no answer (it fails); take the strongest rise
        return int(np.argmax(edges))
    strong = peaks[edges[peaks] > 0.5 * np.sort(edges[peaks])[-2]]
    if len(strong) == 0:
        return int(np.argmax(edges))
    margin = FRONT_BEFORE_BACK
    front = strong[strong < back - margin]
    while len(front) == 0:  # the package relaxes the distance until a peak qualifies
        margin -= 10
        front = strong[strong < back - margin]
    front = front[front < 0.4 * len(edges)]
    if len(front) == 0:
        peak = int(np.argmax(edges))
        return 0 if peak >= 0.4 * len(edges) else peak
    if len(front) > 1 and np.all(edges[front[-2] : front[-1] + 1] > 0.5 * edges[front[-1]]):
        return int(front[-2])
    if len(front) > 1 and edges[front[-1]] < 0.5 * edges[front[-2]]:
        return int(front[-2])
    return int(front[-1])


def _front_back(volume: np.ndarray) -> slice:
    """The body's extent along y (front to back) from the signal summed per coronal plane."""
    profile = convolve(volume.sum(axis=(0, 2)), np.ones(7), "same")
    detector = np.concatenate((np.ones(EDGE_HALF_WIDTH), np.zeros(1), -np.ones(EDGE_HALF_WIDTH)))
    edges = convolve(profile, detector, "same")  # the signal after each plane minus the signal before it
    back = int(np.argmin(edges))
    front = _front_peak(edges, back)

    start = 0
    for ratio in np.arange(0.45, 1.0 + 1e-9, 0.05):  # the last plane before the front edge with a weak rise
        before = np.flatnonzero(edges < ratio * edges[front])
        before = before[before < front]
        if len(before):
            start = int(before[-1])
            break

    stop = volume.shape[1]
    for ratio in np.arange(0.6, 1.0 + 1e-9, 0.05):  # the first plane of the last run past the back edge
        after = np.flatnonzero(edges > ratio * edges[back])
        after = after[after > back]
        if len(after):
            gaps = np.flatnonzero(np.diff(after, prepend=0) > 1)
            if len(gaps) > 1:
                after = after[gaps[-1] :]
            stop = int(after[0])
            break
    return slice(start, stop)


def _shrunk(box: slice, size_mm: float, spacing: float) -> slice:
    """``box`` cut equally on both sides to at most ``size_mm``."""
    excess = (box.stop - box.start) * spacing - size_mm
    if excess <= 0:
        return box
    cut = int(np.ceil(excess / (2 * spacing)))
    return slice(box.start + cut, box.stop - cut)


def mr_abdomen_box(volume: np.ndarray, spacing) -> tuple[slice, slice, slice]:
    """The crop of ``volume`` (MR signal, LPS order) that the liver network sees, as array slices."""
    spacing = np.asarray(spacing, float)
    y_body = _front_back(volume)
    top = volume.shape[2]
    z = slice(max(0, top - int(LIVER_HEIGHT_MAX_MM / spacing[2]) - int(TOP_MARGIN_MM / spacing[2])), top)
    cropped = volume[:, :, z]
    body = ndimage.binary_erosion(cropped > TISSUE_RATIO * cropped.max(), np.ones((5, 5, 5)))
    labels, count = ndimage.label(body)
    if count == 0:
        x, y = slice(0, volume.shape[0]), y_body
    else:
        sizes = np.bincount(labels.ravel())[1:]
        x, y = ndimage.find_objects((labels == np.argmax(sizes) + 1).astype(np.int8))[0][:2]
        y = slice(max(y.start, y_body.start), min(y.stop, y_body.stop))
    x = _shrunk(x, MAX_SIZE_MM[0], spacing[0])
    y = _shrunk(y, MAX_SIZE_MM[1], spacing[1])
    excess = (z.stop - z.start) * spacing[2] - MAX_SIZE_MM[2]
    if excess > 0:  # too tall: cut from below
        z = slice(z.start + int(np.ceil(excess / spacing[2])), z.stop)
    return x, y, z


def scaled_for_liver(image: np.ndarray) -> np.ndarray:
    """The liver network's MR intensities: the lower 80 % of the range scaled to [-0.5, 0.5]."""
    low = float(image.min())
    high = low + LIVER_RANGE * (float(image.max()) - low)
    if high <= low:
        return np.full(image.shape, -0.5, np.float32)
    return ((np.clip(image, low, high) - low) / (high - low) - 0.5).astype(np.float32)

