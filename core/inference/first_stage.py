"""``FirstStageRegion``: where a cascade's first stage found the liver, and what that allows the second.

A 64^3 patch at 2 mm sees 12.8 cm of anatomy: too little to tell the liver from the
heart, the spleen or the stomach, which look alike in a window of soft tissue. The
first stage of a cascade therefore looks at the whole scan at a coarse spacing
(5 mm: a whole abdomen in a few patches) and says roughly where the liver is. The
second stage then works only in the box around that region (less to compute on a
full-field scan) and may label liver or lesion only within the region (no spill
into neighbouring organs), which is the role nnU-Net's cascade and
TotalSegmentator's two resolutions give their first stage.

The region is the largest component of the first stage's liver-or-lesion
(probability above one half), widened by the card's ``roi_margin_mm``: the margin
absorbs the first stage's coarse boundary, so the second stage still draws the edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.affine import spacing_mm, voxel_volume_ml
from core.imageio.sitk_image import resample_onto
from core.postprocessing.cleanup import largest_component, within_mm
from core.scan import Scan
from core.segmentation import BACKGROUND, LESION, LIVER


@dataclass(frozen=True, eq=False)
class FirstStageRegion:
    """Voxels of the first stage's grid (``affine``) where the second stage may find liver.

    Attributes:
        mask: bool array on the first stage's (canonical, coarse) grid.
        affine: that grid's RAS affine.
        liver_ml: the first stage's liver volume before the margin, for notes.
    """

    mask: np.ndarray
    affine: np.ndarray
    liver_ml: float

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray, affine: np.ndarray, margin_mm: float) -> FirstStageRegion | None:
        """The region from the first stage's class probabilities (C, X, Y, Z); ``None`` when it found no liver."""
        organ = probabilities[LIVER] + probabilities[LESION] > 0.5
        if not organ.any():
            return None
        organ = largest_component(organ)
        liver_ml = float(organ.sum()) * voxel_volume_ml(affine)
        return cls(within_mm(organ, margin_mm, spacing_mm(affine)), np.asarray(affine, dtype=float), liver_ml)

    def crop(self, scan: Scan) -> Scan:
        """The part of ``scan`` the region covers (its bounding box), on the scan's own grid."""
        box = scan.box_around(self.mask, self.affine)
        return scan if box is None else scan.crop(box)

    def confine(self, probabilities: np.ndarray, affine: np.ndarray) -> None:
        """Make ``probabilities`` (C, X, Y, Z on the grid of ``affine``) background outside the region, in place."""
        inside = resample_onto(self.mask.astype(np.float32), self.affine, probabilities.shape[1:], affine) >= 0.5
        outside = ~inside
        probabilities[:, outside] = 0.0
        probabilities[BACKGROUND, outside] = 1.0
