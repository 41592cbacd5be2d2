"""Anatomical sanity warnings: each fires on the implausible liver it names, and not on a plausible one."""

from __future__ import annotations

import numpy as np
import pytest

from core.postprocessing.anatomy import anatomy_warnings
from core.segmentation import LIVER
from tests.helpers.phantom import make_phantom


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "SAR"])
def test_a_plausible_liver_on_a_full_field_scan_gets_no_warning(axcodes):
    scan, labels = make_phantom(axcodes=axcodes)  # 384 x 320 x 320 mm, a 2.3 L liver on the right
    assert anatomy_warnings(labels, scan) == []


def test_a_liver_too_small_for_an_adult_is_flagged():
    scan, labels = make_phantom()
    small = np.zeros_like(labels)
    small[60:66, 30:36, 40:46] = LIVER  # 6 x 6 x 6 voxels of 80 uL: 17 mL, on the right
    [warning] = anatomy_warnings(small, scan)
    assert "17 mL" in warning and "500-5000 mL" in warning


def test_a_liver_that_took_in_neighbours_is_flagged():
    scan, labels = make_phantom()
    big = np.zeros_like(labels)
    big[5:90, 5:75, 10:50] = LIVER  # 85 x 70 x 40 voxels: 19 L
    assert any("outside the 500-5000 mL" in warning for warning in anatomy_warnings(big, scan))


def test_a_liver_on_the_patients_left_is_flagged():
    scan, labels = make_phantom()
    mirrored = labels[::-1].copy()  # RAS: the first axis runs to the patient's right
    [warning] = anatomy_warnings(mirrored, scan)
    assert "patient's left" in warning


def test_a_liver_across_the_top_edge_is_flagged_whatever_the_axis_order():
    for axcodes in ("RAS", "LPI"):
        scan, labels = make_phantom(axcodes=axcodes)
        superior_axis = axcodes.index("S") if "S" in axcodes else axcodes.index("I")
        top = -1 if "S" in axcodes else 0
        grown = labels.copy()
        index = [slice(None)] * 3
        index[superior_axis] = slice(top, None) if top == -1 else slice(0, 1)
        grown[tuple(index)] = LIVER  # the whole top slice: 384 x 320 mm
        assert any("top edge" in warning for warning in anatomy_warnings(grown, scan)), axcodes
        assert not any("top edge" in warning for warning in anatomy_warnings(labels, scan)), axcodes


def test_a_crop_around_the_liver_gets_no_volume_or_side_check():
    scan, labels = make_phantom(shape=(40, 40, 30), spacing=(4.0, 4.0, 5.0))  # 160 mm: not full-field
    tiny = np.zeros_like(labels)
    tiny[2:5, 2:5, 10:13] = LIVER  # 2 mL, on the patient's left
    assert anatomy_warnings(tiny, scan) == []
