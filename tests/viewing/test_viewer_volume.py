import numpy as np
import pytest

from core.viewing.slices import DisplayVolume
from core.viewing.viewer_volume import (
    HU_RANGE,
    REFERENCE_FACTOR,
    ct_pack,
    geometry,
    label_pack,
    pack_voxel,
    thinning_step,
    unpack,
)
from tests.helpers.phantom import make_phantom

SHAPE, SPACING = (40, 32, 24), (6.0, 6.0, 8.0)


def shown(reference: bool = False) -> DisplayVolume:
    scan, labels = make_phantom(shape=SHAPE, spacing=SPACING, axcodes="LPS", noise_hu=5)
    return DisplayVolume.from_scan(scan, labels, labels if reference else None)


def test_the_ct_reaches_the_browser_as_canonical_hu_clipped_to_the_viewers_range():
    volume = shown()
    header, hu = unpack(ct_pack(volume))
    assert header["kind"] == "ct" and header["step"] == 1 and header["shape"] == list(volume.hu.shape)
    assert np.array_equal(hu, np.clip(volume.hu, *HU_RANGE))
    assert header["spacingMm"] == pytest.approx(list(volume.spacing))
    assert [header["originMm"][a] + 3 * header["deltaMm"][a] for a in range(3)] == pytest.approx(
        [volume.axis_mm(a)[3] for a in range(3)])


def test_label_codes_carry_the_model_and_the_reference():
    volume = shown(reference=True)
    header, codes = unpack(label_pack(volume))
    assert header["hasReference"]
    assert np.array_equal(codes % REFERENCE_FACTOR, volume.labels) and np.array_equal(codes // REFERENCE_FACTOR, volume.reference)
    assert not unpack(label_pack(shown()))[0]["hasReference"]


def test_a_pack_is_named_by_its_contents():
    volume = shown()
    assert unpack(ct_pack(volume))[0]["id"] == unpack(ct_pack(shown()))[0]["id"] != unpack(label_pack(volume))[0]["id"]


def test_a_large_scan_is_thinned_along_its_two_longest_axes_only():
    assert thinning_step((512, 512, 129)) == 1
    assert thinning_step((512, 512, 500)) == 2
    volume = shown()
    budget = 40 * 32 * 24 // 3
    header, hu = unpack(ct_pack(volume, budget))
    assert header["step"] == 2 and hu.shape == (20, 16, 24) and hu.size <= budget
    assert header["spacingMm"] == pytest.approx([12.0, 12.0, 8.0])
    assert geometry(volume, budget)["shape"] == list(hu.shape) == list(unpack(label_pack(volume, budget))[1].shape)
    assert pack_voxel(volume, (39, 31, 23), budget) == (19, 15, 23)
