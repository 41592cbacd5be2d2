"""Slices of a CT and its label maps as a radiologist reads them, rendered to RGB images.

The viewer and the report show every scan the same way, whatever order its
voxels are stored in: the volume is brought to the closest canonical (RAS+)
orientation once, and planes are cut from it in the radiological convention:

- axial: the patient's right on the screen's left, anterior up;
- coronal: the patient's right on the screen's left, superior up;
- sagittal: anterior on the screen's left, superior up.

Images are resampled to square pixels so that every plane keeps its physical
aspect ratio (a 0.7 x 0.7 x 5 mm scan does not look squashed in coronal view).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage

from core.affine import spacing_mm
from core.scan import Scan
from core.segmentation import LESION, LESION_CONNECTIVITY, LIVER

PLANES = ("axial", "coronal", "sagittal")
#: Which canonical axis (0 R, 1 A, 2 S) each plane cuts through.
THROUGH_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}
#: Screen edge letters (left, right, top, bottom) of each plane.
EDGE_LETTERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}
#: Window presets as (width, level) in HU.
WINDOW_PRESETS = {"Abdomen": (400.0, 40.0), "Liver": (150.0, 90.0), "Bone": (2500.0, 480.0)}

# Fill and outline colours (RGB); blue/orange/green/magenta stay distinct for the
# common colour-vision deficiencies.
LIVER_RGB = (40, 140, 255)
LESION_RGB = (255, 165, 0)
REFERENCE_LIVER_RGB = (0, 230, 118)
REFERENCE_LESION_RGB = (255, 40, 220)
AGREE_RGB = (0, 200, 140)
MODEL_ONLY_RGB = (255, 120, 0)
MISSED_RGB = (230, 40, 230)

#: HU are stored as int16 for display (half the memory of float32, 1 HU steps).
_HU_RANGE = (-32768, 32767)


@dataclass(frozen=True)
class View:
    """How a slice is drawn.

    Attributes:
        width: window width in HU (the range of HU spread over black to white).
        level: window centre in HU.
        opacity: of the coloured fills, 0 (invisible) to 1 (opaque).
        liver: fill the model's liver.
        lesions: fill the model's lesions.
        reference: outline the reference (ground-truth) liver and lesions, when there is one.
        compare: ``None`` to show the model's result; ``"liver"`` or ``"lesion"`` to colour
            agreement with the reference for that structure instead.
    """

    width: float = WINDOW_PRESETS["Abdomen"][0]
    level: float = WINDOW_PRESETS["Abdomen"][1]
    opacity: float = 0.4
    liver: bool = True
    lesions: bool = True
    reference: bool = True
    compare: str | None = None


def legend(view: View, has_reference: bool) -> list[tuple[tuple[int, int, int], str, bool]]:
    """What the colours in a slice mean, in plain words: (RGB, words, is_outline)."""
    if view.compare and has_reference:
        what = "liver" if view.compare == "liver" else "lesions"
        return [
            (AGREE_RGB, f"{what.capitalize()}: model and reference agree", False),
            (MODEL_ONLY_RGB, "Found by the model only (possible false alarm)", False),
            (MISSED_RGB, "In the reference only (missed by the model)", False),
        ]
    entries = []
    if view.liver:
        entries.append((LIVER_RGB, "Liver found by the model", False))
    if view.lesions:
        entries.append((LESION_RGB, "Lesion (possible tumour) found by the model", False))
    if view.reference and has_reference:
        entries.append((REFERENCE_LIVER_RGB, "Reference liver outline", True))
        entries.append((REFERENCE_LESION_RGB, "Reference lesion outline", True))
    return entries


@dataclass(frozen=True, eq=False)
class DisplayVolume:
    """A scan and its label maps in canonical RAS+ voxel order, ready to be sliced.

    Attributes:
        hu: int16 HU, indexed [R, A, S] (index grows towards the patient's right,
            anterior and superior).
        labels: uint8 model labels on the same grid.
        reference: uint8 reference labels on the same grid, or ``None``.
        affine: canonical voxel index -> RAS+ mm.
        file_to_canonical: nibabel orientation transform from the file's voxel order.
        file_shape: the scan's shape in file order.
    """

    hu: np.ndarray
    labels: np.ndarray
    reference: np.ndarray | None
    affine: np.ndarray
    file_to_canonical: np.ndarray
    file_shape: tuple[int, int, int]

    @classmethod
    def from_scan(cls, scan: Scan, labels: np.ndarray, reference: np.ndarray | None = None) -> DisplayVolume:
        """Reorient ``scan`` and label maps (on the scan's grid) to canonical order."""
        transform = nib.orientations.io_orientation(scan.affine)
        affine = scan.affine @ nib.orientations.inv_ornt_aff(transform, scan.shape)

        def canonical(array: np.ndarray, dtype) -> np.ndarray:
            return np.ascontiguousarray(nib.orientations.apply_orientation(array, transform), dtype=dtype)

        hu = canonical(np.clip(np.rint(scan.voxels), *_HU_RANGE), np.int16)
        return cls(
            hu=hu,
            labels=canonical(labels, np.uint8),
            reference=None if reference is None else canonical(reference, np.uint8),
            affine=affine,
            file_to_canonical=transform,
            file_shape=scan.shape,
        )

    def with_labels(self, labels: np.ndarray) -> DisplayVolume:
        """The same scan with another label map (on the scan's grid, in file order), sharing the HU: a display copy
        can then be made before the labels exist (while the model runs)."""
        return DisplayVolume(self.hu, self.canonical(labels).astype(np.uint8), self.reference, self.affine, self.file_to_canonical,
                             self.file_shape)

    def with_reference(self, reference_canonical: np.ndarray | None) -> DisplayVolume:
        """The same volume with another (already canonical) reference, sharing the arrays."""
        return DisplayVolume(self.hu, self.labels, reference_canonical, self.affine, self.file_to_canonical, self.file_shape)

    def canonical(self, array_in_file_order: np.ndarray) -> np.ndarray:
        """An array on the scan's grid, in canonical order (for a reference loaded later)."""
        return np.ascontiguousarray(nib.orientations.apply_orientation(array_in_file_order, self.file_to_canonical))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along R, A, S in mm."""
        return spacing_mm(self.affine)

    def slice_count(self, plane: str) -> int:
        return int(self.hu.shape[THROUGH_AXIS[plane]])

    def canonical_index(self, file_voxel) -> tuple[int, int, int]:
        """The canonical voxel index of a voxel given in the file's order (e.g. a lesion centroid)."""
        index = np.zeros(3)
        for axis, (target, flip) in enumerate(self.file_to_canonical):
            value = float(file_voxel[axis])
            index[int(target)] = self.file_shape[axis] - 1 - value if flip < 0 else value
        return tuple(int(round(v)) for v in index)  # type: ignore[return-value]

    def focus(self) -> tuple[int, int, int]:
        """Where to look first (canonical voxel): the largest lesion's centre, else the liver's, else the middle."""
        components, count = ndimage.label(self.labels == LESION, LESION_CONNECTIVITY)
        if count:
            mask = components == np.argmax(np.bincount(components.ravel())[1:]) + 1
        elif (self.labels >= LIVER).any():
            mask = self.labels >= LIVER
        else:
            return tuple(n // 2 for n in self.hu.shape)  # type: ignore[return-value]
        return tuple(int(round(v)) for v in ndimage.center_of_mass(mask))  # type: ignore[return-value]

    def slice_through(self, plane: str, canonical_voxel) -> int:
        """The slice number of ``plane`` that contains a canonical voxel index."""
        return int(np.clip(canonical_voxel[THROUGH_AXIS[plane]], 0, self.slice_count(plane) - 1))

    def axis_mm(self, axis: int) -> np.ndarray:
        """RAS+ coordinate (mm) of each voxel centre along a canonical axis.

        Exact for axis-aligned scans; for an oblique scan it is the nearest axis's
        component, which is what a position readout can show in one number.
        """
        return self.affine[axis, 3] + self.affine[axis, axis] * np.arange(self.hu.shape[axis])

    def plane_axes(self, plane: str) -> tuple[int, int]:
        """Canonical axes along the screen's (horizontal, vertical) for ``plane``."""
        return tuple(a for a in range(3) if a != THROUGH_AXIS[plane])  # type: ignore[return-value]

    def planes(self, array: np.ndarray, plane: str) -> np.ndarray:
        """All slices of a canonical array in screen order, (slice, row, column); a view, no copy.

        Row 0 is the top of the screen, column 0 its left. In canonical order every plane's
        two remaining axes point towards the screen's left (R, or A for sagittal) and top
        (A or S), so one transpose and two flips serve.
        """
        return np.moveaxis(array, THROUGH_AXIS[plane], 0).transpose(0, 2, 1)[:, ::-1, ::-1]

    def plane(self, array: np.ndarray, plane: str, index: int) -> np.ndarray:
        """One slice of a canonical array in screen order (see ``planes``)."""
        return self.planes(array, plane)[index]

    def pixel_mm(self, plane: str) -> tuple[float, float]:
        """Height and width of one voxel of ``plane`` on screen (mm)."""
        horizontal, vertical = self.plane_axes(plane)
        return self.spacing[vertical], self.spacing[horizontal]


def window(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """HU to 8-bit grey: ``level - width/2`` and below black, ``level + width/2`` and above white."""
    low = level - width / 2.0
    scaled = (hu.astype(np.float32) - low) * (255.0 / max(width, 1.0))
    return np.clip(scaled, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SliceImage:
    """A rendered slice: RGB pixels in screen order, square, ``pixel_mm`` on a side."""

    rgb: np.ndarray
    pixel_mm: float

    def png(self) -> bytes:
        """Lossless PNG bytes, for the report."""
        return self._encode(format="PNG")

    def jpeg(self) -> bytes:
        """JPEG bytes for the viewer, sent on every slice move: a third of the PNG's size, and at
        quality 90 without chroma subsampling the loss hides in the CT's own noise."""
        return self._encode(format="JPEG", quality=90, subsampling=0)

    def _encode(self, **options) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(self.rgb)).save(buffer, **options)
        return buffer.getvalue()


def render(volume: DisplayVolume, plane: str, index: int, view: View, max_pixels: int = 512) -> SliceImage:
    """Draw slice ``index`` of ``plane`` with the overlays ``view`` asks for.

    The slice is resampled to square pixels at its finest native resolution, at most
    ``max_pixels`` on the longer side: grey values bilinearly, labels by nearest voxel.
    """
    row_mm, col_mm = volume.pixel_mm(plane)
    hu = volume.plane(volume.hu, plane, index)
    rows, cols = hu.shape
    pixel = max(min(row_mm, col_mm), max(rows * row_mm, cols * col_mm) / max_pixels)
    size = (max(1, round(cols * col_mm / pixel)), max(1, round(rows * row_mm / pixel)))  # PIL: (width, height)

    def resized(array: np.ndarray, resample) -> np.ndarray:
        array = np.ascontiguousarray(array)
        if array.shape == size[::-1]:
            return array
        return np.asarray(Image.fromarray(array).resize(size, resample))

    grey = resized(window(hu, view.width, view.level), Image.BILINEAR)
    labels = resized(volume.plane(volume.labels, plane, index), Image.NEAREST)
    reference = None if volume.reference is None else resized(volume.plane(volume.reference, plane, index), Image.NEAREST)
    rgb = np.repeat(grey[..., np.newaxis], 3, axis=2).astype(np.float32)

    def fill(mask: np.ndarray, colour) -> None:
        rgb[mask] = rgb[mask] * (1.0 - view.opacity) + np.asarray(colour, np.float32) * view.opacity

    if view.compare and reference is not None:
        if view.compare == "liver":
            model, truth = labels >= LIVER, reference >= LIVER
        else:
            model, truth = labels == LESION, reference == LESION
        fill(model & truth, AGREE_RGB)
        fill(model & ~truth, MODEL_ONLY_RGB)
        fill(~model & truth, MISSED_RGB)
    else:
        if view.liver:
            fill(labels == LIVER, LIVER_RGB)
        if view.lesions:
            fill(labels == LESION, LESION_RGB)
        if view.reference and reference is not None:
            thickness = max(1, round(max(size) / 256))  # about 2 screen pixels at usual sizes
            for mask, colour in ((reference >= LIVER, REFERENCE_LIVER_RGB), (reference == LESION, REFERENCE_LESION_RGB)):
                rgb[outline(mask, thickness)] = colour
    return SliceImage(np.rint(rgb).astype(np.uint8), pixel)


def outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """The inner boundary of a 2D mask, ``thickness`` pixels wide."""
    if not mask.any():
        return mask
    return mask & ~ndimage.binary_erosion(mask, iterations=thickness, border_value=0)
