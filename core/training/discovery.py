"""``discover``: labelled CT cases found by folder layout, checked before any training.

Researchers bring data in the layouts the field uses, so cases are found by
how files sit, never by a fixed list:

- LiTS: ``volume-N.nii[.gz]`` beside ``segmentation-N.nii[.gz]``;
- Medical Segmentation Decathlon: ``imagesTr/NAME.nii.gz`` with ``labelsTr/NAME.nii.gz``
  (nnU-Net's ``NAME_0000`` image names too; ``imagesTs/`` holds unlabelled images);
- ``images/`` + ``labels/`` folders with the same file names;
- ``NAME.nii.gz`` beside ``NAME_seg.nii.gz`` (or ``_label``, ``_labels``, ``_mask``, ``_gt``),
  including ``NAME_ct`` + ``NAME_labels`` (the built-in LiTS 117 sample);
- one image with its label beside it: ``ct.nii.gz`` (or ``image``, ``volume``) and
  ``liver.nii.gz`` (or ``segmentation``, ``label``, ``mask``), or TotalSegmentator's
  ``segmentations/liver.nii.gz``.

Label kinds: ``"liver+lesion"`` labels hold 0 background, 1 liver, 2 lesion;
``"liver-only"`` labels hold 0/1: their liver may contain
unmarked lesions, so training learns the liver from them and ignores their
lesion channel. A 0/1 label in the LiTS or MSD layout is a tumour-free case of a
0/1/2 dataset, hence ``"liver+lesion"``.

Pairs that cannot be used (shape or geometry mismatch, label values other than
0/1/2, a label without liver) are refused with the reason, before training starts.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from core import config
from core.errors import LiverSegError
from core.imageio.ground_truth import GroundTruth
from core.imageio.nifti import read_label_map
from core.segmentation import BACKGROUND, LESION, LIVER
from core.server.paths import files_inside

FULL, LIVER_ONLY = "liver+lesion", "liver-only"
#: Spatial tolerance for "the same geometry": a hundredth of a millimetre.
AFFINE_TOLERANCE_MM = 0.01
#: The LiTS licence, for cases (the built-in sample, a LiTS folder) whose folder has no README saying it.
LITS_LICENCE = "LiTS (Bilic et al., Medical Image Analysis 2023): CC BY-NC-SA 4.0"

_NIFTI = re.compile(r"\.nii(\.gz)?$")
_LABEL_SUFFIX = re.compile(r"_(seg|segmentation|label|labels|mask|gt)$")
_IMAGE_SUFFIX = re.compile(r"_(ct|image|img|0000)$")
_BESIDE_LABELS = ("liver", "segmentation", "seg", "label", "labels", "mask")
_BESIDE_IMAGES = ("ct", "image", "volume", "img")
_LABEL_FOLDERS = {"labelsTr": "MSD", "labels": "images/labels", "masks": "images/labels"}
_IMAGE_FOLDERS = {"imagesTr": "MSD", "imagesTs": "MSD", "images": "images/labels"}
_LABEL_LAYOUTS = ("LiTS", "MSD")  # layouts whose labels always follow 0/1/2


@dataclass(frozen=True)
class Case:
    """One labelled CT.

    Attributes:
        name: short unique name, e.g. ``"lits117"`` or ``"totalseg-example"``.
        image: the CT file.
        label: its label map, voxel for voxel on the image's grid.
        kind: ``"liver+lesion"`` (0/1/2) or ``"liver-only"`` (0/1: nothing said about lesions).
        layout: how it was found (``"LiTS"``, ``"MSD"``, ``"NAME_seg"``, ...).
        data_dir: the data folder (``--data``) it was found in, which a model card names it by.
    """

    name: str
    image: Path
    label: Path
    kind: str
    layout: str
    data_dir: Path

    def record(self) -> dict[str, str]:
        """Where the case lies, as a model card records it: its files relative to its data folder, which goes by name."""
        def inside(path: Path) -> str:
            return str(path.relative_to(self.data_dir)) if path.is_relative_to(self.data_dir) else path.name

        return {"data_folder": self.data_dir.name, "image": inside(self.image), "label": inside(self.label)}

    @property
    def liver_only(self) -> bool:
        return self.kind == LIVER_ONLY

    def ground_truth(self) -> GroundTruth:
        """The case's label map as the reference a result is scored against (on the image's grid, as found)."""
        return GroundTruth(read_label_map(self.label)[0], liver_only=self.liver_only)


@dataclass
class DiscoveryReport:
    """What ``discover`` found: usable cases, images without labels, refused pairs."""

    cases: list[Case] = field(default_factory=list)
    unlabelled: list[Path] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Plain-text lines for the terminal and the training log."""
        lines = [f"found {len(self.cases)} labelled case(s)"]
        for case in self.cases:
            lines.append(f"  {case.name}: {case.image} + {case.label.name} ({case.kind}, {case.layout} layout)")
        if self.unlabelled:
            lines.append(f"{len(self.unlabelled)} image(s) without a label (not used):")
            lines += [f"  {path}" for path in self.unlabelled]
        if self.refused:
            lines.append(f"{len(self.refused)} pair(s) refused:")
            lines += [f"  {reason}" for reason in self.refused]
        return "\n".join(lines)

    def require_cases(self) -> list[Case]:
        """The cases, or a ``LiverSegError`` when any pair is unusable or none was found."""
        if self.refused:
            raise LiverSegError(
                "unusable training data: " + "; ".join(self.refused) + ". Fix or move these files, then start again"
            )
        if not self.cases:
            raise LiverSegError(
                "no labelled cases found; expected e.g. volume-N.nii + segmentation-N.nii, imagesTr/ + labelsTr/, "
                "NAME.nii.gz + NAME_seg.nii.gz, images/ + labels/, or ct.nii.gz + liver.nii.gz"
            )
        return self.cases


