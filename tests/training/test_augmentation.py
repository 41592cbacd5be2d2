"""Augmentation: shapes, labels and ranges kept; synthetic lesions only inside the liver."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio

from core.inference.preprocessing import preprocessing
from core.model.card import ModelCard
from core.segmentation import LESION, LIVER
from core.training.augmentation import HYPODENSE_HU, RandomHUShift, SyntheticLesions, augmentation
from tests.helpers.phantom import make_phantom

WINDOW = (-200.0, 250.0)


@pytest.fixture(scope="module")
def subject() -> tio.Subject:
    """A preprocessed phantom without lesions (values in [-1, 1], labels 0/1)."""
    scan, labels = make_phantom(shape=(40, 36, 28), spacing=(4.0, 4.0, 4.0), seed=1, lesions=0)
    card = ModelCard(name="t", spacing_mm=[4.0, 4.0, 4.0], hu_window=list(WINDOW))
    raw = tio.Subject(image=scan.to_torchio(), label=tio.LabelMap(tensor=labels[np.newaxis], affine=scan.affine))
    return preprocessing(card)(raw)


def test_synthetic_lesions_are_painted_only_inside_the_liver(subject):
    torch.manual_seed(3)
    painted = SyntheticLesions(WINDOW, p=1)(subject)
    before_image, after_image = subject["image"].data[0], painted["image"].data[0]
    before_label, after_label = subject["label"].data[0], painted["label"].data[0]
    liver = before_label == LIVER
    lesion = after_label == LESION
    assert lesion.sum() > 10
    assert not (lesion & ~liver).any(), "a lesion outside the liver"
    assert torch.equal(after_image[~liver], before_image[~liver]), "the image changed outside the liver"
    assert torch.equal(after_label[~lesion], before_label[~lesion])
    assert not torch.equal(after_image[lesion], before_image[lesion])
    assert after_image.min() >= -1 and after_image.max() <= 1


def test_lesion_contrast_is_converted_from_hu_with_the_window(subject):
    """Over many lesions most are hypodense by tens of HU, measured back in HU through the window."""
    hu_per_unit = (WINDOW[1] - WINDOW[0]) / 2
    shifts = []
    for seed in range(8):
        torch.manual_seed(seed)
        painted = SyntheticLesions(WINDOW, max_lesions=1, p=1)(subject)
        lesion = painted["label"].data[0] == LESION
        if lesion.any():
            change = (painted["image"].data[0][lesion] - subject["image"].data[0][lesion]).mean()
            shifts.append(float(change) * hu_per_unit)
    assert len(shifts) >= 6
    assert np.median(shifts) < -HYPODENSE_HU[0] / 2
    assert min(shifts) > -HYPODENSE_HU[1] - 60  # contrast + texture + noise, never a window's worth


def test_no_liver_no_lesion(subject):
    empty = tio.Subject(image=subject["image"], label=tio.LabelMap(tensor=torch.zeros_like(subject["label"].data),
                                                                    affine=subject["label"].affine))
    painted = SyntheticLesions(WINDOW, p=1)(empty)
    assert torch.equal(painted["image"].data, empty["image"].data)
    assert not painted["label"].data.any()


@pytest.mark.parametrize("strength", [0.5, 1.0, 2.0])
def test_augmentation_keeps_shape_labels_and_range(subject, strength):
    torch.manual_seed(0)
    out = augmentation(strength, WINDOW, synthetic_lesions=1.0)(subject)
    assert out["image"].shape == subject["image"].shape == out["label"].shape
    assert set(torch.unique(out["label"].data).tolist()) <= {0, LIVER, LESION}
    assert (out["label"].data == LESION).any()
    assert out["image"].data.min() >= -1 and out["image"].data.max() <= 1


def test_strength_zero_without_lesions_is_the_identity(subject):
    out = augmentation(0, WINDOW, synthetic_lesions=0)(subject)
    assert torch.equal(out["image"].data, subject["image"].data)
    assert torch.equal(out["label"].data, subject["label"].data)


def test_hu_shift_moves_hu_values_by_a_bounded_affine_change_and_leaves_labels(subject):
    """Every draw of RandomHUShift changes the image by ``hu' = (hu - 40) * scale + 40 + shift`` with the shift and
    scale inside their stated ranges; over several draws both really vary (neither is stuck at 0 or 1); labels are
    untouched."""
    hu_per_unit = (WINDOW[1] - WINDOW[0]) / 2
    to_hu = lambda tensor: (tensor.double() + 1) * hu_per_unit + WINDOW[0]  # noqa: E731 - the window's inverse
    before = to_hu(subject["image"].data[0])
    shifts, scales = [], []
    for seed in range(8):
        torch.manual_seed(seed)
        out = RandomHUShift(WINDOW, shift_hu=60, scale=0.15, centre_hu=40, p=1)(subject)
        after = to_hu(out["image"].data[0])
        # Voxels the clamp to [-1, 1] left alone on both sides, where the change must be exactly affine.
        free = (before > WINDOW[0] + 2) & (before < WINDOW[1] - 2) & (after > WINDOW[0] + 2) & (after < WINDOW[1] - 2)
        assert free.sum() > 10_000
        scale, offset = np.polyfit(before[free].numpy(), after[free].numpy(), 1)
        fitted = scale * before[free].numpy() + offset
        assert np.abs(after[free].numpy() - fitted).max() < 0.01, "the change in HU is not one shift and scale"
        shift = offset - 40 * (1 - scale)  # hu' = scale * hu + 40 * (1 - scale) + shift
        assert -60 <= shift <= 60 and 0.85 <= scale <= 1.15
        assert abs(shift) > 0.5 or abs(scale - 1) > 0.005, f"seed {seed}: the image is unchanged"
        shifts.append(shift)
        scales.append(scale)
        assert torch.equal(out["label"].data, subject["label"].data)
        assert out["image"].data.min() >= -1 and out["image"].data.max() <= 1
    assert max(shifts) > 20 and min(shifts) < -20, f"shifts {shifts} do not span the +-60 HU range"
    assert max(scales) > 1.05 and min(scales) < 0.95, f"scales {scales} do not span 1 +- 0.15"
