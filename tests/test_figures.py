import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from core.figures import HOVER_CELLS, slice_figure, surface_figure
from core.phantom import make_phantom
from core.scan import Scan
from core.segmentation import LESION
from core.slices import PLANES, DisplayVolume, View


@pytest.fixture(scope="module")
def shown():
    scan, labels = make_phantom(shape=(40, 32, 24), spacing=(6.0, 6.0, 8.0), axcodes="LPS", noise_hu=0)
    return DisplayVolume.from_scan(scan, labels, labels)


@pytest.mark.parametrize("plane", PLANES)
def test_slice_figure_keeps_millimetres_and_radiological_directions(shown, plane):
    figure = slice_figure(shown, plane, 5, View())
    layout = figure.layout
    left, right = layout.xaxis.range
    bottom, top = layout.yaxis.range
    assert left > right and top > bottom  # x reversed: the patient's right (or anterior) on the left
    assert layout.yaxis.scaleanchor == "x" and layout.yaxis.scaleratio == 1
    (image,) = layout.images
    assert (image.x, image.y, image.sizex, image.sizey) == (left, top, left - right, top - bottom)
    picture = Image.open(io.BytesIO(base64.b64decode(image.source.split(",", 1)[1])))
    assert picture.format == "JPEG"
    assert picture.width / picture.height == pytest.approx((left - right) / (top - bottom), rel=0.05)
    assert [a.text for a in layout.annotations][:2] == (["A", "P"] if plane == "sagittal" else ["R", "L"])


def test_hover_reads_hu_position_and_label(shown):
    index = shown.focus()[2]
    (hover,) = [t for t in slice_figure(shown, "axial", index, View()).data if isinstance(t, go.Heatmap)]
    x, y, z, text = np.asarray(hover.x), np.asarray(hover.y), np.asarray(hover.z), np.asarray(hover.text)
    assert (np.diff(x) > 0).all() and (np.diff(y) > 0).all()
    row, col = np.argwhere(text == "lesion")[0]
    i = int(np.argmin(np.abs(shown.axis_mm(0) - x[col])))
    j = int(np.argmin(np.abs(shown.axis_mm(1) - y[row])))
    assert shown.labels[i, j, index] == LESION and z[row, col] == shown.hu[i, j, index]
    assert f"{shown.axis_mm(2)[index]:.1f}) mm" in hover.hovertemplate


def test_hover_names_disagreement_with_the_reference():
    scan, labels = make_phantom(shape=(40, 32, 24), spacing=(6.0, 6.0, 8.0), noise_hu=0)
    shown = DisplayVolume.from_scan(scan, np.zeros_like(labels), labels)
    (hover,) = slice_figure(shown, "axial", shown.focus()[2], View()).data
    assert "model: none, reference: liver" in set(np.asarray(hover.text).ravel())


def test_a_full_size_slice_stays_small():
    hu = np.random.default_rng(0).normal(40, 30, (512, 512, 8)).astype(np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[100:300, 150:400] = 1
    shown = DisplayVolume.from_scan(Scan(hu, np.diag([0.7, 0.7, 5.0, 1.0])), labels, labels)
    figure = slice_figure(shown, "axial", 4, View())
    assert max(np.asarray(figure.data[0].z).shape) <= HOVER_CELLS
    assert len(figure.to_json()) < 400_000  # bytes on every slider move, noise-filled slice included


def test_surface_figure_has_liver_and_lesions_within_the_volume(shown):
    figure = surface_figure(shown, max_triangles=3000)
    assert [t.name for t in figure.data] == ["Liver", "Lesions"]
    corner = shown.affine[:3, 3]
    far = corner + shown.affine[:3, :3] @ (np.array(shown.hu.shape) - 1)
    for mesh in figure.data:
        points = np.c_[mesh.x, mesh.y, mesh.z]
        assert (points >= np.minimum(corner, far) - 1e-3).all() and (points <= np.maximum(corner, far) + 1e-3).all()
    assert sum(len(mesh.i) for mesh in figure.data) <= 3000
    assert figure.layout.scene.aspectmode == "data"
