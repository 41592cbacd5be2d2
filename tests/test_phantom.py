import nibabel as nib
import numpy as np
import pytest

from core.phantom import make_phantom
from core.segmentation import LESION, LIVER


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
    scan, labels = make_phantom()
    x_mm = (scan.affine @ np.c_[np.argwhere(labels > 0), np.ones(np.count_nonzero(labels))].T)[0]
    assert x_mm.mean() > 0  # RAS+: right is +x
    assert np.count_nonzero(labels == LESION) > 0


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
