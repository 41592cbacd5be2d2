"""make_phantom: deterministic, realistic HU, asymmetric anatomy with lesions inside the liver, any orientation."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from core.segmentation import LESION, LIVER
from tests.helpers.phantom import FAT, make_phantom


def test_same_seed_same_phantom_other_seed_other_lesions():
    a, labels_a = make_phantom(seed=3)
    b, labels_b = make_phantom(seed=3)
    _, labels_c = make_phantom(seed=4)
    assert np.array_equal(a.voxels, b.voxels) and np.array_equal(labels_a, labels_b)
    assert not np.array_equal(labels_a, labels_c)


def test_hounsfield_units_are_realistic():
    scan, labels = make_phantom(noise_hu=0)
    assert scan.voxels.min() == -1000
    assert np.median(scan.voxels[labels == LIVER]) == pytest.approx(60, abs=1)
    assert np.median(scan.voxels[labels == LESION]) < np.median(scan.voxels[labels == LIVER]) - 20


def test_liver_is_on_the_patients_right_and_lesions_inside_it():
    """The liver lies on the patient's right (+x in RAS+), and the lesions (there are some) lie inside it: painting them
    never adds labelled voxels outside the phantom without lesions's liver."""
    scan, labels = make_phantom()
    x_mm = (scan.affine @ np.c_[np.argwhere(labels > 0), np.ones(np.count_nonzero(labels))].T)[0]
    assert x_mm.mean() > 0  # RAS+: right is +x
    _, no_lesions = make_phantom(lesions=0)  # the same anatomy: only lesions and noise use the seed
    liver = no_lesions == LIVER
    lesion = labels == LESION
    assert ndimage.label(lesion)[1] >= 2 and np.count_nonzero(lesion) > 50
    assert not (lesion & ~liver).any(), "a lesion voxel outside the liver"
    assert np.array_equal(labels > 0, liver), "lesions changed the liver's outline"


def test_liver_is_inside_the_body():
    """Every liver voxel lies within the body's outer ring of subcutaneous fat, in every axial slice."""
    scan, labels = make_phantom(noise_hu=0)
    ring = scan.voxels == FAT
    enclosed = np.stack([ndimage.binary_fill_holes(ring[..., k]) for k in range(ring.shape[2])], axis=-1) & ~ring
    assert np.count_nonzero(labels > 0) > 1000
    assert not ((labels > 0) & ~enclosed).any(), "liver outside the body"


def test_size_and_spacing_are_honoured():
    scan, labels = make_phantom(shape=(40, 30, 20), spacing=(1.0, 2.0, 3.0))
    assert scan.shape == labels.shape == (40, 30, 20)
    assert scan.spacing == (1.0, 2.0, 3.0)


@pytest.mark.parametrize("axcodes", ["LPS", "SAR", "ILA", "RAS"])
def test_any_orientation_holds_the_same_anatomy(axcodes):
    reference, reference_labels = make_phantom()
    scan, labels = make_phantom(axcodes=axcodes)
    assert scan.orientation == axcodes
    canonical = nib.as_closest_canonical(nib.Nifti1Image(labels, scan.affine))
    assert np.array_equal(np.asarray(canonical.dataobj), reference_labels)
    assert np.allclose(canonical.affine, reference.affine)
