import gzip
import zipfile

import nibabel as nib
import numpy as np
import pytest

from core import config
from core.errors import LiverSegError
from core.imageio.nifti import read_label_map, read_scan, write_labels
from tests.helpers.dicom_factory import PATIENT_ID, PATIENT_NAME, write_dicom_series
from tests.helpers.phantom import make_phantom

SHAPE = (24, 20, 16)
ORIENTATIONS = ["RAS", "LPS", "SAR", "LAS", "ILA"]


def small_phantom(axcodes="RAS", seed=0):
    return make_phantom(SHAPE, spacing=(5.0, 5.0, 6.0), axcodes=axcodes, seed=seed, lesions=1)


def canonical(array, affine):
    """Array and affine in RAS order, to compare volumes stored in different voxel orders."""
    image = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array, dtype=np.float32), affine))
    return image.get_fdata(), image.affine


def zip_folder(folder, path, arcname=lambda p: p.name):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, arcname(file))
    return path


# NIfTI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("axcodes", ORIENTATIONS)
def test_nifti_round_trip_keeps_voxels_affine_and_shape(axcodes, write_nifti, tmp_path):
    scan, labels = small_phantom(axcodes)
    read = read_scan(write_nifti(np.round(scan.voxels).astype(np.int16), scan.affine))
    assert read.shape == scan.shape and read.orientation == axcodes and read.voxels.dtype == np.float32
    np.testing.assert_allclose(read.affine, scan.affine)
    np.testing.assert_array_equal(read.voxels, np.round(scan.voxels))
    assert read.source == "image.nii.gz" and read.details == {"format": "NIfTI"}

    write_labels(labels, read, tmp_path / "labels.nii.gz")
    written = nib.load(tmp_path / "labels.nii.gz")
    assert written.get_data_dtype() == np.uint8 and written.shape == scan.shape
    np.testing.assert_allclose(written.affine, scan.affine)
    back, affine = read_label_map(tmp_path / "labels.nii.gz")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, labels)
    np.testing.assert_allclose(affine, scan.affine)


def test_a_trailing_axis_of_one_is_a_3d_volume(write_nifti):
    scan, _ = small_phantom()
    assert read_scan(write_nifti(scan.voxels[..., np.newaxis], scan.affine)).shape == SHAPE


def test_scaled_nifti_is_read_in_hu(tmp_path):
    scan, _ = small_phantom()
    hu = np.clip(np.round(scan.voxels), -1024, None)
    image = nib.Nifti1Image((hu + 1024).astype(np.uint16), scan.affine)
    image.header.set_slope_inter(1.0, -1024.0)
    nib.save(image, tmp_path / "scaled.nii")
    np.testing.assert_allclose(read_scan(tmp_path / "scaled.nii").voxels, hu)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda v: v[:, :, 0], "2D image"),
        (lambda v: v[:, :, :1], "2D image"),
        (lambda v: np.stack([v, v], axis=-1), "4D series"),
        (lambda v: np.where(v > 500, np.nan, v), "NaN or infinite"),
        (lambda v: np.where(v > 500, np.inf, v), "NaN or infinite"),
        (lambda v: np.clip(v, 0, None) * 3, "does not look like a CT"),  # MR-like: no dark voxels
        (lambda v: v + 1024, "does not look like a CT"),  # CT stored without its rescale to HU
        (lambda v: np.full_like(v, -1000), "does not look like a CT"),  # air only
    ],
    ids=["2d", "one-slice", "4d", "nan", "inf", "mr-like", "raw-ct", "air-only"],
)
def test_unusable_volumes_are_refused_with_the_reason(make, message, write_nifti):
    scan, _ = small_phantom()
    with pytest.raises(LiverSegError, match=message):
        read_scan(write_nifti(make(scan.voxels).astype(np.float32), scan.affine))


def test_truncated_and_corrupt_files_are_refused(write_nifti, tmp_path):
    scan, _ = small_phantom()
    path = write_nifti(scan.voxels, scan.affine)
    raw = gzip.decompress(path.read_bytes())
    (tmp_path / "truncated.nii").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "truncated.nii.gz").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (tmp_path / "garbage.nii.gz").write_bytes(b"\x00" * 400)
    for name in ("truncated.nii", "truncated.nii.gz", "garbage.nii.gz"):
        with pytest.raises(LiverSegError, match="damaged|cannot be read"):
            read_scan(tmp_path / name)


