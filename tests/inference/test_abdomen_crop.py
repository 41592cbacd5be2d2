"""``abdomen_box``: the training recipe's crop, on a synthetic torso and on the shared IRCAD scan."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from core.inference.abdomen_crop import abdomen_box


def torso(width_voxels: int = 70, spacing: float = 3.0) -> np.ndarray:
    """An LPS-ordered torso at ``spacing`` mm: soft tissue, two lungs on top, a pelvis of bone below, air around."""
    shape = (width_voxels + 30, 80, 100)
    x, y, z = np.ogrid[: shape[0], : shape[1], : shape[2]]
    centre_x = shape[0] / 2
    volume = np.full(shape, -1000.0, np.float32)
    body = ((x - centre_x) / (width_voxels / 2)) ** 2 + ((y - 40) / 28) ** 2 <= 1
    volume[np.broadcast_to(body, shape)] = 40
    for side in (-1, 1):  # lungs from slice 65 up, beyond the field's top
        lung = ((x - centre_x - side * 14) / 10) ** 2 + ((y - 40) / 14) ** 2 + ((z - 85) / 20) ** 2 <= 1
        volume[lung] = -850
    for slab in range(6, 22, 3):  # the pelvis: bone in a few slices at the bottom, the most bone at slice 12
        volume[(slice(int(centre_x) - 25, int(centre_x) + 25), slice(50, 60), slice(slab, slab + 1 + (slab == 12)))] = 700
    volume[int(centre_x) - 3 : int(centre_x) + 3, 58:64, :] = 700  # the spine, all the way up
    return volume


def test_the_crop_runs_from_below_the_pelvis_to_above_the_lung_bases():
    volume = torso()
    x, y, z = abdomen_box(volume, (3.0, 3.0, 3.0))
    dome = z.stop - round(70 / 3.0)  # the crop ends 70 mm above the dome
    assert 65 <= dome <= 85  # between the lungs' base (slice 65) and their widest slice (85)
    assert z.start < 12  # below the pelvis' upper bone, with its 20 mm margin
    body_x = np.flatnonzero((volume > -150).any(axis=(1, 2)))
    assert body_x[0] - 3 <= x.start and x.stop <= body_x[-1] + 4  # the body, not the air around it
    assert (y.start, y.stop) != (0, volume.shape[1])


def test_a_wide_body_is_cut_to_the_trained_size():
    x, _, _ = abdomen_box(torso(width_voxels=200), (3.0, 3.0, 3.0))
    assert (x.stop - x.start) * 3.0 <= 489 + 3.0


def test_a_field_of_air_keeps_the_whole_scan():
    volume = np.full((20, 20, 20), -1000.0, np.float32)
    assert abdomen_box(volume, (3.0, 3.0, 3.0)) == (slice(0, 20), slice(0, 20), slice(0, 20))


@pytest.mark.shared_data
@pytest.mark.slow
def test_ircad_crop_is_the_authors_crop(shared_data):
    """The box the authors' own run took on IRCAD 1.1 (../shared/reference/pyliverlesionseg/README.md)."""
    image = nib.as_closest_canonical(nib.load(shared_data / "ircad-1.1" / "ct.nii.gz"))
    lps = np.ascontiguousarray(np.flip(np.asarray(image.dataobj, np.float32), (0, 1)))
    box = abdomen_box(lps, image.header.get_zooms())
    assert box == (slice(4, 509), slice(56, 460), slice(0, 129))
