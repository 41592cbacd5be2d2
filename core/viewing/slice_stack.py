"""Every slice of one plane, packed once for the browser's slice viewer.

Why a stack: a radiologist scrolls with the mouse wheel through hundreds of slices,
and a server round trip per slice (a Streamlit rerun, a new picture) costs 140-150 ms
and can drop a move made during a rerun. So the page sends the whole plane once (the
CT at the chosen window with the chosen overlays, one JPEG per slice, and a coarse grid
of HU and labels for the hover readout); from then on the browser changes slices by
itself (``widgets/slice_viewer``). A change of window, overlay or opacity rebuilds the
stack, which is allowed to rerun.

Memory stays bounded whatever the scan: a plane is drawn at its finest native pixel,
at most ``MAX_SIDE`` pixels on the longer side, and coarser still when its slices would
hold more than ``MAX_STACK_PIXELS`` pixels together (a 512 x 512 x 500 scan's axial
plane is shown at about 310 pixels a side); ``SliceStack.downsampled`` says so, and the
page tells the user. The hover grid has at most ``HOVER_CELLS`` cells a side.
"""

from __future__ import annotations

import base64
import math
import zlib
from dataclasses import dataclass

import numpy as np

from core.viewing.slices import EDGE_LETTERS, PLANES, THROUGH_AXIS, DisplayVolume, View, render

#: Display pixels of all a plane's slices together: a 512 x 512 x 129 axial plane fits at full
#: resolution; decoded in the browser (RGBA) that is under 200 MB, its JPEGs about 7 MB.
MAX_STACK_PIXELS = 48_000_000
#: The longer side of a displayed slice, at most (pixels).
MAX_SIDE = 512
#: Hover cells on the longer side of a slice, at most; the readout shows the cell's centre voxel.
HOVER_CELLS = 128


@dataclass(frozen=True, eq=False)
class SliceStack:
    """One plane ready for the viewer.

    Attributes:
        plane: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        images: one ``data:image/jpeg;base64,...`` URI per slice, in slice order.
        size: (width, height) of every image in pixels.
        pixel_mm: side of one displayed pixel (mm).
        native_mm: the plane's finest native voxel side (mm); larger ``pixel_mm`` means downsampled.
        hover_hu: int16 HU of the hover grid, (slices, rows, columns), screen order.
        hover_labels: uint8 label codes on the same grid: model label, plus 3 x reference label when
            there is a reference (so 0-8), which the viewer turns into words.
        native_shape: (rows, columns) of a slice in native voxels.
        hover_step: native voxels per hover cell along each side.
        origin_mm: RAS+ coordinate (mm) of the native voxel at screen column 0 and row 0.
        delta_mm: change of that coordinate per native voxel to the right and downwards.
        through_mm: RAS+ coordinate (mm) of each slice along the through-axis.
        axes: canonical axis (0 R, 1 A, 2 S) of the screen's horizontal, vertical and through direction.
        has_reference: whether ``hover_labels`` carries a reference.
    """

    plane: str
    images: list[str]
    size: tuple[int, int]
    pixel_mm: float
    native_mm: float
    hover_hu: np.ndarray
    hover_labels: np.ndarray
    native_shape: tuple[int, int]
    hover_step: int
    origin_mm: tuple[float, float]
    delta_mm: tuple[float, float]
    through_mm: list[float]
    axes: tuple[int, int, int]
    has_reference: bool

    @property
    def downsampled(self) -> bool:
        return self.pixel_mm > self.native_mm * 1.001

    def payload(self) -> dict:
        """JSON-ready data for the viewer: the hover grid travels zlib-compressed (int16 little-endian HU, then the codes)."""
        hover = np.ascontiguousarray(self.hover_hu, dtype="<i2").tobytes() + np.ascontiguousarray(self.hover_labels).tobytes()
        return {
            "plane": self.plane,
            "images": self.images,
            "width": self.size[0],
            "height": self.size[1],
            "hover": base64.b64encode(zlib.compress(hover, 6)).decode(),
            "hoverShape": list(self.hover_hu.shape),
            "nativeShape": list(self.native_shape),
            "hoverStep": self.hover_step,
            "origin": list(self.origin_mm),
            "delta": list(self.delta_mm),
            "throughMm": self.through_mm,
            "axes": list(self.axes),
            "letters": list(EDGE_LETTERS[self.plane]),
            "hasReference": self.has_reference,
        }


def stack_pixel_mm(volume: DisplayVolume, plane: str, max_pixels: int = MAX_STACK_PIXELS) -> float:
    """The displayed pixel side (mm) of ``plane``: native, unless the side or the stack budget needs coarser."""
    row_mm, col_mm = volume.pixel_mm(plane)
    rows, cols = volume.plane(volume.hu, plane, 0).shape
    height_mm, width_mm = rows * row_mm, cols * col_mm
    budget = math.sqrt(volume.slice_count(plane) * height_mm * width_mm / max_pixels)
    return max(min(row_mm, col_mm), max(height_mm, width_mm) / MAX_SIDE, budget)


def build_stack(volume: DisplayVolume, plane: str, view: View, max_pixels: int = MAX_STACK_PIXELS) -> SliceStack:
    """Draw every slice of ``plane`` as ``view`` asks and sample its hover grid.

    Raises:
        ValueError: for an unknown plane, or a budget smaller than one pixel per slice.
    """
    if plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r}; expected one of {', '.join(PLANES)}")
    count = volume.slice_count(plane)
    if max_pixels < count:
        raise ValueError(f"a budget of {max_pixels} pixels cannot show {count} slices; give at least one pixel per slice")
    pixel = stack_pixel_mm(volume, plane, max_pixels)
    row_mm, col_mm = volume.pixel_mm(plane)
    rows, cols = volume.plane(volume.hu, plane, 0).shape
    longest = max(1, math.floor(max(rows * row_mm, cols * col_mm) / pixel))  # render()'s bound on the longer side
    images, size = [], (0, 0)
    for index in range(count):
        image = render(volume, plane, index, view, max_pixels=longest)
        size = (image.rgb.shape[1], image.rgb.shape[0])
        images.append("data:image/jpeg;base64," + base64.b64encode(image.jpeg()).decode())

    step = max(1, math.ceil(max(rows, cols) / HOVER_CELLS))
    cells = (slice(None), slice(step // 2, None, step), slice(step // 2, None, step))
    reference = volume.reference
    codes = volume.planes(volume.labels, plane)[cells]
    if reference is not None:
        codes = codes + 3 * volume.planes(reference, plane)[cells]
    horizontal, vertical = volume.plane_axes(plane)
    # Screen column 0 is the highest canonical index of the horizontal axis (the patient's right), row 0 the highest vertical.
    h_mm, v_mm = volume.axis_mm(horizontal), volume.axis_mm(vertical)
    return SliceStack(
        plane=plane,
        images=images,
        size=size,
        pixel_mm=float(max(pixel, min(row_mm, col_mm))),
        native_mm=float(min(row_mm, col_mm)),
        hover_hu=np.ascontiguousarray(volume.planes(volume.hu, plane)[cells]),
        hover_labels=np.ascontiguousarray(codes, dtype=np.uint8),
        native_shape=(rows, cols),
        hover_step=step,
        origin_mm=(float(h_mm[-1]), float(v_mm[-1])),
        delta_mm=(-float(volume.affine[horizontal, horizontal]), -float(volume.affine[vertical, vertical])),
        through_mm=[round(float(mm), 2) for mm in volume.axis_mm(THROUGH_AXIS[plane])],
        axes=(horizontal, vertical, THROUGH_AXIS[plane]),
        has_reference=reference is not None,
    )
