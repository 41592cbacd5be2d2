"""Augmentation: shapes, labels and ranges kept; synthetic lesions only inside the liver."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchio as tio

from core.augment import HYPODENSE_HU, RandomHUShift, SyntheticLesions, augmentation
from core.model_card import ModelCard
from core.phantom import make_phantom
from core.preprocess import preprocessing
from core.segmentation import LESION, LIVER

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


def test_hu_shift_moves_soft_tissue_by_a_bounded_affine_change_in_hu(subject):
    hu_per_unit = (WINDOW[1] - WINDOW[0]) / 2
    to_hu = lambda tensor: (tensor + 1) * hu_per_unit + WINDOW[0]  # noqa: E731 - the window's inverse
    liver = subject["label"].data[0] == LIVER
    fat = (to_hu(subject["image"].data[0]) < -60) & (to_hu(subject["image"].data[0]) > -140)
    for seed in range(5):
        torch.manual_seed(seed)
        out = RandomHUShift(WINDOW, shift_hu=60, scale=0.15, p=1)(subject)
        before, after = to_hu(subject["image"].data[0]), to_hu(out["image"].data[0])
        liver_shift = float((after[liver] - before[liver]).mean())
        assert -60 - 0.15 * 40 <= liver_shift <= 60 + 0.15 * 40
        scale = float((after[liver].mean() - after[fat].mean()) / (before[liver].mean() - before[fat].mean()))
        assert 0.85 - 1e-3 <= scale <= 1.15 + 1e-3
        assert torch.equal(out["label"].data, subject["label"].data)
        assert out["image"].data.min() >= -1 and out["image"].data.max() <= 1
