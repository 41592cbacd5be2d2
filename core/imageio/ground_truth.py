"""Ground truth: a reference label map, checked and brought onto a scan's voxel grid.

Accepted labels: LiTS/MSD (0 background, 1 liver, 2 lesion) or a binary liver
mask (0/1, lesions then not available). A reference on another grid, or stored
in another orientation, is brought onto the scan's grid through the two affines
(nearest neighbour in physical space), with a warning; one that does not overlap
the scan at all is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import nibabel as nib
import numpy as np
from scipy import ndimage

from core.affine import spacing_mm, voxel_volume_ml
from core.errors import LiverSegError
from core.imageio.nifti import read_label_map
from core.segmentation import BACKGROUND, LESION, LIVER

VALID_LABELS = frozenset({BACKGROUND, LIVER, LESION})
#: Warn when more than this fraction of the labelled volume is lost or gained by resampling.
_VOLUME_TOLERANCE = 0.05


class Grid(Protocol):
    """Anything with a voxel grid: a ``Scan``, or a ``LabelGrid`` when there is no image."""

    @property
    def shape(self) -> tuple[int, int, int]: ...

    @property
    def affine(self) -> np.ndarray: ...


class LabelGrid(NamedTuple):
    """A bare voxel grid: array shape and 4x4 voxel-to-RAS affine (mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """A reference label map on a scan's grid.

    Attributes:
        labels: uint8 labels, voxel for voxel on the scan's grid.
        liver_only: whether the reference is liver-only (no lesion label 2, a binary liver
            mask), which says nothing about lesions: its lesion metrics are not available.
        warnings: what the user should know (resampling, labels outside the scan, a partial field of view).
        covered: where the reference says anything, as a boolean mask on the scan's grid, when its field
            of view misses part of the scan; ``None`` when it covers the whole scan. Scores are measured
            inside it only (``core.pipeline.score``): outside, the reference is silent, not "background".
    """

    labels: np.ndarray
    liver_only: bool
    warnings: list[str] = field(default_factory=list)
    covered: np.ndarray | None = None

    @property
    def covered_share(self) -> float:
        """The share of the scan's voxels the reference covers (1.0 for all of them)."""
        return 1.0 if self.covered is None else float(self.covered.mean())


def load_ground_truth(path: Path, scan: Grid) -> GroundTruth:
    """Read a reference label map and return it on ``scan``'s grid.

    Raises:
        LiverSegError: labels other than 0/1/2, or a reference that does not overlap the scan.
    """
    path = Path(path)
    labels, affine = read_label_map(path)
    what = f"ground truth {path.name}"
    values = check_label_values(labels, what)
    on_grid, warnings = to_grid(labels, affine, scan, what)
    covered = coverage(labels.shape, affine, scan)
    if covered is not None:
        warnings.append(f"{what} covers only {covered.mean():.0%} of the scan (its field of view is smaller): the scores are "
                        "measured on that part only, and whatever the model found outside it is not counted")
    return GroundTruth(on_grid, liver_only=LESION not in values, warnings=warnings, covered=covered)


#: A reference whose field of view leaves out less than this share of the scan counts as covering it all.
_COVERED_ALL = 0.999


def coverage(shape: tuple[int, ...], affine: np.ndarray, target: Grid) -> np.ndarray | None:
    """Which voxels of ``target`` lie inside the field of view of a grid (``shape``, ``affine``); ``None`` if nearly all."""
    target_shape, target_affine = tuple(target.shape), np.asarray(target.affine, float)
    if tuple(shape) == target_shape and np.allclose(affine, target_affine, atol=1e-4):
        return None
    target_to_source = np.linalg.inv(np.asarray(affine, float)) @ target_affine
    inside = ndimage.affine_transform(np.ones(shape, np.uint8), target_to_source, output_shape=target_shape, order=0,
                                      mode="constant", cval=0).astype(bool)
    return None if inside.mean() >= _COVERED_ALL else inside


def check_label_values(labels: np.ndarray, what: str) -> set[int]:
    """The label values present; ``LiverSegError`` unless they are a subset of 0/1/2."""
    values = {int(v) for v in np.unique(labels)}
    unexpected = sorted(values - VALID_LABELS)
    if unexpected:
        shown = ", ".join(str(v) for v in unexpected[:8]) + (", ..." if len(unexpected) > 8 else "")
        raise LiverSegError(
            f"{what} has label values {shown}; expected 0 background, 1 liver, 2 lesion (LiTS/MSD) or a 0/1 liver mask. "
            "Relabel it (a 0/255 mask: divide by 255) and try again"
        )
    return values


def to_grid(labels: np.ndarray, affine: np.ndarray, target: Grid, what: str) -> tuple[np.ndarray, list[str]]:
    """``labels`` (with its voxel-to-RAS ``affine``) on ``target``'s grid, and the warnings that go with it.

    Nearest-neighbour sampling at each target voxel centre, mapped through both
    affines into the source's voxel indices; target voxels outside the source's
    field of view get 0. When the grids differ only in axis order, direction or a
    whole-voxel shift, voxel centres land on voxel centres and the mapping is exact.
    """
    shape, target_affine = tuple(target.shape), np.asarray(target.affine, float)
    affine = np.asarray(affine, float)
    if labels.shape == shape and np.allclose(affine, target_affine, atol=1e-4):
        return labels.astype(np.uint8, copy=False), []
    target_to_source = np.linalg.inv(affine) @ target_affine
    if not _fields_of_view_overlap(labels.shape, target_to_source, shape):
        raise LiverSegError(
            f"{what} does not overlap the scan: its field of view and the scan's share no voxel. "
            "Check that it belongs to this scan (and that both files keep their original geometry)"
        )
    resampled = ndimage.affine_transform(labels, target_to_source, output_shape=shape, order=0, mode="constant", cval=0)
    resampled = resampled.astype(np.uint8, copy=False)
    source_ml = np.count_nonzero(labels) * voxel_volume_ml(affine)
    target_ml = np.count_nonzero(resampled) * voxel_volume_ml(target_affine)
    if source_ml and not target_ml:
        raise LiverSegError(f"{what} labels nothing inside the scan; check that it belongs to this scan")
    source_grid = f"{'x'.join(map(str, labels.shape))} {_orientation(affine)} {_spacing_text(affine)} mm"
    target_grid = f"{'x'.join(map(str, shape))} {_orientation(target_affine)} {_spacing_text(target_affine)} mm"
    if _maps_centre_to_centre(target_to_source):
        warnings = [f"{what} is stored as {source_grid}, the scan as {target_grid}: mapped voxel for voxel (exact, no interpolation)"]
    else:
        warnings = [f"{what} is on another grid ({source_grid}) than the scan ({target_grid}): resampled (nearest neighbour)"]
    if source_ml and abs(target_ml - source_ml) > _VOLUME_TOLERANCE * source_ml:
        warnings.append(
            f"{what}: labelled volume {source_ml:.1f} mL in the file, {target_ml:.1f} mL on the scan's grid "
            "(part of it lies outside the scan, or the grids differ much in resolution)"
        )
    return resampled, warnings


def _fields_of_view_overlap(source_shape: tuple[int, ...], target_to_source: np.ndarray, target_shape: tuple[int, ...]) -> bool:
    """Whether the target grid's box, mapped into source voxel indices, meets the source's box (voxel edges at ±0.5)."""
    corners = np.array(np.meshgrid(*[(-0.5, n - 0.5) for n in target_shape], indexing="ij")).reshape(3, -1)
    mapped = target_to_source[:3, :3] @ corners + target_to_source[:3, 3:]
    low, high = mapped.min(axis=1), mapped.max(axis=1)
    return bool(np.all(high > -0.5) and np.all(low < np.asarray(source_shape) - 0.5))


def _maps_centre_to_centre(target_to_source: np.ndarray) -> bool:
    """Whether target voxel centres land exactly on source voxel centres (axes permuted, flipped or shifted by whole voxels)."""
    matrix, offset = target_to_source[:3, :3], target_to_source[:3, 3]
    signed_permutation = np.allclose(np.abs(matrix).sum(axis=0), 1, atol=1e-4) and np.allclose(matrix, np.round(matrix), atol=1e-4)
    return bool(signed_permutation and np.allclose(offset, np.round(offset), atol=1e-3))


def _orientation(affine: np.ndarray) -> str:
    return "".join(nib.aff2axcodes(affine))


def _spacing_text(affine: np.ndarray) -> str:
    return "x".join(f"{s:g}" for s in np.round(spacing_mm(affine), 3))
