"""The bad-input corpus, fed to the command line: every case is refused cleanly.

Each case is generated here (nothing hostile is committed) and given to
``python -m core segment`` or ``evaluate``. A clean refusal is: exit code 2, one
stderr line starting ``error:`` that names the problem, no traceback, and no file
left behind (neither the output nor a temporary one, nor an unpacked zip).

Most cases run the command in-process (``core.cli.main``, with file-descriptor
capture so that messages printed by SimpleITK or nibabel count too): starting
Python and torch once per case would cost minutes. ``test_the_real_process...``
runs a few of them as real ``python -m core`` processes to pin the process-level
contract.
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from core import config
from core.cli import main
from tests.helpers.dicom_factory import write_dicom_series
from tests.helpers.phantom import make_phantom

SHAPE, SPACING = (32, 28, 20), (6.0, 6.0, 8.0)
AFFINE = np.diag([*SPACING, 1.0])


def phantom_volume(seed: int = 0) -> np.ndarray:
    scan, _ = make_phantom(SHAPE, SPACING, seed=seed, lesions=1)
    return scan.voxels


def save_nifti(array: np.ndarray, path: Path, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def truncate(path: Path, fraction: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def dicom_zip(folder: Path) -> Path:
    """A valid zipped DICOM series of the phantom (the base for damaged variants)."""
    scan, _ = make_phantom(SHAPE, SPACING, seed=1, lesions=1)
    files = write_dicom_series(scan, folder / "series")
    return write_zip(folder / "series.zip", {f"CT/{path.name}": path.read_bytes() for path in files})


# Builders: each writes one bad input into an empty folder and returns its path. ------------------


def random_bytes(name: str, size: int = 64 * 1024) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        (folder / name).write_bytes(np.random.default_rng(7).bytes(size))
        return folder / name

    return build


def truncated_nifti_gz(folder: Path) -> Path:
    return truncate(save_nifti(phantom_volume(), folder / "cut.nii.gz"))


def truncated_nifti(folder: Path) -> Path:
    return truncate(save_nifti(phantom_volume(), folder / "cut.nii"))


def gzip_of_garbage(folder: Path) -> Path:
    (folder / "garbage.nii.gz").write_bytes(gzip.compress(np.random.default_rng(3).bytes(4096)))
    return folder / "garbage.nii.gz"


def empty_nifti(folder: Path) -> Path:
    (folder / "empty.nii.gz").write_bytes(b"")
    return folder / "empty.nii.gz"


def image_2d(folder: Path) -> Path:
    return save_nifti(phantom_volume()[:, :, 10], folder / "slice.nii.gz")


def volume_4d(folder: Path) -> Path:
    return save_nifti(np.stack([phantom_volume(0), phantom_volume(1)], axis=-1), folder / "series4d.nii.gz")


def nan_volume(folder: Path) -> Path:
    volume = phantom_volume()
    volume[10:12, 10:12, 5] = np.nan
    return save_nifti(volume, folder / "nan.nii.gz")


def infinite_volume(folder: Path) -> Path:
    volume = phantom_volume()
    volume[3, 3, 3] = np.inf
    return save_nifti(volume, folder / "inf.nii.gz")


def mr_like_volume(folder: Path) -> Path:
    """An MR-like volume: the phantom's anatomy in non-negative arbitrary units, no air below 0."""
    ct = phantom_volume()
    mr = np.clip((ct + 1000.0) * 0.4, 0, None).astype(np.float32)
    return save_nifti(mr, folder / "t1.nii.gz")


def dicom_mr_zip(folder: Path) -> Path:
    """A zipped DICOM series whose Modality is MR (the phantom's voxels: the tag alone decides)."""
    scan, _ = make_phantom(SHAPE, SPACING, seed=1, lesions=0)
    files = write_dicom_series(scan, folder / "series", modality="MR", description="T1 VIBE")
    return write_zip(folder / "mr.zip", {f"MR/{path.name}": path.read_bytes() for path in files})


def truncated_zip(folder: Path) -> Path:
    return truncate(dicom_zip(folder), 0.5)


