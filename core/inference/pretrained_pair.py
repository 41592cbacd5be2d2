"""``PretrainedPair``: the two pretrained networks of Tang et al. (2020) run as they were trained.

Stage 1, the whole liver: the abdomen cropped by the training recipe
(``core.inference.abdomen_crop``), resampled to 1.5 mm, median-filtered (3 voxels),
resampled to 3 mm (``core.inference.zoom``), HU clipped to [-200, 200] and scaled to
[-0.5, 0.5], in RAS order, placed in the trained 189 x 162 x 162 canvas (zeros around it).
The liver is the largest component of the probability above 0.5 after an 18-neighbour
erosion, dilated back, and resampled onto the scan's voxels.

Stage 2, lesions: the scan's HU scaled the same way at 1 x 1 x 3 mm, only inside the
liver dilated by two voxels (-0.5 elsewhere), in the trained tiles of 180 x 172 x 86
voxels whose centres 92 x 84 x 42 are kept, laid as the authors' tiler lays them. Tiles
whose kept voxels are all overwritten by later tiles, or hold no liver, are not run: their
output could not reach the labels. A lesion is a probability above 0.5, resampled onto
the scan's voxels.

Why the canvas and tile sizes are fixed: both networks normalise every feature map over
the whole input, so a different canvas (even more zero padding) changes the output.
With these sizes the labels agree with the authors' own pipeline at Dice 1.000 on the
shared IRCAD 1.1 and TotalSegmentator scans (``tests/inference/test_pretrained_pair.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from scipy import ndimage

from core.imageio.sitk_image import median_3
from core.inference.abdomen_crop import abdomen_box
from core.inference.zoom import linear_zoom_of_box, reach, zoom, zoomed_shape

Report = Callable[[str, float], None]

HU_SCALE, HU_CLIP = 1000.0, 0.2  # HU / 1000 clipped to +-0.2, times 2.5: [-200, 200] HU -> [-0.5, 0.5]
OUTSIDE_LIVER = -0.5
LIVER_MEDIAN_MM, LIVER_MM, LESION_MM = 1.5, 3.0, (1.0, 1.0, 3.0)
LIVER_CANVAS, LIVER_OUTPUT = (189, 162, 162), (163, 136, 136)
LESION_TILE, LESION_OUTPUT = (180, 172, 86), (92, 84, 42)
THRESHOLD = 0.5
#: The erosion and dilation of the liver and of its mask for the lesion network (18-neighbour cross).
_CROSS = ndimage.generate_binary_structure(3, 2)


def scaled_hu(hu: np.ndarray) -> np.ndarray:
    """HU clipped to [-200, 200] and scaled to [-0.5, 0.5], as both networks were trained."""
    return np.clip(hu / HU_SCALE, -HU_CLIP, HU_CLIP) * (0.5 / HU_CLIP)


@dataclass
class PairOutput:
    """What the two networks found, on the scan's own voxel grid."""

    liver: np.ndarray  # bool
    lesion: np.ndarray  # bool
    lesion_probability: np.ndarray  # float32, 0-1
    seconds: dict[str, float] = field(default_factory=dict)
    tiles: tuple[int, int] = (0, 0)  # lesion tiles run, of those the authors' tiler lays


class Canonical:
    """A scan's voxels (HU, or a mask of its grid) in RAS order, the networks' order, and the way back."""

    def __init__(self, voxels: np.ndarray, affine: np.ndarray) -> None:
        self._ornt = nib.orientations.io_orientation(affine)
        self.voxels = np.ascontiguousarray(nib.orientations.apply_orientation(voxels, self._ornt), np.float32)
        canonical_affine = affine @ nib.orientations.inv_ornt_aff(self._ornt, voxels.shape)
        self.spacing = np.sqrt((canonical_affine[:3, :3] ** 2).sum(axis=0))
        self._back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), self._ornt)

    def to_scan(self, array: np.ndarray) -> np.ndarray:
        """``array`` (RAS order) in the scan's own voxel order."""
        return np.ascontiguousarray(nib.orientations.apply_orientation(array, self._back))


def _liver_input(hu_lps: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, tuple[slice, ...]]:
    """The liver network's 3 mm input (RAS order) and the abdomen box it shows (LPS array slices)."""
    box = abdomen_box(hu_lps, spacing)
    image = zoom(hu_lps[box], spacing / LIVER_MEDIAN_MM)
    image = median_3(image)
    image = zoom(image, [LIVER_MEDIAN_MM / LIVER_MM] * 3)
    return np.flip(scaled_hu(image), (0, 1)), box


