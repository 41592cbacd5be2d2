"""``PretrainedPair``: the authors' recipe around the two networks, on stand-in networks and on the shared scans."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from core.inference.pretrained_pair import LESION_OUTPUT, LESION_TILE, PretrainedPair, tile_centres
from core.model.multipathway_unet import LESION, LIVER, output_shape


def test_the_trained_sizes_fit_the_networks():
    assert output_shape(LESION, LESION_TILE) == LESION_OUTPUT
    assert output_shape(LIVER, (189, 162, 162)) == (163, 136, 136)


def test_tiles_are_laid_as_the_authors_tiler_lays_them():
    """IRCAD 1.1's liver box at 1 x 1 x 3 mm: 36 tiles (4 x 3 x 3), starts 0, 92, 184 and 100 along x, ..."""
    centres = tile_centres((192, 158, 56))
    assert len(centres) == 36
    assert sorted({c[0] - LESION_OUTPUT[0] // 2 for c in centres}) == [0, 92, 100, 184]
    assert centres[:3] == [(46, 42, 21), (46, 42, 63), (46, 42, 35)]  # z varies fastest; the flush tile comes last
    assert tile_centres((50, 40, 20)) == [(25, 20, 10)]  # a box smaller than a tile: one tile, centred


def _stand_in(calls: list[str]):
    """Networks that find 'liver' where the input is soft tissue and 'lesion' where it is darker than the liver."""
    def run(name: str, array: np.ndarray) -> np.ndarray:
        calls.append(name)
        size = (163, 136, 136) if name == "liver" else LESION_OUTPUT
        margin = [(n - m) // 2 for n, m in zip(array.shape, size)]
        core = array[tuple(slice(a, a + m) for a, m in zip(margin, size))]
        return ((core > 0.0) & (core < 0.3)).astype(np.float32) if name == "liver" else ((core > -0.3) & (core < -0.05)).astype(np.float32)
    return run


def _small_body() -> np.ndarray:
    """A 3 mm block of soft tissue (40 HU) in air with a dark spot (-50 HU), off-centre so that flips show."""
    volume = np.full((40, 36, 30), -1000.0, np.float32)
    volume[6:30, 5:28, 3:26] = 40
    volume[10:14, 8:12, 6:10] = -50
    return volume


@pytest.fixture(scope="module")
def as_stored_in_ras():
    return PretrainedPair(_stand_in([])).predict(_small_body(), np.diag([3.0, 3.0, 3.0, 1.0]), lambda *a: None)


@pytest.mark.parametrize("order", ["flipped", "transposed"])
def test_labels_come_back_on_the_scans_own_grid(order, as_stored_in_ras):
    """The same body stored in another voxel order: the labels follow that scan's order exactly."""
    volume, affine = _small_body(), np.diag([3.0, 3.0, 3.0, 1.0])
    if order == "flipped":  # LPS storage: x and y run the other way
        stored, undo = volume[::-1, ::-1], lambda a: a[::-1, ::-1]
        affine = affine @ np.array([[-1, 0, 0, 39], [0, -1, 0, 35], [0, 0, 1, 0], [0, 0, 0, 1]])
    else:  # axes stored as (y, x, z)
        stored, undo = volume.transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)
        affine = affine[:, [1, 0, 2, 3]]
    calls: list[str] = []
    output = PretrainedPair(_stand_in(calls)).predict(np.ascontiguousarray(stored), affine, lambda *a: None)
    assert as_stored_in_ras.liver.any() and as_stored_in_ras.lesion.any()
    assert np.array_equal(undo(output.liver), as_stored_in_ras.liver)
    assert np.array_equal(undo(output.lesion), as_stored_in_ras.lesion)
    assert calls[0] == "liver" and set(calls[1:]) == {"lesion"}


def test_lesions_are_found_where_the_lesion_network_sees_them(as_stored_in_ras):
    spot = np.zeros((40, 36, 30), bool)
    spot[10:14, 8:12, 6:10] = True
    assert as_stored_in_ras.lesion[spot].mean() > 0.75  # its edge voxels mix with the tissue around it at 1 x 1 x 3 mm
    # resampled back with any overlap counting, as the authors do: the mask may grow by a voxel, not more
    assert not as_stored_in_ras.lesion[~ndimage.binary_dilation(spot)].any()


def test_no_liver_no_lesion_network():
    calls: list[str] = []
    air = np.full((60, 60, 40), -1000.0, np.float32)
    output = PretrainedPair(_stand_in(calls)).predict(air, np.diag([3.0, 3.0, 3.0, 1.0]), lambda *a: None)
    assert calls == ["liver"] and not output.liver.any() and not output.lesion.any()


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("case", ["ircad-1.1", "totalseg-example"])
def test_the_port_matches_the_authors_pipeline(shared_data, case):
    """../shared/reference/pyliverlesionseg: what a faithful run of the authors' package gave on two shared scans.
    The networks alone, before this project's clean-up (which removes lesions away from the liver)."""
    from core.imageio.nifti import read_scan
    from core.inference.segmenter import Segmenter

    segmenter = Segmenter("kul-liver-lesion-v1", device="cpu")
    scan = read_scan(shared_data / case / "ct.nii.gz")
    output, _ = segmenter._pair.predict(scan, lambda *a: None, [])
    reference = np.asarray(nib.load(shared_data.parent / "reference" / "pyliverlesionseg" / f"{case}_labels.nii.gz").dataobj)
    assert _dice(output.liver | output.lesion, reference > 0) >= 0.99
    if (reference == 2).any():
        assert _dice(output.lesion, reference == 2) >= 0.99
    else:
        assert not output.lesion.any()
