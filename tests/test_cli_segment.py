import os
import subprocess
import sys
import zipfile

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from core import config
from core.cli import main
from core.imageio.nifti import read_scan
from core.model import registry
from core.model.card import ModelCard
from core.model.unet import UNet
from tests.helpers.dicom_factory import write_dicom_series
from tests.helpers.phantom import make_phantom

CARD = ModelCard(name="tiny", channels=[4, 8], spacing_mm=[6.0, 6.0, 6.0], patch_size=[32, 32, 32])


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """A folder with one random-weights model, as config.TRAINED_DIR (weights do not matter here)."""
    root = tmp_path / "trained"
    monkeypatch.setattr(config, "TRAINED_DIR", root)
    registry.save_model(UNet(CARD.channels), CARD, root / CARD.name)
    return root


@pytest.fixture
def nifti(tmp_path):
    scan, _ = make_phantom((32, 28, 20), spacing=(5.0, 5.0, 6.0), axcodes="LPS")
    path = tmp_path / "in" / "scan.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(scan.voxels, scan.affine), path)
    return path


def test_segment_writes_labels_on_the_input_grid_and_the_lesion_table(trained, nifti, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(nifti), "-o", str(out / "labels.nii.gz"), "--lesions", str(out / "lesions.csv"), "-v"]) == 0
    written, source = nib.load(out / "labels.nii.gz"), nib.load(nifti)
    assert written.shape == source.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, source.affine)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
    assert (out / "lesions.csv").read_text(encoding="utf-8").startswith("id,volume_ml")
    assert sorted(p.name for p in out.iterdir()) == ["labels.nii.gz", "lesions.csv"]  # no temporary files left
    captured = capsys.readouterr()
    assert "labels.nii.gz: liver" in captured.out and "model tiny, cpu" in captured.out
    stages = dict(item.split("=") for item in captured.err.split("seconds: ")[1].split())
    assert list(stages) == ["read", "preprocess", "infer", "postprocess", "lesions", "write", "total"]


def test_a_zipped_dicom_series_is_labelled_on_its_own_grid(trained, tmp_path):
    scan, _ = make_phantom((32, 28, 20), spacing=(5.0, 5.0, 6.0), axcodes="RAS")
    files = write_dicom_series(scan, tmp_path / "dicom")
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as archive:
        for path in files:
            archive.write(path, f"DICOM/{path.name}")
    assert main(["segment", str(tmp_path / "series.zip"), "-o", str(tmp_path / "labels.nii"), "--precision", "mixed"]) == 0
    dicom = read_scan(tmp_path / "series.zip")
    written = nib.load(tmp_path / "labels.nii")
    assert written.shape == dicom.shape
    np.testing.assert_allclose(written.affine, dicom.affine, atol=1e-5)