def _in_canvas(image: np.ndarray) -> tuple[np.ndarray, tuple[slice, ...]]:
    """``image`` in the zero canvas where the authors' tiler centres it, and where its voxels are in the output."""
    canvas = np.zeros(LIVER_CANVAS, np.float32)
    inside, output = [], []
    for n, size, out in zip(image.shape, LIVER_CANVAS, LIVER_OUTPUT):
        if n > out:
            raise ValueError(f"abdomen crop of {n} voxels exceeds the liver network's {out}")
        start = size // 2 - math.ceil((n - 1) / 2)
        inside.append(slice(start, start + n))
        margin = (size - out) // 2
        output.append(slice(start - margin, start - margin + n))
    canvas[tuple(inside)] = image
    return canvas, tuple(output)


def liver_input_and_target(voxels: np.ndarray, affine: np.ndarray, liver: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The liver network's canvas for a scan and the liver mask (scan's grid) as its output should be, for fine-tuning."""
    scan = Canonical(voxels, affine)
    image, box = _liver_input(np.flip(scan.voxels, (0, 1)), scan.spacing)
    canvas, output = _in_canvas(image)
    mask = np.flip(Canonical(liver.astype(np.float32), affine).voxels, (0, 1))[box]
    mask = zoom(zoom(mask, scan.spacing / LIVER_MEDIAN_MM), [LIVER_MEDIAN_MM / LIVER_MM] * 3) > THRESHOLD
    target = np.zeros(LIVER_OUTPUT, np.float32)
    target[output] = np.flip(mask, (0, 1))
    return canvas, target


def _largest_liver(probability_lps: np.ndarray) -> np.ndarray | None:
    """The recipe's liver mask on the 3 mm grid: threshold, erode, largest component, dilate."""
    eroded = ndimage.binary_erosion(probability_lps > THRESHOLD, _CROSS)
    components, count = ndimage.label(eroded)
    if count == 0:
        return None
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return ndimage.binary_dilation(components == sizes.argmax(), _CROSS)


def tile_centres(box_shape) -> list[tuple[int, int, int]]:
    """The lesion tiles' centres in the order the authors' tiler visits them: from 0 in steps of the
    kept size, plus one flush with the far end; a later tile overwrites an earlier one where they meet."""
    per_axis = []
    for n, out in zip(box_shape, LESION_OUTPUT):
        step = min(n, out)
        starts = list(range(0, n, step)) + ([n - step] if n % step else [])
        per_axis.append([math.ceil(start + (step - 1) / 2) for start in starts])
    return [(x, y, z) for x in per_axis[0] for y in per_axis[1] for z in per_axis[2]]


