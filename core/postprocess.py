"""Anatomical clean-up of a predicted label map.

Three rules, in millimetres and millilitres so that they mean the same at any
voxel size:

1. the liver is one organ: of the connected components of liver-or-lesion
   (labels 1 and 2 together), only the largest is kept;
2. lesions are liver lesions: lesion voxels further than ``config.LESION_MARGIN_MM``
   from that liver are removed (the margin keeps a lesion at the surface whose thin
   rim of liver the network missed, so that it is not connected to the liver);
3. lesion components smaller than ``config.MIN_LESION_ML`` are specks of noise: they
   become liver where they lie inside the liver, background elsewhere.

Components are 26-connected (voxels sharing a face, an edge or a corner), as
``core.metrics`` and ``core.lesions`` count lesions, so that a lesion they count is
one that was kept or dropped whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from core import config
from core.metrics import LESION_CONNECTIVITY
from core.segmentation import BACKGROUND, LESION, LIVER


def _largest_component(mask: np.ndarray) -> np.ndarray:
    components, count = ndimage.label(mask, LESION_CONNECTIVITY)
    if count <= 1:
        return mask.copy()
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == sizes.argmax()


def _within(mask: np.ndarray, distance_mm: float, spacing: Sequence[float]) -> np.ndarray:
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
    voxel_ml = float(np.prod(spacing)) / 1000.0
    organ = labels > BACKGROUND
    if not organ.any():
        return np.zeros_like(labels, dtype=np.uint8), ["no liver was found in this scan"]
    notes = []
    liver = _largest_component(organ)
    # Lesion voxels connected to the liver are part of `liver`; only separate blobs can lie outside the margin.
    lesion = (labels == LESION) & _within(liver, config.LESION_MARGIN_MM, spacing)
    components, count = ndimage.label(lesion, LESION_CONNECTIVITY)
    if count:
        sizes_ml = np.bincount(components.ravel())[1:] * voxel_ml
        specks = np.flatnonzero(sizes_ml < config.MIN_LESION_ML) + 1
        if len(specks):
            lesion &= ~np.isin(components, specks)
            notes.append(f"dropped {len(specks)} lesion speck(s) smaller than {config.MIN_LESION_ML:g} mL")

    cleaned = np.zeros(labels.shape, np.uint8)
    cleaned[liver] = LIVER
    cleaned[lesion] = LESION
    removed = organ & (cleaned == BACKGROUND)
    if removed.any():
        regions = ndimage.label(removed, LESION_CONNECTIVITY)[1]
        notes.insert(0, f"removed {regions} region(s) apart from the liver ({removed.sum() * voxel_ml:.1f} mL)")
    return cleaned, notes