def zip_member(name: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        return write_zip(folder / "upload.zip", {"CT/slice1.dcm": b"x", name: b"payload"})

    return build


def zip_with_link(folder: Path) -> Path:
    path = folder / "upload.zip"
    with zipfile.ZipFile(path, "w") as archive:
        link = zipfile.ZipInfo("CT/passwd")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return path


def zip_bomb(folder: Path) -> Path:
    """64 MB of zeros in a 64 kB zip: every declared size is modest, the ratio is not."""
    return write_zip(folder / "bomb.zip", {"CT/slice.dcm": bytes(64 * 2**20)})


def zip_lying_sizes(folder: Path) -> Path:
    """A zip whose directory declares a 10-byte member that really unpacks to 1 MB."""
    path = write_zip(folder / "liar.zip", {"CT/slice.dcm": bytes(2**20)})
    data = bytearray(path.read_bytes())
    true_size = (2**20).to_bytes(4, "little")
    for offset in (data.find(b"PK\x03\x04") + 22, data.find(b"PK\x01\x02") + 24):
        assert data[offset : offset + 4] == true_size
        data[offset : offset + 4] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def zip_too_many_files(folder: Path) -> Path:
    return write_zip(folder / "many.zip", {f"CT/{i:05d}.dcm": b"" for i in range(config.ZIP_MAX_FILES + 1)}, zipfile.ZIP_STORED)


def zip_without_dicom(folder: Path) -> Path:
    return write_zip(folder / "notes.zip", {"README.txt": b"no images here"})


def png_image(folder: Path) -> Path:
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    return folder / "photo.png"


def empty_folder(folder: Path) -> Path:
    (folder / "dicom").mkdir()
    return folder / "dicom"


def missing_file(folder: Path) -> Path:
    return folder / "nowhere.nii.gz"


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], Path]
    message: str  # a regular expression the error line must match: it names the problem


#: What an MR upload is told, NIfTI or DICOM (issue 23: the networks found no liver on the shared MR scan).
MR_REFUSAL = r"MR is not supported, because the pretrained networks did not find the liver on the MR test scan"

SCAN_CASES = [
    Case("truncated-nifti-gz", truncated_nifti_gz, r"cannot be read|truncated|damaged"),
    Case("truncated-nifti", truncated_nifti, r"cannot be read|truncated|damaged"),
    Case("random-bytes-nifti-gz", random_bytes("noise.nii.gz"), r"cannot be read as NIfTI"),
    Case("random-bytes-nifti", random_bytes("noise.nii"), r"cannot be read as NIfTI"),
    Case("gzip-of-garbage", gzip_of_garbage, r"cannot be read as NIfTI"),
    Case("empty-file", empty_nifti, r"cannot be read as NIfTI"),
    Case("2d-image", image_2d, r"2D image"),
    Case("4d-volume", volume_4d, r"4D"),
    Case("nan-volume", nan_volume, r"NaN"),
    Case("infinite-volume", infinite_volume, r"infinite"),
    Case("mr-like-volume", mr_like_volume, r"not look like a CT.*" + MR_REFUSAL),
    Case("dicom-mr-series", dicom_mr_zip, r"holds MR images, not CT.*" + MR_REFUSAL),
    Case("random-bytes-zip", random_bytes("noise.zip"), r"not a readable zip"),
    Case("truncated-zip", truncated_zip, r"not a readable zip|cannot be unpacked|cannot be read"),
    Case("zip-dotdot-member", zip_member("../../evil.dcm"), r"outside the zip's folder"),
    Case("zip-absolute-member", zip_member("/tmp/evil.dcm"), r"outside the zip's folder"),
    Case("zip-backslash-member", zip_member("..\\evil.dcm"), r"outside the zip's folder"),
    Case("zip-symlink-member", zip_with_link, r"symbolic link"),
    Case("zip-bomb", zip_bomb, r"zip bomb"),
    Case("zip-lying-sizes", zip_lying_sizes, r"more than it declares|cannot be unpacked|not a readable zip"),
    Case("zip-too-many-files", zip_too_many_files, r"more than the limit"),
    Case("zip-without-dicom", zip_without_dicom, r"no DICOM images"),
    Case("png-image", png_image, r"unsupported file type"),
    Case("empty-folder", empty_folder, r"no DICOM images"),
    Case("missing-file", missing_file, r"does not exist"),
]


# Running the command line and judging the refusal. --------------------------------------------


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """in/ for the bad input, out/ for what the command must not leave, tmp/ as the temporary folder."""
    for name in ("in", "out", "tmp"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


@pytest.fixture
def cli(capfd):
    def run(*argv: object) -> tuple[int, str, str]:
        code = main([str(arg) for arg in argv])
        captured = capfd.readouterr()
        return code, captured.out, captured.err

    return run


def assert_clean_refusal(code: int, out: str, err: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0], re.IGNORECASE), lines[0]
    assert "Traceback" not in out + err


