import numpy as np
import pytest

from core.viewing.figures import surface_figure
from core.viewing.slices import DisplayVolume
from tests.helpers.phantom import make_phantom


@pytest.fixture(scope="module")
def shown():
    scan, labels = make_phantom(shape=(40, 32, 24), spacing=(6.0, 6.0, 8.0), axcodes="LPS", noise_hu=0)
    return DisplayVolume.from_scan(scan, labels, labels)


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
