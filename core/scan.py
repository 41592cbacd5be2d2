"""``Scan``: a CT volume in Hounsfield units together with its geometry."""

from __future__ import annotations

from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
import torchio as tio
from pydicom import Dataset

from core.affine import spacing_mm, voxel_volume_ml


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
        dicom_headers: for a scan read from a DICOM series, each slice's header (pydicom
            datasets without pixels, in the order of the array's last axis), reduced by
            ``core.imageio.dicom_series`` to what a DICOM SEG needs to reference them; empty otherwise.
            Kept out of ``repr`` and never shown: they carry the patient's name and ID.
    """

    voxels: np.ndarray
    affine: np.ndarray
    source: str = ""
    details: dict = field(default_factory=dict)
    dicom_headers: tuple[Dataset, ...] = field(default=(), repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.voxels.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        return spacing_mm(self.affine)

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"`` or ``"LPS"``: where each array axis points."""
        return "".join(nib.aff2axcodes(self.affine))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel, in mL."""
        return voxel_volume_ml(self.affine)

    def box_around(self, mask: np.ndarray, mask_affine: np.ndarray) -> tuple[slice, slice, slice] | None:
        """The box of this scan's voxels within one voxel of ``mask`` (on the grid of ``mask_affine``); None if empty.

        Linear interpolation mixes the 8 grid voxels around a point, so a value from ``mask``'s
        grid can only reach a scan voxel near one of them: one voxel of margin is enough.
        """
        found = np.argwhere(mask)
        if not len(found):
            return None
        low, high = found.min(axis=0) - 1, found.max(axis=0) + 1
        corners = np.array([[(low, high)[bit >> axis & 1][axis] for axis in range(3)] for bit in range(8)], dtype=float)
        to_scan = np.linalg.inv(self.affine) @ mask_affine
        points = corners @ to_scan[:3, :3].T + to_scan[:3, 3]
        start = np.maximum(np.floor(points.min(axis=0)).astype(int) - 1, 0)
        stop = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 2, self.shape)
        if np.any(stop <= start):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))  # type: ignore[return-value]

    def crop(self, box: tuple[slice, slice, slice]) -> Scan:
        """The voxels in ``box`` (a view, not a copy) with the affine that keeps them where they are in space."""
        affine = self.affine.copy()
        affine[:3, 3] = self.affine[:3, :3] @ [s.start for s in box] + self.affine[:3, 3]
        return Scan(self.voxels[box], affine, self.source, self.details)  # no headers: the crop is not the series

    def to_torchio(self) -> tio.ScalarImage:
        """The scan as a TorchIO image (channel-first tensor, same affine)."""
        return tio.ScalarImage(tensor=self.voxels[np.newaxis], affine=self.affine)