def discover(dirs: list[Path | str]) -> DiscoveryReport:
    """Find labelled cases under ``dirs`` (searched recursively) and check every pair.

    Raises:
        LiverSegError: a folder does not exist.
    """
    images: dict[tuple, tuple[Path, str]] = {}
    labels: dict[tuple, tuple[Path, str]] = {}
    beside_labels: dict[Path, list[Path]] = defaultdict(list)
    others: list[Path] = []
    data_dir_of: dict[Path, Path] = {}
    for folder in dirs:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise LiverSegError(f"data folder {folder} does not exist or is not a folder")
        # A link that resolves outside the folder is skipped: it could name any file on the server.
        for path in files_inside(folder, roots=[folder]):
            data_dir_of[path] = folder.resolve()  # files_inside walks the folder's real path
            role = _role(path)
            if role is None:
                continue
            kind, key, layout = role
            if kind == "label" and key is None:
                beside_labels[path.parent.parent if path.parent.name == "segmentations" else path.parent].append(path)
            elif kind == "label":
                labels[key] = (path, layout)
            elif kind == "image":
                images[key] = (path, layout)
            else:
                others.append(path)

    pairs: list[tuple[Path, Path, str]] = []
    for key, (image, layout) in sorted(images.items(), key=lambda item: str(item[1][0])):
        if key in labels:
            pairs.append((image, labels.pop(key)[0], layout))
    paired = {image for image, _, _ in pairs}
    for folder, found in sorted(beside_labels.items()):
        image = _image_beside(folder, [path for path, _ in images.values() if path.parent == folder and path not in paired])
        label = _liver_first(found)
        if image is not None:
            pairs.append((image, label, "image+label beside it"))
            paired.add(image)

    report = DiscoveryReport()
    report.unlabelled = sorted({path for path, _ in images.values()} - paired) + sorted(others)
    report.refused += [f"{path}: a label with no image beside it" for path, _ in labels.values()]
    names = _unique_names([image for image, _, _ in pairs])
    for (image, label, layout), name in zip(pairs, names):
        checked = _check_pair(name, image, label, layout, data_dir_of[image])
        if isinstance(checked, Case):
            report.cases.append(checked)
        else:
            report.refused.append(checked)
    return report


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def licence(path: Path) -> str:
    """The licence note for a data file: the row naming it in a README.md table of an enclosing folder.

    Falls back to the LiTS licence for LiTS files and the built-in sample, and otherwise
    says that the licence is unknown (the user must state it).
    """
    path = Path(path).resolve()
    for folder in path.parents:
        readme = folder / "README.md"
        if readme.is_file():
            relative = path.relative_to(folder).as_posix()
            for line in readme.read_text(errors="replace").splitlines():
                cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
                if len(cells) > 1 and cells[0].strip("`") == relative:
                    return cells[-1]
            break
    if path.parent == config.SAMPLE_DIR.resolve() or re.match(r"(volume|segmentation)-\d+", path.name):
        return LITS_LICENCE
    return "unknown: no README.md row names this file; state the data's licence before sharing the model"


def _stem(path: Path) -> str:
    return _NIFTI.sub("", path.name)


