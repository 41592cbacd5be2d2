"""``python -m core evaluate`` and ``python -m core lesions``: output contracts, exit codes, the sample."""

from __future__ import annotations

import csv
import io
import json

import nibabel as nib
import numpy as np
import pytest

from core.cli import main
from core.evaluation.lesions import COLUMNS, analyse_lesions
from core.evaluation.metrics import DETECTION_KEYS, STRUCTURE_KEYS
from tests.helpers.phantom import make_phantom


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def small_phantom():
    return make_phantom(shape=(48, 40, 32), spacing=(8.0, 8.0, 10.0), seed=4, lesions=3)


def test_evaluate_json_keeps_the_contract_and_prints_null_where_undefined(capsys, small_phantom, write_nifti):
    scan, labels = small_phantom
    prediction = np.where(labels > 0, 1, 0).astype(np.uint8)  # the liver right, every lesion missed
    code, out, err = run(capsys, "evaluate", write_nifti(prediction, scan.affine, "pred.nii.gz"), write_nifti(labels, scan.affine, "gt.nii.gz"), "--json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert list(result) == ["liver", "lesion", "lesion_detection", "notes"]
    assert list(result["liver"]) == list(result["lesion"]) == list(STRUCTURE_KEYS)
    assert list(result["lesion_detection"]) == list(DETECTION_KEYS)
    assert result["liver"]["dice"] == 1.0
    assert result["lesion"]["dice"] == 0.0 and result["lesion"]["precision"] is None and result["lesion"]["hd_mm"] is None
    assert '"precision": null' in out


def test_evaluate_prints_a_table_by_default(capsys, small_phantom, write_nifti):
    scan, labels = small_phantom
    path = write_nifti(labels, scan.affine)
    code, out, _ = run(capsys, "evaluate", path, path)
    assert code == 0
    assert out.splitlines()[0].split() == ["liver", "lesion"]
    assert out.splitlines()[1].split() == ["dice", "1.0000", "1.0000"]
    assert "reference lesions found" in out


def test_evaluate_a_liver_only_reference(capsys, small_phantom, write_nifti):
    scan, labels = small_phantom
    prediction = write_nifti(labels, scan.affine, "pred.nii.gz")
    liver_mask = write_nifti((labels > 0).astype(np.uint8), scan.affine, "liver.nii.gz")
    code, out, _ = run(capsys, "evaluate", prediction, liver_mask, "--json")
    result = json.loads(out)
    assert code == 0 and result["liver"]["dice"] == 1.0
    assert set(result["lesion"].values()) == set(result["lesion_detection"].values()) == {None}
    assert result["notes"]
    # The same file read as the labels of a case without lesions: every predicted lesion is a false positive.
    code, out, _ = run(capsys, "evaluate", prediction, liver_mask, "--json", "--not-liver-only")
    detection = json.loads(out)["lesion_detection"]
    assert detection["false_positives"] == detection["predicted_lesions"] >= 1 and detection["recall"] is None


def test_evaluate_brings_a_reference_in_another_orientation_onto_the_prediction_grid(capsys, small_phantom, write_nifti):
    scan, labels = small_phantom
    lps_scan, lps_labels = make_phantom(shape=(48, 40, 32), spacing=(8.0, 8.0, 10.0), seed=4, lesions=3, axcodes="LPS")
    code, out, err = run(capsys, "evaluate", write_nifti(labels, scan.affine, "pred.nii.gz"), write_nifti(lps_labels, lps_scan.affine, "gt.nii.gz"), "--json")
    assert code == 0 and json.loads(out)["lesion"]["dice"] == 1.0
    assert err.startswith("warning: ground truth gt.nii.gz is stored as")


@pytest.mark.parametrize(
    ("make_truth", "message"),
    [
        (lambda labels, affine: (labels * 3, affine), "label values 3, 6"),
        (lambda labels, affine: (labels, affine + _far()), "does not overlap"),
    ],
    ids=["bad-labels", "no-overlap"],
)
def test_evaluate_refuses_bad_references_with_one_error_line(capsys, small_phantom, write_nifti, make_truth, message):
    scan, labels = small_phantom
    truth, affine = make_truth(labels, scan.affine)
    code, out, err = run(capsys, "evaluate", write_nifti(labels, scan.affine, "pred.nii.gz"), write_nifti(truth.astype(np.uint8), affine, "gt.nii.gz"))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def _far() -> np.ndarray:
    shift = np.zeros((4, 4))
    shift[2, 3] = 5000.0  # five metres above
    return shift


def test_lesions_csv_and_table(capsys, small_phantom, write_nifti):
    scan, labels = small_phantom
    scan_path, mask_path = write_nifti(scan.voxels, scan.affine, "ct.nii.gz"), write_nifti(labels, scan.affine, "mask.nii.gz")
    code, out, err = run(capsys, "lesions", mask_path, "--scan", scan_path, "--csv")
    assert (code, err) == (0, "")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) == len(analyse_lesions(labels, scan).lesions) >= 1
    code, out, _ = run(capsys, "lesions", mask_path, "--scan", scan_path)
    assert code == 0 and out.startswith("liver ") and "tumour burden" in out


