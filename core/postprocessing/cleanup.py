"""Anatomical clean-up of a predicted label map.

Three rules, in millimetres and millilitres so that they mean the same at any
voxel size:

1. the liver is one organ: of the connected components of liver-or-lesion
   (labels 1 and 2 together), only the largest is kept;
2. lesions are liver lesions: lesion voxels further than ``config.LESION_MARGIN_MM``
   from that liver are removed (the margin keeps a lesion at the surface whose thin
   rim of liver the network missed, so that it is not connected to the liver);
3. lesion components smaller than ``config.MIN_LESION_ML`` are specks of noise: they
   become liver where they lie inside the liver, background elsewhere;
4. (``drop_unconfident_lesions``, once the probabilities are on the scan's grid) a
   lesion whose mean lesion probability, its confidence, is below the model card's
   ``lesion_threshold`` becomes liver: a threshold chosen on held-out cases trades
   a few missed faint lesions for far fewer false alarms.

Components are 26-connected (voxels sharing a face, an edge or a corner:
``core.segmentation.LESION_CONNECTIVITY``), as ``core.evaluation.metrics`` and ``core.evaluation.lesions``
count lesions, so that a lesion they count is one that was kept or dropped whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from core import config
from core.affine import MM3_PER_ML
from core.segmentation import BACKGROUND, LESION, LESION_CONNECTIVITY, LIVER


def _members(components: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Where ``components`` (from ``ndimage.label``) is one of the ``chosen`` component numbers.

    A lookup table indexed by component number: ``np.isin`` sorts the whole volume.
    """
    table = np.zeros(int(components.max()) + 1, bool)
    table[chosen] = True
    return table[components]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask`` (a copy of ``mask`` when it has one or none)."""
    components, count = ndimage.label(mask, LESION_CONNECTIVITY)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == sizes.argmax()


def within_mm(mask: np.ndarray, distance_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Voxels at most ``distance_mm`` from ``mask`` (a dilation in mm, whatever the voxel shape)."""
    margin = [int(np.ceil(distance_mm / s)) + 1 for s in spacing]
    # The distance transform runs on the mask's bounding box plus the margin only: a full volume costs far more.
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    box = tuple(slice(max(b.start - m, 0), min(b.stop + m, n)) for b, m, n in zip(box, margin, mask.shape))
    near = np.zeros_like(mask)
    near[box] = ndimage.distance_transform_edt(~mask[box], sampling=spacing) <= distance_mm
    return near


def postprocess(labels: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, list[str]]:
    """The cleaned label map (uint8, same shape) and sentences saying what was removed.

    Args:
        labels: 0 background, 1 liver, 2 lesion.
        spacing: voxel size along each array axis, in mm.
    """
    spacing = [float(s) for s in spacing]
    voxel_ml = float(np.prod(spacing)) / MM3_PER_ML
    organ = labels > BACKGROUND
    if not organ.any():
        return np.zeros_like(labels, dtype=np.uint8), ["no liver was found in this scan"]
    notes = []
    liver = largest_component(organ)
    # Lesion voxels connected to the liver are part of `liver`; only separate blobs can lie outside the margin,
    # so the distance transform runs only where there are some (usually none: it is most of this function's time).
    lesion = labels == LESION
    apart = lesion & ~liver
    if apart.any():
        lesion &= ~apart | within_mm(liver, config.LESION_MARGIN_MM, spacing)
    components, count = ndimage.label(lesion, LESION_CONNECTIVITY)
    if count:
        sizes_ml = np.bincount(components.ravel())[1:] * voxel_ml
        specks = np.flatnonzero(sizes_ml < config.MIN_LESION_ML) + 1
        if len(specks):
            lesion &= ~_members(components, specks)
            notes.append(f"dropped {len(specks)} lesion speck(s) smaller than {config.MIN_LESION_ML:g} mL")

    cleaned = np.zeros(labels.shape, np.uint8)
    cleaned[liver] = LIVER
    cleaned[lesion] = LESION
    removed = organ & (cleaned == BACKGROUND)
    if removed.any():
        regions = ndimage.label(removed, LESION_CONNECTIVITY)[1]
        notes.insert(0, f"removed {regions} region(s) apart from the liver ({removed.sum() * voxel_ml:.1f} mL)")
    return cleaned, notes


def lesion_confidences(labels: np.ndarray, lesion_probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lesion components of ``labels`` (26-connected) and each one's mean ``lesion_probability``.

    Returns ``(components, confidences)``: component ``n`` (1-based) has confidence
    ``confidences[n - 1]``.
    """
    components, count = ndimage.label(labels == LESION, LESION_CONNECTIVITY)
    if not count:
        return components, np.zeros(0)
    # Sums over the lesion voxels alone: ``ndimage.mean`` visits every voxel of the scan, ~10x slower.
    inside = components > 0
    ids = components[inside]
    sums = np.bincount(ids, weights=lesion_probability[inside], minlength=count + 1)[1:]
    return components, sums / np.bincount(ids, minlength=count + 1)[1:]


def drop_unconfident_lesions(labels: np.ndarray, lesion_probability: np.ndarray, threshold: float) -> tuple[np.ndarray, list[str]]:
    """``labels`` with every lesion of mean ``lesion_probability`` below ``threshold`` turned into liver.

    Args:
        labels: 0/1/2 on some grid; lesions are only ever found inside or against the liver,
            so the voxels of a dropped lesion are liver tissue the model was unsure about.
        lesion_probability: the model's lesion probability (0-1) on the same grid.
        threshold: the model card's ``lesion_threshold``.
    """
    components, confidences = lesion_confidences(labels, lesion_probability)
    doomed = np.flatnonzero(confidences < threshold) + 1
    if not len(doomed):
        return labels, []
    cleaned = labels.copy()
    cleaned[_members(components, doomed)] = LIVER
    return cleaned, [f"dropped {len(doomed)} lesion(s) with confidence below {threshold:.2f} (the model card's threshold)"]
