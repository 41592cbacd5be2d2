import base64
import io
import math
import zlib

import numpy as np
import pytest
from PIL import Image

from core.segmentation import LESION, LIVER
from core.viewing.slice_stack import HOVER_CELLS, MAX_SIDE, MAX_STACK_PIXELS, build_stack, stack_pixel_mm
from core.viewing.slices import PLANES, THROUGH_AXIS, DisplayVolume, View, render
from tests.helpers.phantom import make_phantom

SHAPE, SPACING = (40, 32, 24), (6.0, 6.0, 8.0)


def shown(reference: bool = False, model_empty: bool = False) -> DisplayVolume:
    scan, labels = make_phantom(shape=SHAPE, spacing=SPACING, axcodes="LPS", noise_hu=5)
    return DisplayVolume.from_scan(scan, np.zeros_like(labels) if model_empty else labels, labels if reference else None)


def picture(uri: str) -> Image.Image:
    header, data = uri.split(",", 1)
    assert header == "data:image/jpeg;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.mark.parametrize("plane", PLANES)
def test_every_slice_is_drawn_once_as_the_report_draws_it(plane):
    volume = shown()
    stack = build_stack(volume, plane, View())
    assert len(stack.images) == volume.slice_count(plane) == len(stack.through_mm)
    index = volume.slice_count(plane) // 2
    expected = render(volume, plane, index, View()).rgb
    image = picture(stack.images[index])
    assert image.size == stack.size == (expected.shape[1], expected.shape[0])
    assert np.abs(np.asarray(image.convert("RGB"), np.int16) - expected).mean() < 3  # JPEG, not another drawing
    assert not stack.downsampled and stack.pixel_mm == pytest.approx(min(volume.pixel_mm(plane)))
    assert stack.through_mm == pytest.approx(list(volume.axis_mm(THROUGH_AXIS[plane])), abs=0.01)


def test_overlays_follow_the_view():
    volume = shown()
    plain, filled = build_stack(volume, "axial", View(liver=False, lesions=False)), build_stack(volume, "axial", View(opacity=1.0))
    index = volume.focus()[2]
    assert not np.array_equal(np.asarray(picture(plain.images[index])), np.asarray(picture(filled.images[index])))


def decoded(stack):
    payload = stack.payload()
    raw = zlib.decompress(base64.b64decode(payload["hover"]))
    cells = math.prod(payload["hoverShape"])
    return payload, np.frombuffer(raw[: 2 * cells], "<i2").reshape(payload["hoverShape"]), np.frombuffer(raw[2 * cells:], np.uint8)


@pytest.mark.parametrize("plane", PLANES)
def test_hover_cell_reads_the_hu_label_and_position_of_its_voxel(plane):
    """What the browser does with the payload (slice_viewer.js ``describe``), done here on the decoded grid."""
    volume = shown()
    stack = build_stack(volume, plane, View())
    payload, hu, codes = decoded(stack)
    assert np.array_equal(hu, stack.hover_hu) and np.array_equal(codes, stack.hover_labels.ravel())
    codes = codes.reshape(hu.shape)
    index, row, col = np.argwhere(codes == LESION)[0]
    step = payload["hoverStep"]
    position = [0.0, 0.0, 0.0]
    horizontal, vertical, through = payload["axes"]
    position[horizontal] = payload["origin"][0] + (col * step + step // 2) * payload["delta"][0]
    position[vertical] = payload["origin"][1] + (row * step + step // 2) * payload["delta"][1]
    position[through] = payload["throughMm"][index]
    voxel = tuple(int(np.argmin(np.abs(volume.axis_mm(axis) - position[axis]))) for axis in range(3))
    assert np.allclose([volume.axis_mm(a)[voxel[a]] for a in range(3)], position, atol=0.01)
    assert volume.labels[voxel] == LESION and hu[index, row, col] == volume.hu[voxel]
    assert payload["letters"] == (["A", "P", "S", "I"] if plane == "sagittal" else ["R", "L"] + payload["letters"][2:])


def test_hover_codes_carry_the_reference_where_there_is_one():
    stack = build_stack(shown(reference=True, model_empty=True), "axial", View())
    model, reference = stack.hover_labels % 3, stack.hover_labels // 3
    assert stack.has_reference and (model == 0).all() and {LIVER, LESION} <= set(np.unique(reference))
    assert not build_stack(shown(), "axial", View()).has_reference


def test_a_large_scan_is_downsampled_within_the_budget():
    """512 x 512 x 500 at 0.7 x 0.7 x 1 mm, without the memory: only shapes are read."""
    hu = np.broadcast_to(np.int16(0), (512, 512, 500))
    volume = DisplayVolume(hu, hu.astype(np.uint8, copy=False), None, np.diag([0.7, 0.7, 1.0, 1.0]), np.array([[0, 1], [1, 1], [2, 1]]),
                           hu.shape)
    for plane in PLANES:
        rows, cols = volume.plane(hu, plane, 0).shape
        row_mm, col_mm = volume.pixel_mm(plane)
        pixel = stack_pixel_mm(volume, plane)
        pixels = volume.slice_count(plane) * (rows * row_mm / pixel) * (cols * col_mm / pixel)
        assert pixels <= MAX_STACK_PIXELS * 1.0001 and max(rows * row_mm, cols * col_mm) / pixel <= MAX_SIDE + 1e-6
        assert pixel > min(row_mm, col_mm)  # so the page says it is downsampled


def test_a_small_budget_downsamples_and_the_hover_grid_stays_bounded():
    volume = shown()
    stack = build_stack(volume, "coronal", View(), max_pixels=32 * 500)
    assert stack.downsampled and volume.slice_count("coronal") * stack.size[0] * stack.size[1] <= 32 * 500
    assert max(stack.hover_hu.shape[1:]) <= HOVER_CELLS


@pytest.mark.parametrize(("plane", "budget", "message"), [("oblique", MAX_STACK_PIXELS, "unknown plane 'oblique'"),
                                                           ("axial", 10, "cannot show 24 slices")])
def test_bad_requests_say_what_is_wrong(plane, budget, message):
    with pytest.raises(ValueError, match=message):
        build_stack(shown(), plane, View(), max_pixels=budget)
