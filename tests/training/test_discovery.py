"""Dataset discovery: every supported layout, unlabelled images, and refused pairs."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from core.errors import LiverSegError
from core.training.discovery import FULL, LIVER_ONLY, discover, licence

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def labels(lesion: bool = True, shape=(8, 8, 6)) -> np.ndarray:
    array = np.zeros(shape, np.uint8)
    array[2:6, 2:6, 1:5] = 1
    if lesion:
        array[3:5, 3:5, 2:4] = 2
    return array


def save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def image(shape=(8, 8, 6)) -> np.ndarray:
    return np.full(shape, 40, np.int16)


def names(report) -> dict[str, tuple[str, str, str]]:
    return {case.name: (case.image.name, case.label.name, case.kind) for case in report.cases}


def test_lits_layout(tmp_path):
    save(tmp_path / "volume-3.nii", image())
    save(tmp_path / "segmentation-3.nii", labels())
    save(tmp_path / "volume-4.nii", image())
    save(tmp_path / "segmentation-4.nii", labels(lesion=False))  # a tumour-free LiTS case is still 0/1/2
    report = discover([tmp_path])
    assert names(report) == {
        "volume-3": ("volume-3.nii", "segmentation-3.nii", FULL),
        "volume-4": ("volume-4.nii", "segmentation-4.nii", FULL),
    }
    assert report.cases[0].layout == "LiTS" and not report.unlabelled and not report.refused


def test_msd_layout_with_unlabelled_test_images(tmp_path):
    task = tmp_path / "Task03_Liver"
    save(task / "imagesTr" / "liver_0.nii.gz", image())
    save(task / "labelsTr" / "liver_0.nii.gz", labels())
    save(task / "imagesTr" / "liver_1_0000.nii.gz", image())  # nnU-Net's channel suffix
    save(task / "labelsTr" / "liver_1.nii.gz", labels())
    save(task / "imagesTs" / "liver_9.nii.gz", image())
    report = discover([tmp_path])
    assert sorted(names(report)) == ["liver_0", "liver_1"]
    assert {case.layout for case in report.cases} == {"MSD"}
    assert report.unlabelled == [task / "imagesTs" / "liver_9.nii.gz"]


def test_name_seg_and_images_labels_layouts(tmp_path):
    save(tmp_path / "a" / "patient7.nii.gz", image())
    save(tmp_path / "a" / "patient7_seg.nii.gz", labels(lesion=False))
    save(tmp_path / "b" / "images" / "p1.nii.gz", image())
    save(tmp_path / "b" / "labels" / "p1.nii.gz", labels())
    save(tmp_path / "c" / "lits117_ct.nii.gz", image())  # the built-in sample's naming
    save(tmp_path / "c" / "lits117_labels.nii.gz", labels())
    report = discover([tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    assert names(report) == {
        "patient7": ("patient7.nii.gz", "patient7_seg.nii.gz", LIVER_ONLY),
        "p1": ("p1.nii.gz", "p1.nii.gz", FULL),
        "lits117": ("lits117_ct.nii.gz", "lits117_labels.nii.gz", FULL),
    }


def test_image_with_liver_label_beside_it(tmp_path):
    save(tmp_path / "example" / "ct.nii.gz", image())
    save(tmp_path / "example" / "liver.nii.gz", labels(lesion=False).astype(np.float32))
    save(tmp_path / "example" / "torso_unlabelled.nii.gz", image())
    save(tmp_path / "s0001" / "ct.nii.gz", image())  # TotalSegmentator's own layout
    save(tmp_path / "s0001" / "segmentations" / "liver.nii.gz", labels(lesion=False))
    save(tmp_path / "s0001" / "segmentations" / "spleen.nii.gz", labels(lesion=False))
    (tmp_path / "ircad").mkdir()
    (tmp_path / "ircad" / "ct_dicom.zip").write_bytes(b"PK")
    report = discover([tmp_path])
    assert names(report) == {
        "example": ("ct.nii.gz", "liver.nii.gz", LIVER_ONLY),
        "s0001": ("ct.nii.gz", "liver.nii.gz", LIVER_ONLY),
    }
    assert report.unlabelled == [tmp_path / "example" / "torso_unlabelled.nii.gz", tmp_path / "ircad" / "ct_dicom.zip"]
    summary = report.summary()
    assert "found 2 labelled case(s)" in summary and "torso_unlabelled.nii.gz" in summary and "liver-only" in summary


@pytest.mark.parametrize(
    "label, affine, message",
    [
        (labels(shape=(8, 8, 5)), AFFINE, "has shape"),
        (labels(), np.diag([2.0, 2.0, 2.5, 1.0]), "different geometry"),
        (labels() * 2, AFFINE, r"values \[4\]"),
        (np.zeros((8, 8, 6), np.uint8), AFFINE, "marks no liver"),
    ],
    ids=["shape", "affine", "values", "empty"],
)
def test_unusable_pairs_are_refused_before_training(tmp_path, label, affine, message):
    save(tmp_path / "good.nii.gz", image())
    save(tmp_path / "good_seg.nii.gz", labels())
    save(tmp_path / "bad.nii.gz", image())
    save(tmp_path / "bad_seg.nii.gz", label, affine)
    report = discover([tmp_path])
    assert [case.name for case in report.cases] == ["good"]
    assert len(report.refused) == 1 and report.refused[0].startswith("bad:")
    with pytest.raises(LiverSegError, match=message):
        report.require_cases()


def test_label_without_image_and_no_cases(tmp_path):
    save(tmp_path / "orphan_seg.nii.gz", labels())
    report = discover([tmp_path])
    assert report.refused == [f"{tmp_path / 'orphan_seg.nii.gz'}: a label with no image beside it"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(LiverSegError, match="no labelled cases found"):
        discover([tmp_path / "empty"]).require_cases()
    with pytest.raises(LiverSegError, match="does not exist"):
        discover([tmp_path / "missing"])


def test_same_name_in_two_folders_gets_distinct_names(tmp_path):
    for task in ("TaskA", "TaskB"):
        save(tmp_path / task / "imagesTr" / "liver_0.nii.gz", image())
        save(tmp_path / task / "labelsTr" / "liver_0.nii.gz", labels())
    assert sorted(names(discover([tmp_path]))) == ["TaskA-liver_0", "TaskB-liver_0"]


def test_licence_from_readme_table(tmp_path):
    save(tmp_path / "set" / "ct.nii.gz", image())
    (tmp_path / "README.md").write_text("| path | licence |\n|---|---|\n| `set/ct.nii.gz` | CC BY 4.0 (Someone 2024) |\n", encoding="utf-8")
    assert licence(tmp_path / "set" / "ct.nii.gz") == "CC BY 4.0 (Someone 2024)"
    assert licence(save(tmp_path / "volume-1.nii", image())).startswith("LiTS")
    assert licence(save(tmp_path / "x" / "other.nii.gz", image())).startswith("unknown")


def test_shared_data_is_found_by_layout(shared_data, sample_paths):
    """Every shared folder with a CT and a label beside it is a case, whatever the folder list is today;
    its kind follows the label's values (a lesion label makes it liver+lesion)."""
    report = discover([shared_data, sample_paths[0].parent])
    kinds = {case.name: case.kind for case in report.cases}
    expected = {"lits117": FULL}
    for folder in sorted(p for p in shared_data.iterdir() if p.is_dir()):
        label = next((folder / n for n in ("label.nii.gz", "liver.nii.gz") if (folder / n).exists()), None)
        if label is not None and (folder / "ct.nii.gz").exists():
            values = np.unique(np.asarray(nib.load(label).dataobj))
            expected[folder.name] = FULL if 2 in values else LIVER_ONLY
    assert len(expected) >= 3, "../shared/data holds at least two labelled folders"
    assert kinds == expected
    unlabelled = {path.name for path in report.unlabelled}
    assert {"ct_torso_unlabelled.nii.gz", "mr_not_ct.nii.gz", "ct_dicom.zip"} <= unlabelled
    assert "CC BY 4.0" in licence(shared_data / "totalseg-example" / "ct.nii.gz")