def _kept(centre, box_shape) -> tuple[slice, ...]:
    """The box voxels a tile's output covers."""
    return tuple(slice(max(0, c - out // 2), min(n, c + out // 2)) for c, out, n in zip(centre, LESION_OUTPUT, box_shape))


class LesionView:
    """What the lesion network sees of a scan with a liver mask (RAS order), inference and fine-tuning alike.

    Attributes:
        image: the scaled HU at 1 x 1 x 3 mm inside the liver dilated by two voxels (-0.5 elsewhere),
            cut to that region's box.
        liver: the liver mask on the same grid and box.
        box: the box in the 1 x 1 x 3 mm grid of the whole scan, whose shape is ``grid_shape``.
    """

    def __init__(self, scan: Canonical, liver: np.ndarray) -> None:
        self.factors = scan.spacing / np.array(LESION_MM)
        self.grid_shape = zoomed_shape(liver.shape, self.factors)
        # Only the part of the 1 x 1 x 3 mm grid the liver reaches is resampled, two voxels wider for the
        # dilation: the rest of the scan (nine tenths of it) cannot be in the box.
        region = tuple(slice(max(0, r.start - 2), min(n, r.stop + 2)) for r, n in
                       zip(reach(ndimage.find_objects(liver.view(np.uint8))[0], liver.shape, self.factors), self.grid_shape))
        resampled_liver = zoom(liver, self.factors, region) > THRESHOLD
        near_liver = ndimage.binary_dilation(resampled_liver, ndimage.iterate_structure(_CROSS, 2))
        inner = ndimage.find_objects(near_liver.view(np.uint8))[0]
        self.box = tuple(slice(r.start + b.start, r.start + b.stop) for r, b in zip(region, inner))
        hu = np.clip(zoom(scaled_hu(scan.voxels), self.factors, self.box), -0.5, 0.5)
        self.image = np.where(near_liver[inner], hu, OUTSIDE_LIVER).astype(np.float32)
        self.liver = resampled_liver[inner]

    def resampled(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` (the scan's grid, RAS order) on this view's grid and box, as the liver is."""
        return zoom(mask, self.factors, self.box) > THRESHOLD


class PretrainedPair:
    """The recipe around the two networks, whatever runs them.

    Args:
        run: ``run(network, array) -> probabilities`` for ``network`` ``"liver"`` or ``"lesion"`` and one
            whole input; ``core.inference.segmenter`` supplies it, with the device, the precision and
            the CPU fallback on out-of-memory.
    """

    def __init__(self, run: Callable[[str, np.ndarray], np.ndarray]) -> None:
        self._run = run

    def predict(self, voxels: np.ndarray, affine: np.ndarray, report: Report) -> PairOutput:
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        report("abdomen", 0.0)
        scan = Canonical(voxels, affine)
        hu_lps = np.flip(scan.voxels, (0, 1))  # the recipe's crop is defined on LPS arrays
        image, box = _liver_input(hu_lps, scan.spacing)
        seconds["abdomen"] = time.perf_counter() - start

        start = time.perf_counter()
        report("liver_network", 0.0)
        canvas, output = _in_canvas(image)
        probability = self._run("liver", canvas)[output]
        seconds["liver_network"] = time.perf_counter() - start
        report("liver_network", 1.0)

        start = time.perf_counter()
        liver_lps = np.zeros(hu_lps.shape, bool)
        lesion_probability = np.zeros(scan.voxels.shape, np.float32)
        tiles = (0, 0)
        mask = _largest_liver(np.flip(probability, (0, 1)))
        if mask is not None:  # back onto the crop as the recipe does (linear, rounded to 0 or 1), then lesions
            mask_box = ndimage.find_objects(mask.view(np.uint8))[0]
            part, region = linear_zoom_of_box(mask[mask_box], mask_box, mask.shape, hu_lps[box].shape)
            liver_lps[box][region] = part >= 0.5
            lesion_probability, tiles = self._lesions(scan, np.flip(liver_lps, (0, 1)), report)
        liver = np.flip(liver_lps, (0, 1))
        seconds["lesion_network"] = time.perf_counter() - start
        return PairOutput(
            liver=scan.to_scan(liver), lesion=scan.to_scan(lesion_probability > 0),
            lesion_probability=scan.to_scan(np.clip(lesion_probability, 0, 1)), seconds=seconds, tiles=tiles,
        )

    def _lesions(self, scan: Canonical, liver: np.ndarray, report: Report) -> tuple[np.ndarray, tuple[int, int]]:
        """Lesion probability on the scan's grid (RAS order), positive where the recipe marks a lesion."""
        view = LesionView(scan, liver)
        probability, tiles = self._tiled(view.image, view.liver, report)
        # The recipe takes the lesion mask back with linear interpolation, any overlap counting: a
        # voxel is lesion where the interpolated mask is positive. The probability travels the same way.
        part, region = linear_zoom_of_box(np.where(probability > THRESHOLD, probability, 0), view.box, view.grid_shape, scan.voxels.shape)
        on_scan = np.zeros(scan.voxels.shape, np.float32)
        on_scan[region] = part
        return on_scan, tiles

    def _tiled(self, image: np.ndarray, liver: np.ndarray, report: Report) -> tuple[np.ndarray, tuple[int, int]]:
        centres = tile_centres(image.shape)
        owner = np.full(image.shape, -1, np.int32)
        for index, centre in enumerate(centres):
            owner[_kept(centre, image.shape)] = index
        needed = sorted(set(np.unique(owner[liver]).tolist()) - {-1})
        probability = np.zeros(image.shape, np.float32)
        for done, index in enumerate(needed):
            report("lesion_network", done / len(needed))
            centre = centres[index]
            tile = np.zeros(LESION_TILE, np.float32)
            source, target = [], []
            for c, size, n in zip(centre, LESION_TILE, image.shape):
                low = c - size // 2
                source.append(slice(max(0, low), min(n, low + size)))
                target.append(slice(max(0, low) - low, min(n, low + size) - low))
            tile[tuple(target)] = image[tuple(source)]
            out = self._run("lesion", tile)
            kept = _kept(centre, image.shape)
            in_out = tuple(slice(k.start - (c - size // 2), k.stop - (c - size // 2)) for k, c, size in zip(kept, centre, LESION_OUTPUT))
            mine = owner[kept] == index
            probability[kept][mine] = out[in_out][mine]
        report("lesion_network", 1.0)
        return probability, (len(needed), len(centres))
