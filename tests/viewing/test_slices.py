"""core.viewing.slices: canonical orientation, radiological planes, square pixels, overlays, focus and encoding."""

from __future__ import annotations

import numpy as np
import pytest

from core.segmentation import LESION, LIVER
from core.viewing.slices import (
    AGREE_RGB,
    LIVER_RGB,
    MISSED_RGB,
    MODEL_ONLY_RGB,
    REFERENCE_LIVER_RGB,
    DisplayVolume,
    View,
    legend,
    outline,
    render,
    window,
)
from tests.helpers.phantom import BONE_HU, make_phantom

SHAPE, SPACING = (40, 32, 24), (6.0, 6.0, 8.0)


def volume(axcodes="RAS", reference=False, **kwargs):
    scan, labels = make_phantom(shape=SHAPE, spacing=SPACING, axcodes=axcodes, noise_hu=0, **kwargs)
    return scan, labels, DisplayVolume.from_scan(scan, labels, labels if reference else None)


@pytest.mark.parametrize("axcodes", ["LPS", "SAR", "ILA"])
def test_any_stored_orientation_displays_the_same_canonical_volume(axcodes):
    _, _, expected = volume("RAS")
    scan, _, shown = volume(axcodes)
    assert np.array_equal(shown.hu, expected.hu) and np.array_equal(shown.labels, expected.labels)
    assert np.allclose(shown.affine, expected.affine)
    voxel = (5, 7, 9)
    assert shown.hu[shown.canonical_index(voxel)] == round(float(scan.voxels[voxel]))


def centre_of(mask):
    return np.argwhere(mask).mean(axis=0)


def test_axial_shows_the_patients_right_on_the_left_and_anterior_up():
    _, _, shown = volume()
    index = shown.focus()[2]
    labels, hu = shown.plane(shown.labels, "axial", index), shown.plane(shown.hu, "axial", index)
    rows, cols = labels.shape
    assert centre_of(labels >= LIVER)[1] < cols / 2  # the liver is on the patient's right
    assert centre_of(hu >= BONE_HU - 1)[0] > rows / 2  # the spine is at the back, down on screen


def test_coronal_and_sagittal_have_superior_up_and_anterior_left():
    _, labels, shown = volume(lesions=0)
    liver_top_row = np.flatnonzero(shown.plane(shown.labels, "coronal", shown.focus()[1]).any(axis=1)).min()
    assert liver_top_row < shown.slice_count("axial") / 2  # the liver sits high in the abdomen
    sagittal = shown.plane(shown.hu, "sagittal", shown.hu.shape[0] // 2)  # the midline holds the spine
    assert centre_of(sagittal >= BONE_HU - 1)[1] > sagittal.shape[1] / 2  # posterior is on the right


def test_slices_have_square_pixels_and_the_physical_aspect_ratio():
    _, _, shown = volume()
    image = render(shown, "coronal", 10, View())
    height_mm, width_mm = SHAPE[2] * SPACING[2], SHAPE[0] * SPACING[0]
    assert image.rgb.shape[:2] == (round(height_mm / image.pixel_mm), round(width_mm / image.pixel_mm))
    assert image.pixel_mm == min(SPACING[0], SPACING[2])
    assert max(render(shown, "axial", 10, View(), max_pixels=20).rgb.shape[:2]) == 20


def test_window_maps_its_range_to_black_and_white():
    grey = window(np.array([-1000, -160, 40, 240, 3000]), width=400, level=40)
    assert grey.tolist() == [0, 0, 127, 255, 255]


def test_overlays_colour_the_liver_and_outline_the_reference():
    _, labels, shown = volume(reference=True)
    index = shown.focus()[2]
    in_plane = shown.plane(shown.labels, "axial", index)
    opaque = render(shown, "axial", index, View(opacity=1.0, reference=False)).rgb
    assert (opaque[in_plane == LIVER] == LIVER_RGB).all()
    plain = render(shown, "axial", index, View(liver=False, lesions=False, reference=False)).rgb
    assert (plain[..., 0] == plain[..., 1]).all()  # grey only
    outlined = render(shown, "axial", index, View(liver=False, lesions=False)).rgb
    assert (outlined == REFERENCE_LIVER_RGB).all(axis=-1).sum() > 0


def test_agreement_colours_agreement_false_alarms_and_misses():
    scan, labels = make_phantom(shape=SHAPE, spacing=SPACING, noise_hu=0)
    shifted = np.roll(labels, 3, axis=0)
    shown = DisplayVolume.from_scan(scan, shifted, labels)
    rgb = render(shown, "axial", shown.focus()[2], View(opacity=1.0, compare="liver")).rgb
    for colour in (AGREE_RGB, MODEL_ONLY_RGB, MISSED_RGB):
        assert (rgb == colour).all(axis=-1).any()


def test_focus_is_on_the_largest_lesion_then_the_liver():
    """focus() is the centre of the largest lesion (not the first, last or middle one found), else of the liver,
    else the volume's middle."""
    scan, _ = make_phantom(shape=SHAPE, spacing=SPACING, noise_hu=0)  # RAS: canonical order is the file's order
    labels = np.zeros(SHAPE, np.uint8)
    labels[5:34, 4:19, 3:14] = LIVER  # off the volume's centre, which is (20, 16, 12)
    labels[6:8, 5:7, 4:6] = LESION  # first in scan order, 8 voxels
    labels[12:17, 10:15, 6:11] = LESION  # the largest, 125 voxels, centred on (14, 12, 8)
    labels[26:29, 6:9, 4:7] = LESION  # last in scan order, 27 voxels
    assert DisplayVolume.from_scan(scan, labels).focus() == (14, 12, 8)
    labels[labels == LESION] = LIVER
    assert DisplayVolume.from_scan(scan, labels).focus() == (19, 11, 8)  # the liver's centre
    assert DisplayVolume.from_scan(scan, np.zeros(SHAPE, np.uint8)).focus() == (20, 16, 12)


def test_outline_is_the_inner_boundary():
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    assert outline(mask).sum() == 16 and outline(mask, 2).sum() == 24
    assert not outline(np.zeros((4, 4), bool)).any()


def test_legend_speaks_of_what_is_shown():
    assert [words for _, words, _ in legend(View(), has_reference=False)] == [
        "Liver found by the model", "Lesion (possible tumour) found by the model"]
    assert len(legend(View(), has_reference=True)) == 4
    assert "missed" in " ".join(words for _, words, _ in legend(View(compare="lesion"), has_reference=True))


def test_images_encode():
    _, _, shown = volume()
    image = render(shown, "sagittal", 5, View())
    assert image.png().startswith(b"\x89PNG") and image.jpeg().startswith(b"\xff\xd8")


def test_labels_can_join_a_display_copy_made_before_them():
    scan, labels = make_phantom(shape=(20, 16, 12), spacing=(6.0, 6.0, 8.0), axcodes="LPS")
    early = DisplayVolume.from_scan(scan, np.zeros(scan.shape, np.uint8)).with_labels(labels)
    direct = DisplayVolume.from_scan(scan, labels)
    assert np.array_equal(early.labels, direct.labels) and np.array_equal(early.hu, direct.hu) and early.labels.dtype == np.uint8
