"""Lesion analysis: each lesion's size, position and density, and the tumour burden.

Lesions are the 26-connected components of label 2 (voxels sharing a face, an
edge or a corner belong to one lesion: ``core.segmentation.LESION_CONNECTIVITY``). "Axial" is the
patient's axial plane: the array axis that runs closest to inferior-superior
(read from the affine) is the slice axis, whatever the file's axis order.
Distances assume orthogonal voxel axes (a grid that is not sheared).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

from core.scan import Scan
from core.segmentation import LESION, LESION_CONNECTIVITY

#: Columns of ``LesionReport.rows()`` and of the CSV, in order.
COLUMNS = (
    "id",
    "volume_ml",
    "longest_axial_diameter_mm",
    "mean_hu",
    "confidence",
    "centroid_i",
    "centroid_j",
    "centroid_k",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "first_slice",
    "last_slice",
)


@dataclass(frozen=True)
class Lesion:
    """One lesion (a connected component of label 2).

    Attributes:
        id: 1, 2, ... in order of decreasing volume.
        volume_ml: voxel count times voxel volume, in mL.
        longest_axial_diameter_mm: the longest segment within the lesion in any one axial
            slice, in mm (RECIST's measure), taking each voxel as the square it covers: a
            single voxel measures its in-plane diagonal.
        mean_hu: mean CT value over the lesion's voxels, in HU.
        confidence: the model's mean lesion probability over the lesion's voxels (0-1), the
            quantity the model card's ``lesion_threshold`` is applied to; ``None`` for a
            label map without the model's probabilities (one read from disk, a reference).
        centroid_voxel: centre of mass in the scan's own (file-order) voxel indices.
        centroid_mm: the same point in RAS+ millimetres (scanner coordinates).
        first_slice, last_slice: the axial slices it spans, numbered in canonical RAS+
            order: slice 0 is the most inferior, as the app's viewers number them.
    """

    id: int
    volume_ml: float
    longest_axial_diameter_mm: float
    mean_hu: float
    confidence: float | None
    centroid_voxel: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]
    first_slice: int
    last_slice: int


@dataclass(frozen=True)
class LesionReport:
    """The lesions of a label map, with liver volume and tumour burden.

    Attributes:
        lesions: largest first.
        liver_ml: labels 1 and 2 together (lesions lie inside the liver), in mL.
        lesion_ml: label 2, in mL.
        burden_pct: ``100 * lesion_ml / liver_ml``; ``None`` when there is no liver.
        components: the lesions' connected components as ``ndimage.label`` numbers them, and
            their count, so that scoring (``core.evaluation.metrics.lesion_detection``) counts the
            same lesions without labelling them again; ``None`` for a report built by hand.
    """

    lesions: list[Lesion]
    liver_ml: float
    lesion_ml: float
    burden_pct: float | None
    components: tuple[np.ndarray, int] | None = field(default=None, repr=False, compare=False)

    def rows(self) -> list[dict[str, float | int]]:
        """One dict per lesion keyed by ``COLUMNS``, rounded for display (mL to 0.001, mm and HU to 0.1)."""
        return [
            {
                "id": lesion.id,
                "volume_ml": round(lesion.volume_ml, 3),
                "longest_axial_diameter_mm": round(lesion.longest_axial_diameter_mm, 1),
                "mean_hu": round(lesion.mean_hu, 1),
                "confidence": None if lesion.confidence is None else round(lesion.confidence, 2),
                **{f"centroid_{axis}": round(v, 1) for axis, v in zip("ijk", lesion.centroid_voxel)},
                **{f"centroid_{axis}_mm": round(v, 1) for axis, v in zip("xyz", lesion.centroid_mm)},
                "first_slice": lesion.first_slice,
                "last_slice": lesion.last_slice,
            }
            for lesion in self.lesions
        ]

    def to_csv(self) -> str:
        """The lesion table as CSV text with a header row (``COLUMNS``); only the header when there are none."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return buffer.getvalue()

    def to_text(self) -> str:
        """A summary line and the lesion table, aligned for the terminal."""
        burden = "n/a (no liver)" if self.burden_pct is None else f"{self.burden_pct:.1f} %"
        summary = f"liver {self.liver_ml:.1f} mL, lesions {self.lesion_ml:.1f} mL in {len(self.lesions)}, tumour burden {burden}"
        table = [COLUMNS, *(["" if row[column] is None else str(row[column]) for column in COLUMNS] for row in self.rows())]
        widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
        return "\n".join([summary, *("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in table)])


def analyse_lesions(labels: np.ndarray, scan: Scan, lesion_probability: np.ndarray | None = None) -> LesionReport:
    """Measure every lesion of ``labels`` (0/1/2, voxel for voxel on ``scan``'s grid).

    ``lesion_probability`` (``Segmentation.lesion_probability``: 0-255 for 0-1 on the same
    grid) gives each lesion its confidence.
    """
    if labels.shape != scan.shape:
        raise ValueError(f"labels {labels.shape} are not on the scan's grid {scan.shape}")
    voxel_ml = scan.voxel_volume_ml
    components, count = ndimage.label(labels == LESION, LESION_CONNECTIVITY)
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    boxes = ndimage.find_objects(components)
    slice_axis, superior = _slice_axis(scan.affine)
    in_plane = [axis for axis in range(3) if axis != slice_axis]
    in_plane_spacing = np.asarray(scan.spacing)[in_plane]
    lesions = []
    # Largest first; a stable sort keeps scipy's scan order between lesions of equal size.
    for rank, index in enumerate(np.argsort(-sizes, kind="stable"), start=1):
        box = boxes[index]
        mask = components[box] == index + 1
        offset = np.array([s.start for s in box])
        centroid = np.argwhere(mask).mean(axis=0) + offset
        slices = (box[slice_axis].start, box[slice_axis].stop - 1)
        if not superior:
            slices = (scan.shape[slice_axis] - 1 - slices[1], scan.shape[slice_axis] - 1 - slices[0])
        lesions.append(
            Lesion(
                id=rank,
                volume_ml=float(sizes[index]) * voxel_ml,
                longest_axial_diameter_mm=max(
                    _longest_diameter(plane, in_plane_spacing) for plane in np.moveaxis(mask, slice_axis, 0) if plane.any()
                ),
                mean_hu=float(scan.voxels[box][mask].mean()),
                confidence=None if lesion_probability is None else float(lesion_probability[box][mask].mean()) / 255.0,
                centroid_voxel=tuple(float(v) for v in centroid),
                centroid_mm=tuple(float(v) for v in scan.affine[:3, :3] @ centroid + scan.affine[:3, 3]),
                first_slice=int(slices[0]),
                last_slice=int(slices[1]),
            )
        )
    liver_ml = float(np.count_nonzero(labels)) * voxel_ml
    lesion_ml = float(sizes.sum()) * voxel_ml
    return LesionReport(lesions, liver_ml, lesion_ml, 100 * lesion_ml / liver_ml if liver_ml else None, (components, count))


def _slice_axis(affine: np.ndarray) -> tuple[int, bool]:
    """The array axis closest to inferior-superior, and whether it runs towards superior."""
    orientation = nib.io_orientation(affine)  # row = array axis: (RAS axis, direction)
    axis = int(np.flatnonzero(orientation[:, 0] == 2)[0])
    return axis, bool(orientation[axis, 1] > 0)


def _longest_diameter(plane: np.ndarray, spacing: np.ndarray) -> float:
    """Longest segment inside the union of a 2D mask's pixel squares, in mm (``spacing``: mm per axis).

    That is the largest distance between two corners of the pixels, attained at
    vertices of their convex hull; those are the outer corners of the first and last
    pixel of each row, so only these go to the hull.
    """
    rows = np.flatnonzero(plane.any(axis=1))
    first = plane[rows].argmax(axis=1)
    last = plane.shape[1] - 1 - plane[rows, ::-1].argmax(axis=1)
    corners = np.concatenate(
        [np.stack([rows + dr, columns], axis=1) for dr in (0, 1) for columns in (first, last + 1)]
    ).astype(float) * spacing
    vertices = corners[ConvexHull(corners).vertices]
    return float(np.sqrt(((vertices[:, None, :] - vertices[None, :, :]) ** 2).sum(axis=-1)).max())