def test_unsupported_missing_and_single_slice_inputs(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"\x89PNG")
    with pytest.raises(LiverSegError, match="unsupported file type.*NIfTI"):
        read_scan(tmp_path / "scan.png")
    with pytest.raises(LiverSegError, match="does not exist"):
        read_scan(tmp_path / "nothing.nii.gz")
    scan, _ = small_phantom()
    first = write_dicom_series(scan, tmp_path / "dicom")[0]
    with pytest.raises(LiverSegError, match="single DICOM file"):
        read_scan(first)


# DICOM ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "SAR", "LAS"])
@pytest.mark.parametrize("suffix", ["", ".dcm"])
def test_dicom_folder_matches_the_volume_in_space(axcodes, suffix, tmp_path):
    scan, _ = small_phantom(axcodes)
    write_dicom_series(scan, tmp_path / "series", suffix=suffix)
    read = read_scan(tmp_path / "series")
    expected, expected_affine = canonical(np.round(scan.voxels), scan.affine)
    actual, actual_affine = canonical(read.voxels, read.affine)
    np.testing.assert_allclose(actual_affine, expected_affine, atol=1e-4)
    np.testing.assert_array_equal(actual, expected)
    assert read.details["modality"] == "CT" and read.details["series"] == "the only series"
    assert PATIENT_NAME not in str(read.details) and PATIENT_ID not in str(read.details)