def test_lesions_of_a_mask_stored_in_another_orientation_warn_and_agree(capsys, small_phantom, write_nifti):
    scan, labels = small_phantom
    lps_scan, lps_labels = make_phantom(shape=(48, 40, 32), spacing=(8.0, 8.0, 10.0), seed=4, lesions=3, axcodes="LPS")
    scan_path = write_nifti(scan.voxels, scan.affine, "ct.nii.gz")
    _, same_grid, _ = run(capsys, "lesions", write_nifti(labels, scan.affine, "mask.nii.gz"), "--scan", scan_path, "--csv")
    code, other_grid, err = run(capsys, "lesions", write_nifti(lps_labels, lps_scan.affine, "lps.nii.gz"), "--scan", scan_path, "--csv")
    assert code == 0 and other_grid == same_grid and err.startswith("warning: ")


# --- the built-in sample (LiTS 117, 1.5 mm isotropic assumed) ------------------------------------


def _sample_labels(sample_paths) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(sample_paths[1])
    return np.asarray(image.dataobj, np.uint8), image.affine


def test_the_sample_scored_against_itself_is_perfect(capsys, sample_paths):
    code, out, _ = run(capsys, "evaluate", sample_paths[1], sample_paths[1], "--json")
    result = json.loads(out)
    assert code == 0
    for structure in ("liver", "lesion"):
        assert result[structure]["dice"] == 1.0 and result[structure]["hd_mm"] == 0.0 and result[structure]["volume_diff_ml"] == 0.0
    assert result["lesion_detection"]["missed"] == result["lesion_detection"]["false_positives"] == 0


@pytest.mark.slow  # scores the whole sample twice
def test_the_sample_shifted_by_two_slices_whether_in_the_array_or_the_affine(capsys, sample_paths, write_nifti):
    labels, affine = _sample_labels(sample_paths)
    shifted = np.zeros_like(labels)
    shifted[:, :, 2:] = labels[:, :, :-2]  # two 1.5 mm slices towards superior (array axis 2 runs I->S)
    moved_affine = affine.copy()
    moved_affine[2, 3] += 2 * 1.5  # the same labels, their grid moved 3 mm up
    code, out, _ = run(capsys, "evaluate", write_nifti(shifted, affine, "shifted.nii.gz"), sample_paths[1], "--json")
    by_array = json.loads(out)
    assert code == 0 and 0.8 < by_array["liver"]["dice"] < 1.0
    # Shifting by 3 mm moves no surface point further than 3 mm (truncation at the crop's edge included).
    assert 0.0 < by_array["liver"]["hd_mm"] <= 3.0 + 1e-9
    code, out, err = run(capsys, "evaluate", sample_paths[1], write_nifti(labels, moved_affine, "moved.nii.gz"), "--json")
    by_affine = json.loads(out)
    assert code == 0 and "voxel for voxel (exact" in err
    # The moved reference misses the prediction's two lowest slices, so it is scored without them (issue 22, finding 7).
    assert "covers only 98% of the scan" in err and by_affine["notes"][0].startswith("measured on the 98%")
    # Otherwise moving the reference's grid up gives the same two arrays with their roles swapped: symmetric metrics agree.
    for structure in ("liver", "lesion"):
        for key in ("dice", "jaccard", "hd_mm", "hd95_mm", "assd_mm"):
            assert by_affine[structure][key] == pytest.approx(by_array[structure][key], rel=0.01)


def test_the_sample_lesion_table_from_the_command_line(capsys, sample_paths):
    scan_path, labels_path = sample_paths
    code, out, _ = run(capsys, "lesions", labels_path, "--scan", scan_path)
    assert code == 0
    assert out.splitlines()[0].startswith("liver 2076.8 mL, lesions 439.0 mL in ")


@pytest.mark.shared_data
def test_the_totalsegmentator_liver_mask_as_reference_and_for_lesions(capsys, shared_data):
    folder = shared_data / "totalseg-example"
    code, out, _ = run(capsys, "lesions", folder / "liver.nii.gz", "--scan", folder / "ct.nii.gz")
    assert code == 0 and out.startswith(f"liver {38_634 * 27 / 1000:.1f} mL, lesions 0.0 mL in 0")  # 3 mm voxels
    code, out, _ = run(capsys, "evaluate", folder / "liver.nii.gz", folder / "liver.nii.gz", "--json")
    result = json.loads(out)
    assert code == 0 and result["liver"]["dice"] == 1.0 and result["lesion"]["dice"] is None
