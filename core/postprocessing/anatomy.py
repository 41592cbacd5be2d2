"""Anatomical sanity of a liver segmentation: say so when the result cannot be right.

A demonstration to non-technical staff must not show a "liver" that took in the
heart without saying a word. These checks need no ground truth; each returns a
sentence for ``Segmentation.warnings`` that the page and the command line show.

- **Volume** (adult livers are roughly 1-2.5 L; under 0.5 L or over 5 L is implausible)
  and **side** (the liver lies on the patient's right) are checked only on a full-field
  scan, one whose field of view spans the abdomen (``FULL_FIELD_MM``): a crop around
  the liver has neither a whole liver nor a midline.
- **Top edge**: a liver that covers a wide area of the scan's most superior slice is
  either cut off by the scan (its volume is then too small) or has grown into the
  heart, which lies right above it.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from core.scan import Scan
from core.segmentation import BACKGROUND

#: A plausible adult liver, mL.
LIVER_ML_RANGE = (500.0, 5000.0)
#: Field of view (left-right, anterior-posterior, inferior-superior), mm, from which a scan counts as full-field.
FULL_FIELD_MM = (250.0, 200.0, 150.0)
#: Liver area on the most superior slice, mm^2, above which the top-edge warning is given.
TOP_EDGE_MM2 = 2000.0
#: How far (mm) left of the body's centre the liver's centre may lie before it is on the wrong side.
SIDE_TOLERANCE_MM = 20.0
#: Soft tissue and denser: what counts as body, HU.
BODY_HU = -300.0


def anatomy_warnings(labels: np.ndarray, scan: Scan) -> list[str]:
    """Sentences about an implausible liver in ``labels`` (0/1/2 on ``scan``'s grid); empty when it looks right."""
    order = nib.io_orientation(scan.affine)  # array axis -> (RAS axis, direction)
    extent_mm = np.zeros(3)
    for axis, (ras_axis, _) in enumerate(order):
        extent_mm[int(ras_axis)] = scan.shape[axis] * scan.spacing[axis]
    liver = labels > BACKGROUND
    liver_ml = float(np.count_nonzero(liver)) * scan.voxel_volume_ml
    warnings = []
    full_field = bool(np.all(extent_mm >= FULL_FIELD_MM))
    if full_field:
        low, high = LIVER_ML_RANGE
        if liver_ml < low or liver_ml > high:
            warnings.append(
                f"The liver found measures {liver_ml:.0f} mL, outside the {low:.0f}-{high:.0f} mL of an adult liver, on a "
                "scan that covers the whole abdomen: the model has probably missed part of the liver or taken in "
                "neighbouring organs. Check every plane before using these figures."
            )
    if liver.any():
        top_mm2 = _top_slice_area_mm2(liver, scan, order)
        if top_mm2 > TOP_EDGE_MM2:
            warnings.append(
                f"The liver reaches the top edge of the scan over {top_mm2 / 100:.0f} square centimetres: either the scan cuts the liver "
                "off (its volume is then too small) or the model has grown into the heart above it. Check the coronal view."
            )
        if full_field and _left_of_midline_mm(liver, scan) > SIDE_TOLERANCE_MM:
            warnings.append(
                "Most of what was found as liver lies on the patient's left, where the spleen and stomach are: "
                "check the result (or the scan's orientation) before using it."
            )
    return warnings


def _top_slice_area_mm2(liver: np.ndarray, scan: Scan, order: np.ndarray) -> float:
    """Liver area on the scan's most superior slice, mm²."""
    axis = int(np.flatnonzero(order[:, 0] == 2)[0])  # the array axis closest to inferior-superior
    top = -1 if order[axis, 1] > 0 else 0
    in_plane = [a for a in range(3) if a != axis]
    return float(np.count_nonzero(np.take(liver, top, axis=axis))) * scan.spacing[in_plane[0]] * scan.spacing[in_plane[1]]


def _left_of_midline_mm(liver: np.ndarray, scan: Scan) -> float:
    """How far (mm) the liver's centre lies to the patient's left of the body's centre (negative: to the right)."""
    step = 4  # the body's centre from every 4th voxel: ample for a centre, 64x less work
    body = np.argwhere(scan.voxels[::step, ::step, ::step] > BODY_HU) * step
    if not len(body):
        return 0.0

    def x_mm(voxels: np.ndarray) -> float:  # RAS+: x grows towards the patient's right
        return float(scan.affine[0, :3] @ voxels.mean(axis=0) + scan.affine[0, 3])

    return x_mm(body) - x_mm(np.argwhere(liver))