def _role(path: Path) -> tuple[str, tuple | None, str] | None:
    """("image" | "label" | "other", pairing key or None for "beside", layout), or None to ignore."""
    if path.suffix.lower() == ".zip":
        return "other", None, "DICOM zip"  # an image; DICOM series carry no label here
    if not _NIFTI.search(path.name):
        return None
    stem, parent = _stem(path), path.parent
    if parent.name == "segmentations":  # TotalSegmentator: one mask per structure; only the liver is ours
        return ("label", None, "image+label beside it") if stem == "liver" else None
    if parent.name in _LABEL_FOLDERS:
        return "label", (parent.parent, _LABEL_SUFFIX.sub("", stem)), _LABEL_FOLDERS[parent.name]
    if parent.name in _IMAGE_FOLDERS:
        return "image", (parent.parent, _IMAGE_SUFFIX.sub("", stem)), _IMAGE_FOLDERS[parent.name]
    lits = re.fullmatch(r"(volume|segmentation)-(\d+)", stem)
    if lits:
        return ("image" if lits[1] == "volume" else "label"), (parent, f"lits-{lits[2]}"), "LiTS"
    if stem in _BESIDE_LABELS:
        return "label", None, "image+label beside it"
    if _LABEL_SUFFIX.search(stem):
        return "label", (parent, _LABEL_SUFFIX.sub("", stem)), "NAME_seg"
    return "image", (parent, _IMAGE_SUFFIX.sub("", stem)), "NAME_seg"


def _image_beside(folder: Path, candidates: list[Path]) -> Path | None:
    """The image a bare ``liver.nii.gz`` belongs to: the one named ``ct`` (or alike), else the only one."""
    for name in _BESIDE_IMAGES:
        for path in candidates:
            if _stem(path) == name:
                return path
    return candidates[0] if len(candidates) == 1 else None


def _liver_first(labels: list[Path]) -> Path:
    return sorted(labels, key=lambda path: (_stem(path) != "liver", str(path)))[0]


def _unique_names(images: list[Path]) -> list[str]:
    """Short case names: the image's stem, or its folder's name for ``ct.nii.gz``-style files."""

    def base(path: Path) -> str:
        stem = _IMAGE_SUFFIX.sub("", _stem(path))
        if stem in _BESIDE_IMAGES:
            return path.parent.name
        return stem

    names = [base(path) for path in images]
    counts = defaultdict(int)
    for name in names:
        counts[name] += 1
    # Same stem in two folders (two MSD tasks, say): prefix the folder that tells them apart.
    return [f"{path.parent.parent.name}-{name}" if counts[name] > 1 else name for path, name in zip(images, names)]


def _check_pair(name: str, image: Path, label: Path, layout: str, data_dir: Path) -> Case | str:
    """The ``Case``, or a message saying why the pair cannot be used."""
    try:
        image_nifti, label_nifti = nib.load(image), nib.load(label)
    except Exception as error:  # nibabel raises several types for unreadable files
        return f"{name}: cannot read {image.name} or {label.name} ({error})"
    if len(image_nifti.shape) != 3:
        return f"{name}: {image.name} is not a 3D volume (shape {image_nifti.shape})"
    if image_nifti.shape != label_nifti.shape:
        return f"{name}: label {label.name} has shape {label_nifti.shape} but image {image.name} has {image_nifti.shape}"
    if not np.allclose(image_nifti.affine, label_nifti.affine, atol=AFFINE_TOLERANCE_MM):
        return (
            f"{name}: label {label.name} and image {image.name} have different geometry (affine), "
            "so they do not overlay; resample the label onto the image grid"
        )
    values = np.unique(np.asanyarray(label_nifti.dataobj))
    if not np.all(np.isin(values, (BACKGROUND, LIVER, LESION))):
        unknown = [v.item() for v in values if v not in (BACKGROUND, LIVER, LESION)][:5]
        return f"{name}: label {label.name} has values {unknown}; expected 0 background, 1 liver, 2 lesion"
    if LIVER not in values and LESION not in values:
        return f"{name}: label {label.name} marks no liver (all zero)"
    kind = FULL if LESION in values or layout in _LABEL_LAYOUTS else LIVER_ONLY
    return Case(name=name, image=image, label=label, kind=kind, layout=layout, data_dir=data_dir)


@dataclass
class DataChoice:
    """A folder the Train page offers as training data, with what ``discover`` finds in it."""

    folder: Path
    label: str
    cases: list[Case]
    unlabelled: list[Path]
    refused: list[str]


def data_choices() -> list[DataChoice]:
    """Each configured data folder holding files of its own, and each folder directly inside one.

    Every choice is discovered on its own, exactly as the training will discover it.
    """
    choices = []
    for root in (root.resolve() for root in config.data_dirs()):
        if not root.is_dir():
            continue
        entries = sorted(entry for entry in root.iterdir() if not entry.name.startswith("."))
        folders = [entry for entry in entries if entry.is_dir() and entry.resolve().is_relative_to(root)]
        if any(entry.is_file() and entry.name != "README.md" for entry in entries):
            folders.insert(0, root)
        for folder in folders:
            report = discover([folder])
            choices.append(DataChoice(folder, str(folder.relative_to(root.parent)), report.cases, report.unlabelled, report.refused))
    return choices
