"""Finding 6 of issue 22: geometry is never accepted silently (gantry tilt, shear, disagreeing qform and sform)."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest

from core.errors import LiverSegError
from core.imageio.nifti import read_label_map, read_scan, write_labels
from core.scan import Scan
from tests.helpers.dicom_factory import write_dicom_series
from tests.helpers.phantom import make_phantom


def phantom():
    return make_phantom((24, 20, 16), spacing=(5.0, 5.0, 6.0), lesions=1)


def test_a_series_with_a_gantry_tilt_is_refused_with_its_angle(tmp_path):
    scan, _ = phantom()
    affine = scan.affine.copy()
    affine[1, 2] = math.tan(math.radians(15)) * affine[2, 2]  # each slice shifted along y: a 15 degree tilt
    write_dicom_series(Scan(scan.voxels, affine), tmp_path / "tilted")
    with pytest.raises(LiverSegError, match=r"gantry tilt of 15.0 degrees"):
        read_scan(tmp_path / "tilted")


def test_an_untilted_oblique_series_is_still_read(tmp_path):
    scan, _ = phantom()
    rotation = nib.eulerangles.euler2mat(0, 0, math.radians(20))  # the whole grid turned: no tilt
    affine = scan.affine.copy()
    affine[:3, :3] = rotation @ affine[:3, :3]
    write_dicom_series(Scan(scan.voxels, affine), tmp_path / "oblique")
    assert read_scan(tmp_path / "oblique").shape == scan.shape


def test_a_sheared_nifti_is_refused(write_nifti):
    scan, labels = phantom()
    affine = scan.affine.copy()
    affine[0, 2] = 2.0  # the slice axis leans into x
    with pytest.raises(LiverSegError, match="sheared voxel grid"):
        read_scan(write_nifti(scan.voxels, affine))
    with pytest.raises(LiverSegError, match="sheared voxel grid"):
        read_label_map(write_nifti(labels, affine, "labels.nii.gz"))


def test_a_qform_that_disagrees_with_the_sform_is_refused(tmp_path):
    scan, _ = phantom()
    image = nib.Nifti1Image(scan.voxels, scan.affine)
    shifted = scan.affine.copy()
    shifted[2, 3] += 49.0
    image.set_sform(scan.affine, code=1)
    image.set_qform(shifted, code=1)
    nib.save(image, tmp_path / "two.nii.gz")
    with pytest.raises(LiverSegError, match=r"qform and sform\) that place its voxels up to 49 mm apart"):
        read_scan(tmp_path / "two.nii.gz")


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "ILA"])
def test_written_label_maps_carry_the_same_qform_and_sform(axcodes, tmp_path):
    scan, labels = make_phantom((24, 20, 16), spacing=(5.0, 5.0, 6.0), lesions=1, axcodes=axcodes)
    rotation = nib.eulerangles.euler2mat(math.radians(10), math.radians(5), 0)
    affine = scan.affine.copy()
    affine[:3, :3] = rotation @ affine[:3, :3]
    write_labels(labels, Scan(scan.voxels, affine), tmp_path / "labels.nii.gz")
    header = nib.load(tmp_path / "labels.nii.gz").header
    assert int(header["qform_code"]) == int(header["sform_code"]) == 1
    np.testing.assert_allclose(header.get_qform(), header.get_sform(), atol=1e-4)
    np.testing.assert_allclose(header.get_sform(), affine, atol=1e-4)
