"""``Scan``: a CT volume in Hounsfield units together with its geometry."""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
import torchio as tio


@dataclass(frozen=True, eq=False)
class Scan:
    """A 3D CT volume as read from disk, in its own voxel order.

    Attributes:
        voxels: 3D float32 array of Hounsfield units, indexed as stored in the file.
        affine: 4x4 matrix from voxel indices to RAS+ millimetres (nibabel's convention).
        source: what it was read from, for messages and reports (a file name, never a path
            that reveals another user's folders).
        details: non-identifying facts about the acquisition (modality, series description,
            how a multi-series zip was resolved); never patient names or IDs.
    """

    voxels: np.ndarray
    affine: np.ndarray
    source: str = ""
    details: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.voxels.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"`` or ``"LPS"``: where each array axis points."""
        return "".join(nib.aff2axcodes(self.affine))

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def to_torchio(self) -> tio.ScalarImage:
        """The scan as a TorchIO image (channel-first tensor, same affine)."""
        return tio.ScalarImage(tensor=self.voxels[np.newaxis], affine=self.affine)