def test_dicom_zip_in_a_subfolder_is_read_and_the_temporary_folder_removed(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    scan, _ = small_phantom("LPS")
    write_dicom_series(scan, tmp_path / "series")
    path = zip_folder(tmp_path / "series", tmp_path / "upload.zip", arcname=lambda p: f"export/CT/{p.name}")
    read = read_scan(path)
    np.testing.assert_allclose(read.affine, scan.affine, atol=1e-4)
    assert read.source == "upload.zip" and read.shape == SHAPE
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_zip_of_several_series_gives_the_largest_ct_and_says_so(tmp_path):
    big, _ = small_phantom()
    small, _ = make_phantom((24, 20, 8), spacing=(5.0, 5.0, 6.0), lesions=0)
    mr, _ = make_phantom((24, 20, 20), spacing=(5.0, 5.0, 6.0), lesions=0)
    write_dicom_series(small, tmp_path / "study", series="1.2.3.1", description="SCOUT")
    write_dicom_series(big, tmp_path / "study", series="1.2.3.2", description="PORTAL")
    write_dicom_series(mr, tmp_path / "study", series="1.2.3.3", modality="MR", description="T2")
    read = read_scan(zip_folder(tmp_path / "study", tmp_path / "study.zip"))
    assert read.shape == SHAPE and read.details["series_description"] == "PORTAL"
    assert read.details["series"].startswith("the largest CT series of 3")
    assert "MR 'T2' (20 files)" in read.details["series"] and "SCOUT" in read.details["series"]


def test_a_series_that_is_not_ct_is_refused(tmp_path):
    scan, _ = small_phantom()
    write_dicom_series(scan, tmp_path / "mr", modality="MR")
    with pytest.raises(LiverSegError, match="holds MR images, not CT.*MR is not supported, because the pretrained networks"):
        read_scan(tmp_path / "mr")
    write_dicom_series(scan, tmp_path / "pet", modality="PT")
    with pytest.raises(LiverSegError, match="holds PT images, not CT; LiverSeg segments abdominal CT only$"):
        read_scan(tmp_path / "pet")


def test_a_folder_without_dicom_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(LiverSegError, match="no DICOM images found in notes"):
        read_scan(tmp_path / "notes")


# Zip safety -----------------------------------------------------------------------------------


def write_zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("member", ["../evil", "a/../../evil", "/etc/evil", "C:/evil", "..\\evil"])
def test_members_escaping_the_folder_are_refused_before_extracting(member, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    path = write_zip(tmp_path / "upload.zip", {"ok": b"x", member: b"payload"})
    with pytest.raises(LiverSegError, match="outside the zip's folder"):
        read_scan(path)
    assert not (tmp_path / "evil").exists() and list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    "limit, value, members, message",
    [
        ("ZIP_MAX_FILES", 3, {f"f{i}": b"x" for i in range(4)}, "holds 4 files"),
        ("ZIP_MAX_FILE_BYTES", 1000, {"big": bytes(range(256)) * 8}, "per file"),
        ("ZIP_MAX_TOTAL_BYTES", 3000, {"a": bytes(range(256)) * 8, "b": bytes(range(256)) * 8}, "would unpack to"),
        ("ZIP_MAX_RATIO", 200, {"bomb": bytes(8 * 2**20)}, "zip bomb"),
    ],
    ids=["files", "file-size", "total-size", "ratio"],
)
def test_zip_limits(limit, value, members, message, tmp_path, monkeypatch):
    monkeypatch.setattr(config, limit, value)
    with pytest.raises(LiverSegError, match=message):
        read_scan(write_zip(tmp_path / "upload.zip", members))


def test_damaged_and_empty_zips(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(LiverSegError, match="not a readable zip"):
        read_scan(tmp_path / "bad.zip")
    with pytest.raises(LiverSegError, match="no DICOM images found in empty.zip"):
        read_scan(write_zip(tmp_path / "empty.zip", {}))


# Label maps -----------------------------------------------------------------------------------


def test_label_maps_accept_whole_floats_and_refuse_others(write_nifti):
    _, labels = small_phantom()
    affine = np.diag([5.0, 5.0, 6.0, 1.0])
    read, _ = read_label_map(write_nifti(labels.astype(np.float64), affine, "float.nii.gz"))
    np.testing.assert_array_equal(read, labels)
    for name, values in {"fraction.nii.gz": labels * 0.5, "large.nii.gz": labels * 200.0, "negative.nii.gz": -1.0 * labels}.items():
        with pytest.raises(LiverSegError, match="whole numbers 0-255"):
            read_label_map(write_nifti(values.astype(np.float32), affine, name))


def test_write_labels_refuses_other_formats_and_grids(tmp_path):
    scan, labels = small_phantom()
    with pytest.raises(LiverSegError, match="name the output .nii.gz"):
        write_labels(labels, scan, tmp_path / "labels.mha")
    with pytest.raises(ValueError, match="do not match"):
        write_labels(labels[1:], scan, tmp_path / "labels.nii.gz")
    assert list(tmp_path.iterdir()) == []


# The real data --------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_every_shared_file_is_read_or_refused_as_it_should(shared_data):
    example = shared_data / "totalseg-example"
    for name in ("ct.nii.gz", "ct_torso_unlabelled.nii.gz"):
        assert read_scan(example / name).spacing == (3.0, 3.0, 3.0)
    with pytest.raises(LiverSegError, match="does not look like a CT.*MR is not supported, because the pretrained networks did not find the liver"):
        read_scan(example / "mr_not_ct.nii.gz")
    labels, affine = read_label_map(example / "liver.nii.gz")
    assert labels.shape == (122, 101, 30) and set(np.unique(labels)) == {0, 1}

    scan = read_scan(shared_data / "ircad-1.1" / "ct_dicom.zip")
    assert scan.shape == (512, 512, 129) and scan.orientation == "LPS"
    np.testing.assert_allclose(scan.spacing, (0.57, 0.57, 1.6), atol=1e-3)
    assert scan.voxels.min() == -1024 and scan.voxels.max() == 1023
    assert "liver_01" not in str(scan.details) and scan.details["modality"] == "CT"


def test_a_series_with_a_damaged_or_missing_slice_is_refused(tmp_path):
    """GDCM skips a slice it cannot parse; ITK would then spread the others over the gap."""
    scan, _ = small_phantom()
    files = write_dicom_series(scan, tmp_path / "damaged")
    files[5].write_bytes(files[5].read_bytes()[:300])
    with pytest.raises(LiverSegError, match="missing, repeated or unevenly spaced slices"):
        read_scan(tmp_path / "damaged")
    files = write_dicom_series(scan, tmp_path / "missing")
    files[-3].unlink()
    with pytest.raises(LiverSegError, match=r"steps from 6.00 to 12.00 mm"):
        read_scan(tmp_path / "missing")