def test_dicom_seg_of_a_dicom_zip_references_its_series_and_matches_the_label_map(trained, tmp_path, capsys):
    scan, _ = make_phantom((32, 28, 20), spacing=(5.0, 5.0, 6.0), axcodes="LPS")
    files = write_dicom_series(scan, tmp_path / "dicom")
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as archive:
        for path in files:
            archive.write(path, f"DICOM/{path.name}")
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "series.zip"), "-o", str(out / "labels.nii.gz"), "--dicom-seg", str(out / "labels.dcm"),
                 "-v"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["labels.dcm", "labels.nii.gz"]
    assert "dicom_seg=" in capsys.readouterr().err
    seg = hd.seg.segread(out / "labels.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(files[0]).SeriesInstanceUID
    labels = np.asarray(nib.load(out / "labels.nii.gz").dataobj)
    slices = {header.SOPInstanceUID: k for k, header in enumerate(read_scan(tmp_path / "series.zip").dicom_headers)}
    for frame, item in zip(seg.pixel_array, seg.PerFrameFunctionalGroupsSequence):
        k = slices[item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        segment = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        np.testing.assert_array_equal(frame.astype(bool), labels[:, :, k].T == segment)


def test_dicom_seg_of_a_nifti_scan_is_refused_before_segmenting(trained, nifti, tmp_path, capsys, monkeypatch):
    from core.inference.segmenter import Segmenter

    monkeypatch.setattr(Segmenter, "segment", lambda *args: pytest.fail("the model ran before the option was refused"))
    out = tmp_path / "out"
    assert main(["segment", str(nifti), "-o", str(out / "labels.nii.gz"), "--dicom-seg", str(out / "labels.dcm")]) == 2
    err = capsys.readouterr().err
    assert err == "error: --dicom-seg: a DICOM SEG needs a DICOM source: segment a DICOM series (a folder or .zip of its slices); " \
                  "scan.nii.gz is NIfTI\n"
    assert not out.exists()


def test_dicom_seg_must_be_named_dcm(trained, nifti, tmp_path, capsys):
    assert main(["segment", str(nifti), "-o", str(tmp_path / "labels.nii.gz"), "--dicom-seg", str(tmp_path / "seg.nii")]) == 2
    assert capsys.readouterr().err == "error: seg.nii: the DICOM SEG is written as a DICOM file; name it .dcm\n"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "missing"], "no model named 'missing'"),
        (["--model", "../etc"], "not a model name"),
    ],
)
def test_model_problems_exit_2_with_one_line_and_no_output(trained, nifti, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["segment", str(nifti), "-o", str(out / "labels.nii.gz"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists() or list(out.iterdir()) == []


def test_no_trained_model_is_a_clear_error(tmp_path, nifti, monkeypatch, capsys):
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path / "empty")
    assert main(["segment", str(nifti), "-o", str(tmp_path / "labels.nii.gz")]) == 2
    assert "no trained model" in capsys.readouterr().err
    assert not (tmp_path / "labels.nii.gz").exists()


def test_output_must_be_nifti(trained, nifti, tmp_path, capsys):
    assert main(["segment", str(nifti), "-o", str(tmp_path / "labels.mha")]) == 2
    assert "name the output .nii.gz" in capsys.readouterr().err


@pytest.mark.slow  # a fresh process imports torch and segments
def test_the_real_command_runs_as_a_process(trained, nifti, tmp_path):
    env = {**os.environ, "LIVERSEG_TRAINED_DIR": str(trained)}
    result = subprocess.run(
        [sys.executable, "-m", "core", "segment", str(nifti), "-o", str(tmp_path / "labels.nii.gz"), "--device", "cpu"],
        capture_output=True, text=True, env=env, cwd=config.ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr  # no progress bar drawn into a pipe
    assert (tmp_path / "labels.nii.gz").exists()


@pytest.mark.shared_data
def test_every_real_ct_is_segmented_on_its_own_grid_and_the_mr_refused(trained, shared_data, sample_paths, tmp_path, capsys):
    cases = [
        shared_data / "totalseg-example" / "ct.nii.gz",
        shared_data / "totalseg-example" / "ct_torso_unlabelled.nii.gz",
        shared_data / "ircad-1.1" / "ct_dicom.zip",
        sample_paths[0],
    ]
    for index, case in enumerate(cases):
        out = tmp_path / f"labels{index}.nii.gz"
        assert main(["segment", str(case), "-o", str(out)]) == 0, capsys.readouterr().err
        scan, written = read_scan(case), nib.load(out)
        assert written.shape == scan.shape
        np.testing.assert_allclose(written.affine, scan.affine, atol=1e-4)
    assert main(["segment", str(shared_data / "totalseg-example" / "mr_not_ct.nii.gz"), "-o", str(tmp_path / "mr.nii.gz")]) == 2
    assert "MR is not supported" in capsys.readouterr().err and not (tmp_path / "mr.nii.gz").exists()


def test_the_cli_names_the_series_it_took_from_a_multi_series_zip(trained, tmp_path, capsys):
    """Issue 22, finding 9."""
    scan, _ = make_phantom((32, 28, 20), spacing=(5.0, 5.0, 6.0))
    small, _ = make_phantom((32, 28, 8), spacing=(5.0, 5.0, 6.0), seed=1)
    files = write_dicom_series(scan, tmp_path / "a", description="PORTAL") + write_dicom_series(
        small, tmp_path / "b", series="1.2.826.0.1.3680043.2.1125.2", description="SCOUT")
    with zipfile.ZipFile(tmp_path / "study.zip", "w") as archive:
        for file in files:
            archive.write(file, f"{file.parent.name}/{file.name}")
    assert main(["segment", str(tmp_path / "study.zip"), "-o", str(tmp_path / "labels.nii.gz")]) == 0
    note = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: study.zip")]
    assert note == ["note: study.zip: took the largest CT series of 2 (others, not used: CT 'SCOUT' (8 files))"]
