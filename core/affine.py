"""A voxel grid's size from its affine: the one place spacing and voxel volume are derived.

The affine is the 4x4 matrix from voxel indices (i, j, k) to RAS+ millimetres (nibabel's
convention); its upper-left 3x3 block holds, column by column, the step in space of one
voxel along each array axis. Neither function cares about the direction of those steps:
a rotated (oblique) grid or a flipped axis has the same spacing and voxel volume as the
grid it was turned from.
"""

from __future__ import annotations

import numpy as np

#: Cubic millimetres in a millilitre.
MM3_PER_ML = 1000.0


def spacing_mm(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size along each array axis (i, j, k), in mm: the length of each column of the 3x3 block."""
    return tuple(float(s) for s in np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0))  # type: ignore[return-value]


def voxel_volume_ml(affine: np.ndarray) -> float:
    """The volume of one voxel, in mL: the product of ``spacing_mm`` (mm^3) / 1000.

    Exact for a grid with orthogonal axes (every scanner grid that is not sheared, however
    rotated or flipped), the grids the rest of the engine assumes (``core.evaluation.metrics``,
    ``core.evaluation.lesions``); on a sheared grid it overstates the volume (the determinant is smaller).
    """
    return float(np.prod(spacing_mm(affine))) / MM3_PER_ML
