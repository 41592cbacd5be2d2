"""Training data for Lightning: cases preprocessed once and cached, augmented patches, whole held-out volumes.

Each case goes through ``core.inference.preprocessing.preprocessing(card)``, the transforms
inference uses, once; the result is kept as tensors in the cache folder (``--cache-dir``),
padded to the patch. Training patches come from ``core.training.augmentation`` per volume and a TorchIO
Queue with a LabelSampler (patches centred on background / liver / lesion); validation
sees whole held-out volumes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchio as tio
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from core.atomic import atomic_path
from core.inference.preprocessing import preprocessing
from core.model.card import ModelCard
from core.training.augmentation import augmentation
from core.training.discovery import Case
from core.training.options import TrainOptions

CACHE_VERSION = 2  # bump when the cached format or preprocessing code changes


def _read_cached(path: str | Path) -> tuple[torch.Tensor, np.ndarray]:
    """TorchIO reader for a cached tensor file: (tensor, affine)."""
    stored = torch.load(path, map_location="cpu", weights_only=True)
    return stored["data"], stored["affine"].numpy()


def cache_paths(case: Case, card: ModelCard, cache_dir: Path) -> tuple[Path, Path]:
    """Where ``case`` preprocessed for ``card`` is cached: (image file, label file).

    The name changes whenever the files (size, modification time) or the settings that
    shape the result (spacing, window, denoise, patch) change, so a stale cache is never used.
    """
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in (case.image, case.label)]
    settings = [card.spacing_mm, card.hu_window, card.denoise, card.patch_size, CACHE_VERSION]
    key = hashlib.sha256(json.dumps([stats, settings]).encode()).hexdigest()[:16]
    return cache_dir / f"{case.name}-{key}.image.pt", cache_dir / f"{case.name}-{key}.label.pt"


def prepare_case(case: Case, card: ModelCard, cache_dir: Path) -> tuple[Path, Path]:
    """Preprocess ``case`` as inference does, pad it to the patch size, cache it; return the cache files."""
    image_path, label_path = cache_paths(case, card, cache_dir)
    if image_path.exists() and label_path.exists():
        return image_path, label_path
    from core.imageio.nifti import read_label_map, read_scan

    scan = read_scan(case.image)
    labels, affine = read_label_map(case.label)
    subject = tio.Subject(image=scan.to_torchio(), label=tio.LabelMap(tensor=labels[np.newaxis], affine=affine))
    subject = preprocessing(card)(subject)
    image, label, affine = _pad_to(subject["image"].data, subject["label"].data, subject["image"].affine, card.patch_size)
    # float16 holds the [-1, 1] window to about 0.1 HU and halves the cache.
    for path, data in ((image_path, image.to(torch.float16)), (label_path, label.to(torch.uint8))):
        with atomic_path(path) as temporary:
            torch.save({"data": data, "affine": torch.as_tensor(affine)}, temporary)
    return image_path, label_path


def _pad_to(image: torch.Tensor, label: torch.Tensor, affine: np.ndarray, patch_size: list[int]):
    """Pad (1, X, Y, Z) tensors evenly to at least ``patch_size``: the image with air (-1), labels with 0."""
    shortfall = [max(0, p - n) for p, n in zip(patch_size, image.shape[1:])]
    before = np.array([short // 2 for short in shortfall])
    # F.pad lists the last axis first.
    pad = [amount for short, b in reversed(list(zip(shortfall, before))) for amount in (int(b), int(short - b))]
    affine = np.array(affine, dtype=float)
    affine[:3, 3] -= affine[:3, :3] @ before  # the first voxel moved by the padding before it
    return F.pad(image, pad, value=-1.0), F.pad(label, pad, value=0), affine


class _Float32Image(tio.ScalarImage):
    """A cached image, read back as float32 (it is stored as float16)."""

    def read_and_check(self, path):  # noqa: D102 - TorchIO hook
        tensor, affine = super().read_and_check(path)
        return tensor.float(), affine


def _subject(case: Case, card: ModelCard, cache_dir: Path) -> tio.Subject:
    image_path, label_path = cache_paths(case, card, cache_dir)
    return tio.Subject(
        image=_Float32Image(image_path, reader=_read_cached),
        label=tio.LabelMap(label_path, reader=_read_cached),
        liver_only=case.liver_only,
        name=case.name,
    )


class _WholeVolumes(Dataset):
    """Held-out cases as whole volumes, for sliding-window validation."""

    def __init__(self, subjects: list[tio.Subject]) -> None:
        self.subjects = subjects

    def __len__(self) -> int:
        return len(self.subjects)

    def __getitem__(self, index: int) -> dict:
        subject = self.subjects[index]
        return {
            "image": subject["image"].data,
            "label": subject["label"].data[0],
            "liver_only": subject["liver_only"],
            "name": subject["name"],
        }


def _first(batch: list[dict]) -> dict:
    return batch[0]


def _patches(batch: list[tio.Subject]) -> dict[str, torch.Tensor]:
    """Collate Queue patches into plain tensors: image (B, 1, X, Y, Z), label (B, X, Y, Z), liver_only (B,)."""
    return {
        "image": torch.stack([patch["image"].data for patch in batch]),
        "label": torch.stack([patch["label"].data[0] for patch in batch]).long(),
        "liver_only": torch.tensor([bool(patch["liver_only"]) for patch in batch]),
    }


class CaseDataModule(L.LightningDataModule):
    """Cached, augmented training patches and whole held-out volumes.

    Args:
        train_cases, val_cases: the split.
        card: preprocessing and patch settings.
        cache_dir: where preprocessed cases are kept.
        options: the training options (batch, patches, augmentation, workers already resolved).
    """

    def __init__(self, train_cases: list[Case], val_cases: list[Case], card: ModelCard, cache_dir: Path,
                 options: TrainOptions) -> None:
        super().__init__()
        self.train_cases, self.val_cases, self.card = train_cases, val_cases, card
        self.cache_dir, self.options = cache_dir, options
        self.subject_sampler: DistributedSampler | None = None

    def prepare_data(self) -> None:
        # Lightning calls this once per machine (local rank 0) before the other ranks read the cache.
        for case in self.train_cases + self.val_cases:
            prepare_case(case, self.card, self.cache_dir)

    def steps_per_epoch(self, world_size: int) -> int:
        options = self.options
        per_rank = math.ceil(self._repeats() * len(self.train_cases) / world_size) * options.samples_per_volume
        return math.ceil(per_rank / options.batch_size)

    def _repeats(self) -> int:
        """How many times each case is visited per epoch (with fresh augmentation) to fill ``patches_per_epoch``."""
        options = self.options
        return max(1, math.ceil(options.patches_per_epoch / (len(self.train_cases) * options.samples_per_volume)))

    def setup(self, stage: str | None = None) -> None:
        options, card = self.options, self.card
        subjects = [_subject(case, card, self.cache_dir) for case in self.train_cases] * self._repeats()
        transform = augmentation(options.augment, tuple(card.hu_window), options.synthetic_lesions)
        dataset = tio.SubjectsDataset(subjects, transform=transform)
        world_size = self.trainer.world_size if self.trainer else 1
        if world_size > 1:
            # Each process trains on its own share of the volumes; DDP averages the gradients.
            self.subject_sampler = DistributedSampler(dataset, shuffle=True, seed=options.seed)
        probabilities = dict(enumerate(options.label_probabilities))
        self.queue = tio.Queue(
            dataset,
            max_length=max(4 * options.samples_per_volume, 2 * options.batch_size),
            samples_per_volume=options.samples_per_volume,
            sampler=tio.LabelSampler(card.patch_size, "label", probabilities),
            subject_sampler=self.subject_sampler,
            num_workers=options.num_workers,
            shuffle_subjects=self.subject_sampler is None,
        )
        self.validation = _WholeVolumes([_subject(case, card, self.cache_dir) for case in self.val_cases])

    def set_epoch(self, epoch: int) -> None:
        if self.subject_sampler is not None:
            self.subject_sampler.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        # The Queue loads volumes in its own workers; the patch loader itself needs none.
        return DataLoader(self.queue, batch_size=self.options.batch_size, num_workers=0, collate_fn=_patches)

    def val_dataloader(self) -> DataLoader:
        world_size = self.trainer.world_size if self.trainer else 1
        sampler = DistributedSampler(self.validation, shuffle=False) if world_size > 1 else None
        return DataLoader(self.validation, batch_size=1, sampler=sampler, collate_fn=_first)