def leftovers(workspace: Path) -> list[str]:
    return sorted(str(path.relative_to(workspace)) for folder in ("out", "tmp") for path in (workspace / folder).rglob("*"))


@pytest.mark.parametrize("case", SCAN_CASES, ids=lambda case: case.id)
def test_segment_refuses_bad_input_cleanly(case, workspace, cli):
    source = case.build(workspace / "in")
    out = workspace / "out"
    code, stdout, stderr = cli("segment", source, "-o", out / "labels.nii.gz", "--lesions", out / "lesions.csv")
    assert_clean_refusal(code, stdout, stderr, case.message)
    assert leftovers(workspace) == []


def test_segment_refuses_a_real_mr_volume(shared_data, workspace, cli):
    code, stdout, stderr = cli("segment", shared_data / "totalseg-example" / "mr_not_ct.nii.gz", "-o", workspace / "out" / "labels.nii.gz")
    assert_clean_refusal(code, stdout, stderr, r"not look like a CT.*" + MR_REFUSAL)
    assert leftovers(workspace) == []


def test_the_corpus_inputs_are_what_they_claim(workspace):
    """Guards the corpus itself: a builder that made a valid or a different input would pass for the wrong reason."""
    from core.imageio.nifti import read_scan

    folder = workspace / "in"
    assert read_scan(dicom_zip(folder)).shape == SHAPE  # so the truncated zip is a damaged real one
    bomb = zipfile.ZipFile(zip_bomb(folder)).infolist()[0]
    assert bomb.file_size <= config.ZIP_MAX_FILE_BYTES and bomb.file_size > config.ZIP_MAX_RATIO * bomb.compress_size
    assert zipfile.ZipFile(zip_lying_sizes(folder)).infolist()[0].file_size == 10
    assert nib.load(mr_like_volume(folder)).get_fdata().min() >= 0  # no air: not CT in HU
    assert nib.load(volume_4d(folder)).ndim == 4 and nib.load(image_2d(folder)).ndim == 2


# Masks for evaluate. ---------------------------------------------------------------------------


def labels_volume(shape=SHAPE) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[4:20, 4:20, 4:14] = 1
    labels[8:12, 8:12, 6:10] = 2
    return labels


def test_evaluate_refuses_a_mask_that_lies_outside_the_prediction(workspace, cli):
    folder = workspace / "in"
    prediction = save_nifti(labels_volume(), folder / "pred.nii.gz")
    elsewhere = AFFINE.copy()
    elsewhere[:3, 3] = (1000.0, 0.0, 0.0)  # a mask of another size, from another scan's field of view
    truth = save_nifti(labels_volume((20, 20, 12)), folder / "gt.nii.gz", elsewhere)
    assert_clean_refusal(*cli("evaluate", prediction, truth, "--json"), r"does not overlap")
    assert leftovers(workspace) == []


def test_evaluate_says_when_a_mask_of_another_size_is_resampled(workspace, cli):
    """A smaller mask on the same grid origin is not silently compared: a warning names both grids."""
    folder = workspace / "in"
    prediction = save_nifti(labels_volume(), folder / "pred.nii.gz")
    truth = save_nifti(labels_volume()[:24, :24, :16], folder / "gt.nii.gz")
    code, _, err = cli("evaluate", prediction, truth, "--json")
    assert code == 0
    assert re.search(r"^warning: .*24x24x16.*32x28x20", err, re.MULTILINE), err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: save_nifti(phantom_volume(), folder / "gt.nii.gz"), r"label values|whole numbers"),
        (truncated_nifti_gz, r"cannot be read|truncated|damaged"),
        (image_2d, r"2D image"),
    ],
    ids=["ct-as-mask", "truncated-mask", "2d-mask"],
)
def test_evaluate_refuses_unusable_masks(make, message, workspace, cli):
    prediction = save_nifti(labels_volume(), workspace / "in" / "pred.nii.gz")
    truth = make(workspace / "in")
    assert_clean_refusal(*cli("evaluate", prediction, truth), message)


# The real process. -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c for c in SCAN_CASES if c.id in ("truncated-nifti-gz", "zip-bomb")], ids=lambda case: case.id)
def test_the_real_process_exits_2_with_one_line(case, workspace):
    source = case.build(workspace / "in")
    env = {**os.environ, "TMPDIR": str(workspace / "tmp")}
    result = subprocess.run([sys.executable, "-m", "core", "segment", str(source), "-o", str(workspace / "out" / "labels.nii.gz")],
                            cwd=config.ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert_clean_refusal(result.returncode, result.stdout, result.stderr, case.message)
    assert leftovers(workspace) == []
