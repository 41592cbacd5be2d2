"""Training with PyTorch Lightning: one command from a laptop CPU to several GPUs with DDP.

Path of the data::

    core.data.discover ─► cases (image, label, kind) ─► split (train / held-out validation)
      ─► cached preprocessing: core.preprocess.preprocessing(card), the transforms inference
         uses, run once per case and kept as tensors (``--cache-dir``), padded to the patch
      ─► core.augment (synthetic lesions, affine, elastic, intensity) per volume
      ─► TorchIO Queue + LabelSampler (patches centred on background / liver / lesion)
      ─► LiverSegModule: UNet, Dice + cross-entropy with partial labels, AdamW
      ─► validation each epoch on whole held-out volumes with
         core.sliding_window.sliding_window_probabilities (liver and lesion Dice)
      ─► checkpoints (best, last), early stopping ─► model.pt + card.json

The output folder (``--out``)::

    progress.jsonl   one JSON object per line (schema below), appended as training goes
    train.log        the same events as plain text (also printed on stdout)
    checkpoints/     best.ckpt (highest validation score) and last.ckpt, each written
                     atomically; ``--resume`` continues from last.ckpt
    model.pt         the best weights (a state dict), written only when training ends
    card.json        the model card, written last: a folder with card.json is a complete model

A run that crashes or is killed leaves progress, log and checkpoints, but no
model.pt/card.json, so the registry never sees a half model.

progress.jsonl schema (every record has ``event``, ``time`` (Unix seconds),
``epoch`` (0-based) and ``step`` (optimiser steps done)):

- ``"start"``: ``max_epochs``, ``steps_per_epoch``, ``total_steps``, ``max_minutes``
  (or null), ``train_cases`` and ``val_cases`` (names), ``accelerator``, ``devices``,
  ``precision``, ``resumed`` (bool).
- ``"step"``: ``loss``, ``dice_loss``, ``ce_loss`` (means since the previous record),
  ``lr``, ``patches_per_s`` (training patches per second over all devices, loading and
  augmentation included, validation excluded), ``patches_per_cpu_s`` (the same per second of
  this process's CPU time, which a machine busy with other work does not distort), ``elapsed_s``, ``progress`` (0-1),
  ``eta_s`` (seconds to the epoch or time limit, whichever comes first).
- ``"validation"``: ``liver_dice``, ``lesion_dice`` (means over held-out cases; lesion
  Dice only over cases with 0/1/2 labels, null when there are none), ``score`` (what
  "best" means: the mean of the case means), ``best`` (bool), ``seconds``, and
  ``cases``: ``{name: {"liver_dice": float, "lesion_dice": float | null}}``.
- ``"end"``: ``status`` (``"finished"``, ``"stopped early"``, ``"time limit"`` or
  ``"failed"``), ``elapsed_s``, ``best_score``, ``best_epoch``, ``model`` (the folder,
  or null when failed), ``error`` (the message when failed).

A line still being written may be incomplete: readers skip a last line that is not JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import random
import resource
import time
import warnings
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchio as tio
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from core import config
from core.atomic import atomic_path
from core.augment import augmentation, describe
from core.data import Case, discover, licence, sha256
from core.errors import LiverSegError
from core.metrics import dice
from core.model_card import CARD_FILE, COARSE_WEIGHTS_FILE, ModelCard
from core.preprocess import preprocessing
from core.segmentation import LESION, LIVER
from core.sliding_window import sliding_window_probabilities
from core.unet import UNet

PROGRESS_FILE, LOG_FILE, CHECKPOINT_DIR = "progress.jsonl", "train.log", "checkpoints"
BEST, LAST = "best", "last"
CACHE_VERSION = 2  # bump when the cached format or preprocessing code changes
#: Gradient norm clip (nnU-Net's value): keeps early steps on tiny batches stable.
GRADIENT_CLIP = 12.0


# ----------------------------------------------------------------------------- loss


def _soft_dice(probability: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Batch soft Dice of a probability map against a boolean mask (summed over the whole batch)."""
    target = target.to(probability.dtype)
    intersection = (probability * target).sum()
    return (2 * intersection + smooth) / (probability.sum() + target.sum() + smooth)


def segmentation_loss(
    logits: torch.Tensor, labels: torch.Tensor, partial: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dice + cross-entropy, treating liver-only labels as partial labels.

    A liver-only (0/1) label says where the liver is but not where its lesions are:
    a voxel marked 1 may be liver or an unmarked lesion. Counting it as "liver,
    not lesion" would teach the model to miss lesions, so for those samples a voxel
    marked 1 allows both classes: its cross-entropy is the negative log of the
    summed liver and lesion probability (the likelihood of the set of allowed
    classes), which never penalises a lesion inside the liver. Voxels marked 0
    (background) and 2 (synthetic lesions painted by ``core.augment``, whose truth is
    known) stay exact. The Dice part is region-based: the whole liver (liver + lesion
    probability against label > 0) for every sample, and the lesion only for samples
    with full 0/1/2 labels.

    Args:
        logits: ``(B, 3, X, Y, Z)``.
        labels: ``(B, X, Y, Z)`` integer labels 0/1/2.
        partial: ``(B,)`` bool, True for liver-only labels.

    Returns:
        (total loss, Dice loss, cross-entropy), scalars.
    """
    log_probability = F.log_softmax(logits.float(), dim=1)
    allowed = F.one_hot(labels, log_probability.shape[1]).movedim(-1, 1).bool()
    allowed[:, LESION] |= partial.view(-1, 1, 1, 1) & (labels == LIVER)
    cross_entropy = -torch.logsumexp(log_probability.masked_fill(~allowed, -torch.inf), dim=1).mean()
    probability = log_probability.exp()
    terms = [_soft_dice(probability[:, LIVER] + probability[:, LESION], labels > 0)]
    full = ~partial
    if full.any():
        terms.append(_soft_dice(probability[full, LESION], labels[full] == LESION))
    dice_loss = 1 - torch.stack(terms).mean()
    return dice_loss + cross_entropy, dice_loss, cross_entropy


# ----------------------------------------------------------------------------- cached cases


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
    from core.io import read_label_map, read_scan

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
        partial=case.partial,
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
            "partial": subject["partial"],
            "name": subject["name"],
        }


def _first(batch: list[dict]) -> dict:
    return batch[0]


def _patches(batch: list[tio.Subject]) -> dict[str, torch.Tensor]:
    """Collate Queue patches into plain tensors: image (B, 1, X, Y, Z), label (B, X, Y, Z), partial (B,)."""
    return {
        "image": torch.stack([patch["image"].data for patch in batch]),
        "label": torch.stack([patch["label"].data[0] for patch in batch]).long(),
        "partial": torch.tensor([bool(patch["partial"]) for patch in batch]),
    }


class CaseDataModule(L.LightningDataModule):
    """Cached, augmented training patches and whole held-out volumes.

    Args:
        train_cases, val_cases: the split.
        card: preprocessing and patch settings.
        cache_dir: where preprocessed cases are kept.
        options: the parsed training options.
    """

    def __init__(self, train_cases: list[Case], val_cases: list[Case], card: ModelCard, cache_dir: Path,
                 options: argparse.Namespace) -> None:
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


# ----------------------------------------------------------------------------- module


class LiverSegModule(L.LightningModule):
    """The UNet, its loss and optimiser, and whole-volume validation.

    Args:
        card: the model card's settings as a dict (architecture, spacing, window, patch).
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        total_steps: steps of the whole schedule (warm-up, then cosine decay).
        max_seconds: the time limit, if any: the schedule also follows the fraction of it used.
        val_batch_size: patches per forward pass in sliding-window validation.
    """

    def __init__(self, card: dict, lr: float, weight_decay: float, total_steps: int,
                 max_seconds: float | None = None, val_batch_size: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = UNet(card["channels"], num_classes=len(card["labels"]))
        self.validation_cases: dict[str, dict] = {}
        self.best: dict = {"score": None, "epoch": None, "cases": {}}
        self.last_validation: dict | None = None
        self.seconds_before = 0.0  # training time of earlier (resumed) runs
        self.fit_started = time.monotonic()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.network(image)

    # --- schedule: warm-up, then cosine to 1% of the peak, following steps or time, whichever is further

    def progress_fraction(self) -> float:
        fraction = self.global_step / max(1, self.hparams.total_steps)
        if self.hparams.max_seconds:
            elapsed = self.seconds_before + time.monotonic() - self.fit_started
            fraction = max(fraction, elapsed / self.hparams.max_seconds)
        return min(1.0, fraction)

    def _learning_rate(self) -> float:
        fraction = self.progress_fraction()
        if self.trainer.world_size > 1:
            # Clocks differ between processes: every process must step with rank 0's rate.
            fraction = self.trainer.strategy.broadcast(fraction)
        warmup = min(1.0, (self.global_step + 1) / max(1, min(50, self.hparams.total_steps // 20)))
        return self.hparams.lr * warmup * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * fraction)))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.network.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def on_fit_start(self) -> None:
        self.fit_started = time.monotonic()

    def on_train_epoch_start(self) -> None:
        self.trainer.datamodule.set_epoch(self.current_epoch)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        for group in self.trainer.optimizers[0].param_groups:
            group["lr"] = self._learning_rate()
        image = batch["image"]
        loss, dice_loss, cross_entropy = segmentation_loss(self.network(image), batch["label"], batch["partial"])
        self.log_dict({"loss": loss.detach(), "dice_loss": dice_loss.detach(), "ce_loss": cross_entropy.detach()},
                      batch_size=image.shape[0])
        return loss

    # --- validation on whole volumes

    def on_validation_epoch_start(self) -> None:
        self.validation_cases = {}
        self.validation_started = time.monotonic()

    def validation_step(self, case: dict, batch_index: int) -> None:
        amp = self.device.type == "cuda" and "16" in str(self.trainer.precision)
        probabilities = sliding_window_probabilities(
            self.network, case["image"], self.hparams.card["patch_size"], overlap=0.25,
            batch_size=self.hparams.val_batch_size, device=self.device, amp=amp,
        )
        predicted = probabilities.argmax(0).numpy()
        reference = case["label"].numpy()
        self.validation_cases[case["name"]] = {
            "liver_dice": dice(predicted > 0, reference > 0),
            # A liver-only reference says nothing about lesions: no lesion score for it.
            "lesion_dice": None if case["partial"] else dice(predicted == LESION, reference == LESION),
        }

    def on_validation_epoch_end(self) -> None:
        cases = dict(self.validation_cases)
        if self.trainer.world_size > 1:
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, cases)
            for part in gathered:
                cases.update(part)
        if not cases:
            return
        summary = summarise(cases)
        improved = self.best["score"] is None or summary["score"] > self.best["score"]
        if improved:
            self.best = {"score": summary["score"], "epoch": self.current_epoch, "cases": cases}
        self.last_validation = {**summary, "cases": cases, "best": improved,
                                "seconds": time.monotonic() - self.validation_started}
        # Every process holds the same gathered numbers, so no further reduction is needed.
        self.log("val_score", summary["score"], sync_dist=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["liverseg"] = {"best": self.best, "seconds": self.seconds_before + time.monotonic() - self.fit_started}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("liverseg", {})
        self.best = state.get("best", self.best)
        self.seconds_before = state.get("seconds", 0.0)


def summarise(cases: dict[str, dict]) -> dict:
    """Mean liver and lesion Dice over cases, and the score: the mean of each case's mean."""
    liver = [c["liver_dice"] for c in cases.values()]
    lesion = [c["lesion_dice"] for c in cases.values() if c["lesion_dice"] is not None]
    per_case = [float(np.mean([v for v in (c["liver_dice"], c["lesion_dice"]) if v is not None])) for c in cases.values()]
    return {
        "liver_dice": float(np.mean(liver)),
        "lesion_dice": float(np.mean(lesion)) if lesion else None,
        "score": float(np.mean(per_case)),
    }


# ----------------------------------------------------------------------------- progress


class ProgressLog:
    """Append-only ``progress.jsonl`` and ``train.log`` in the output folder (rank 0 only)."""

    def __init__(self, folder: Path, fresh: bool) -> None:
        self.progress, self.log_file = folder / PROGRESS_FILE, folder / LOG_FILE
        self.enabled = rank_zero_only.rank == 0
        if self.enabled:
            folder.mkdir(parents=True, exist_ok=True)
            if fresh:
                self.progress.write_text("", encoding="utf-8")
                self.log_file.write_text("", encoding="utf-8")

    def record(self, event: str, **fields) -> None:
        if self.enabled:
            line = json.dumps({"event": event, "time": round(time.time(), 3), **fields})
            with open(self.progress, "a", encoding="utf-8") as stream:  # one write per line: readers see whole lines
                stream.write(line + "\n")

    def say(self, text: str) -> None:
        if self.enabled:
            stamped = "\n".join(f"{datetime.now():%H:%M:%S} {line}" for line in text.splitlines())
            print(stamped, flush=True)
            with open(self.log_file, "a", encoding="utf-8") as stream:
                stream.write(stamped + "\n")


class ProgressCallback(Callback):
    """Writes step, validation and start records; throughput counts training time only."""

    def __init__(self, log: ProgressLog, steps_per_epoch: int, start_fields: dict) -> None:
        self.progress_log, self.steps_per_epoch, self.start_fields = log, steps_per_epoch, start_fields
        self.every = max(1, steps_per_epoch // 10)
        self._reset()

    def _reset(self) -> None:
        self.sums = {"loss": 0.0, "dice_loss": 0.0, "ce_loss": 0.0}
        self.batches, self.patches, self.train_seconds, self.cpu_seconds = 0, 0, 0.0, 0.0
        self.mark, self.cpu_mark = time.monotonic(), time.process_time()

    def on_train_start(self, trainer, module) -> None:  # after a resumed checkpoint has been restored
        self.progress_log.record("start", epoch=trainer.current_epoch, step=trainer.global_step,
                                 steps_per_epoch=self.steps_per_epoch,
                        **self.start_fields)
        self.progress_log.say(f"training: {self.start_fields['max_epochs']} epochs x {self.steps_per_epoch} steps"
                     f" on {self.start_fields['accelerator']} x{self.start_fields['devices']} ({self.start_fields['precision']})")
        self.mark, self.cpu_mark = time.monotonic(), time.process_time()

    def on_train_epoch_start(self, trainer, module) -> None:
        self.mark, self.cpu_mark = time.monotonic(), time.process_time()

    def on_validation_end(self, trainer, module) -> None:
        self.mark, self.cpu_mark = time.monotonic(), time.process_time()  # validation is not training throughput
        result = module.last_validation
        if result is None or trainer.sanity_checking:
            return
        self.progress_log.record("validation", epoch=trainer.current_epoch, step=trainer.global_step, **result)
        cases = ", ".join(f"{name} {_number(v['liver_dice'])}/{_number(v['lesion_dice'])}"
                          for name, v in sorted(result["cases"].items()))
        self.progress_log.say(f"epoch {trainer.current_epoch} validation: liver Dice {_number(result['liver_dice'])}, "
                     f"lesion Dice {_number(result['lesion_dice'])}, "
                     f"score {result['score']:.3f}{' (best)' if result['best'] else ''} [{cases}] {result['seconds']:.0f} s")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        now, cpu_now = time.monotonic(), time.process_time()
        self.train_seconds += now - self.mark
        self.cpu_seconds += cpu_now - self.cpu_mark
        self.mark, self.cpu_mark = now, cpu_now
        metrics = trainer.callback_metrics
        for key in self.sums:
            self.sums[key] += float(metrics.get(key, float("nan")))
        self.batches += 1
        self.patches += batch["image"].shape[0] * trainer.world_size
        last_of_epoch = batch_index + 1 >= self.steps_per_epoch
        if trainer.global_step % self.every and not last_of_epoch:
            return
        fraction = module.progress_fraction()
        elapsed = module.seconds_before + now - module.fit_started
        means = {key: value / self.batches for key, value in self.sums.items()}
        throughput = self.patches / max(self.train_seconds, 1e-9)
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        self.progress_log.record("step", epoch=trainer.current_epoch, step=trainer.global_step, **means, lr=lr,
                        patches_per_s=throughput,
                        patches_per_cpu_s=self.patches / trainer.world_size / max(self.cpu_seconds, 1e-9),
                        elapsed_s=elapsed, progress=fraction, eta_s=eta)
        self.progress_log.say(f"epoch {trainer.current_epoch} step {trainer.global_step}: loss {means['loss']:.4f} "
                     f"(Dice {means['dice_loss']:.4f}, CE {means['ce_loss']:.4f}) lr {lr:.2e} "
                     f"{throughput:.2f} patches/s, {fraction:.0%} done" + (f", ETA {eta / 60:.1f} min" if eta else ""))
        self._reset()


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints through ``core.atomic``: a kill mid-write leaves the previous checkpoint intact."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_path(Path(path)) as temporary:
            super().save_checkpoint(checkpoint, temporary, storage_options)


# ----------------------------------------------------------------------------- the run


def excluded_names(exclude: str | None) -> list[str]:
    """The case names ``--exclude`` gives (separated by commas)."""
    return sorted({name.strip() for name in (exclude or "").split(",") if name.strip()})


def exclude_cases(cases: list[Case], exclude: str | None) -> list[Case]:
    """``cases`` without those named in ``--exclude``."""
    unwanted = set(excluded_names(exclude))
    unknown = sorted(unwanted - {case.name for case in cases})
    if unknown:
        raise LiverSegError(f"--exclude names unknown case(s) {unknown}; the cases found are {sorted(c.name for c in cases)}")
    kept = [case for case in cases if case.name not in unwanted]
    if not kept:
        raise LiverSegError(f"--exclude {exclude} leaves no case to train on; exclude fewer cases")
    return kept


def split_cases(cases: list[Case], val: str, seed: int) -> tuple[list[Case], list[Case]]:
    """(training cases, held-out validation cases) from ``--val``: a fraction, a count, or names."""
    names = {case.name for case in cases}
    if any(c.isalpha() for c in val):
        wanted = [name.strip() for name in val.split(",") if name.strip()]
        unknown = sorted(set(wanted) - names)
        if unknown:
            raise LiverSegError(f"--val names unknown case(s) {unknown}; the cases found are {sorted(names)}")
        held_out = [case for case in cases if case.name in wanted]
    else:
        try:
            number = float(val)
        except ValueError:
            raise LiverSegError(f"--val {val!r}: give a fraction (0.2), a count (3) or case names separated by commas") from None
        count = round(number * len(cases)) if "." in val else int(number)
        if number > 0 and len(cases) > 1:
            count = max(1, count)
        shuffled = sorted(cases, key=lambda case: case.name)
        random.Random(seed).shuffle(shuffled)
        held_out = shuffled[:count]
    train = [case for case in cases if case not in held_out]
    if not train:
        raise LiverSegError(f"--val {val} leaves no case to train on; hold out fewer cases")
    return train, held_out


def _card(options: argparse.Namespace, name: str) -> tuple[ModelCard, torch.nn.Module | None]:
    """The new model's card, and the initial network when fine-tuning (``--init``)."""
    if options.init:
        from core.registry import load_network

        network, initial = load_network(options.init)
        card = ModelCard(name=name, channels=initial.channels, spacing_mm=initial.spacing_mm, hu_window=initial.hu_window,
                         patch_size=list(options.patch_size), denoise=initial.denoise, labels=initial.labels)
        return card, network
    spacing = list(options.spacing) * 3 if len(options.spacing) == 1 else list(options.spacing)
    if len(spacing) != 3:
        raise LiverSegError(f"--spacing takes one value or three, not {len(options.spacing)}")
    return ModelCard(name=name, channels=list(options.channels), spacing_mm=spacing, hu_window=list(options.hu_window),
                     patch_size=list(options.patch_size), denoise=None if options.denoise == "none" else options.denoise), None


def first_stage(options: argparse.Namespace) -> tuple[ModelCard, torch.nn.Module] | None:
    """The cascade's first stage from ``--coarse`` (or kept from an ``--init`` cascade): its card and network."""
    from core.registry import load_folder, model_dir

    source = options.coarse or options.init
    if source is None:
        return None
    folder = Path(source).expanduser()
    folder = folder if (folder / CARD_FILE).is_file() else model_dir(source)
    network, card, coarse = load_folder(folder)
    if options.coarse is None:  # fine-tuning: a cascade keeps its first stage, a single-stage model has none
        return None if card.cascade is None else (card.coarse, coarse)  # type: ignore[return-value]
    if coarse is not None:
        raise LiverSegError(f"--coarse {source}: that model is itself a cascade; give a single-stage model trained at a coarse spacing")
    return card, network


def evaluate_held_out(network: torch.nn.Module, card: ModelCard, cases: list[Case], device: str = "cpu",
                      coarse: torch.nn.Module | None = None) -> dict[str, dict]:
    """Score ``network`` on whole held-out cases exactly as users get it, per case.

    Each scan goes through ``core.inference`` (preprocessing, sliding window,
    post-processing, labels back on the scan's own grid) and is compared with its
    reference on that grid by ``core.metrics.evaluate``. Returns per case the liver and
    lesion Dice, HD95 (mm), volume difference (%), and lesion detection recall and
    precision; lesion values are ``None`` for liver-only references.
    """
    from core.inference import Segmenter
    from core.io import read_label_map, read_scan
    from core.metrics import evaluate

    segmenter = Segmenter.from_network(network, card, device=device, coarse=coarse)
    results = {}
    for case in cases:
        scan = read_scan(case.image)
        reference, _ = read_label_map(case.label)
        started = time.perf_counter()
        predicted = segmenter.segment(scan).labels
        seconds = time.perf_counter() - started
        scores = evaluate(predicted, reference, scan.spacing, reference_has_lesions=not case.partial)
        results[case.name] = {
            "liver_dice": scores["liver"]["dice"],
            "lesion_dice": scores["lesion"]["dice"],
            "liver_hd95_mm": scores["liver"]["hd95_mm"],
            "lesion_hd95_mm": scores["lesion"]["hd95_mm"],
            "liver_volume_diff_pct": scores["liver"]["volume_diff_pct"],
            "lesion_volume_diff_pct": scores["lesion"]["volume_diff_pct"],
            "lesion_recall": scores["lesion_detection"]["recall"],
            "lesion_precision": scores["lesion_detection"]["precision"],
            "inference_s": round(seconds, 1),
        }
    return results


def _hardware(trainer: L.Trainer) -> dict:
    accelerator = type(trainer.accelerator).__name__.replace("Accelerator", "").lower()
    if accelerator == "cuda":
        device = torch.cuda.get_device_name(trainer.strategy.root_device)
    else:
        cpuinfo = Path("/proc/cpuinfo")
        names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text(encoding="utf-8").splitlines() if cpuinfo.exists() else [])
                 if line.startswith("model name")]
        device = names[0] if names else platform.processor()
    return {
        "accelerator": accelerator,
        "devices": trainer.num_devices,
        "nodes": trainer.num_nodes,
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "precision": str(trainer.precision),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "torchio": tio.__version__,
    }


def _precision(options: argparse.Namespace) -> str:
    if options.precision != "auto":
        return options.precision
    gpu = options.accelerator in ("gpu", "cuda") or (options.accelerator == "auto" and torch.cuda.is_available())
    if not gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _num_workers(options: argparse.Namespace) -> int:
    if options.num_workers >= 0:
        return options.num_workers
    on_cpu = options.accelerator == "cpu" or (options.accelerator == "auto" and not torch.cuda.is_available())
    return 0 if on_cpu else min(4, max(0, (os.cpu_count() or 1) - 1))


def train_from_args(args: argparse.Namespace) -> Path:
    """Run ``python -m core train`` with parsed ``args``; return the model folder.

    Raises:
        LiverSegError: unusable data or options, an existing model in ``--out``, or a failed run.
    """
    from core.train_config import add_train_arguments, command_line

    parser = argparse.ArgumentParser(prog="python -m core train")
    add_train_arguments(parser)
    command = command_line(args, parser)
    out = Path(args.out).expanduser().resolve()
    checkpoints = out / CHECKPOINT_DIR
    if (out / CARD_FILE).exists():
        raise LiverSegError(f"{out} already holds a finished model; choose another --out or remove that folder")
    if args.resume and not (checkpoints / f"{LAST}.ckpt").exists():
        raise LiverSegError(f"--resume: no checkpoint at {checkpoints / (LAST + '.ckpt')}; start without --resume")
    if not args.resume and (checkpoints / f"{LAST}.ckpt").exists():
        raise LiverSegError(f"{out} holds an unfinished run; add --resume to continue it, or choose another --out")
    args.num_workers = _num_workers(args)
    # Lightning's start-up notices (GPU/TPU availability, tips) would drown the training log.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # inside Lightning; nothing to act on
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")  # expected on --resume

    log = ProgressLog(out, fresh=not args.resume)
    report = discover([Path(d) for d in args.data])
    log.say(report.summary())
    cases = exclude_cases(report.require_cases(), args.exclude)
    train_cases, val_cases = split_cases(cases, args.val, args.seed)
    log.say(f"split (seed {args.seed}): train {[c.name for c in train_cases]}, validation {[c.name for c in val_cases]}")
    card, initial = _card(args, out.name)
    stage_one = first_stage(args)  # before training: a wrong --coarse fails now, not after an hour
    L.seed_everything(args.seed, workers=True, verbose=False)
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else config.CACHE_DIR / "train"
    datamodule = CaseDataModule(train_cases, val_cases, card, cache_dir, args)

    precision = _precision(args)
    # Two checkpoint callbacks: Lightning's save_last only follows saves of the best one, but
    # --resume must continue from the latest epoch, not from the best.
    last_checkpoint = ModelCheckpoint(dirpath=checkpoints, filename=LAST, monitor=None, save_top_k=1,
                                      save_on_train_epoch_end=True, enable_version_counter=False)
    callbacks: list[Callback] = [last_checkpoint]
    best_checkpoint = None
    if val_cases:
        best_checkpoint = ModelCheckpoint(dirpath=checkpoints, filename=BEST, monitor="val_score", mode="max", save_top_k=1,
                                          enable_version_counter=False)
        callbacks += [best_checkpoint, EarlyStopping(monitor="val_score", mode="max", patience=args.patience,
                                                     check_on_train_epoch_end=False)]
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=_devices(args.devices), strategy=args.strategy, num_nodes=args.num_nodes,
        precision=precision, max_epochs=args.epochs,
        max_time={"minutes": args.max_minutes} if args.max_minutes else None,
        check_val_every_n_epoch=args.val_every, limit_val_batches=1.0 if val_cases else 0,
        num_sanity_val_steps=0, gradient_clip_val=GRADIENT_CLIP, use_distributed_sampler=False,
        logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
        plugins=[AtomicCheckpointIO()], callbacks=callbacks,
    )
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    elif trainer.accelerator.__class__.__name__ == "CPUAccelerator" and trainer.world_size > 1:
        # Several processes on one machine's cores: share the cores instead of oversubscribing them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, trainer.num_devices)))
    steps_per_epoch = datamodule.steps_per_epoch(trainer.world_size)
    total_steps = steps_per_epoch * args.epochs
    module = LiverSegModule(asdict(card), lr=args.lr, weight_decay=args.weight_decay,
                            total_steps=total_steps, max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                            val_batch_size=args.batch_size)
    if initial is not None:
        module.network.load_state_dict(initial.state_dict())
        log.say(f"fine-tuning from model {args.init!r}")
    start_fields = {
        "max_epochs": args.epochs, "total_steps": total_steps, "max_minutes": args.max_minutes,
        "train_cases": [c.name for c in train_cases], "val_cases": [c.name for c in val_cases],
        "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
        "devices": trainer.num_devices, "precision": str(trainer.precision), "resumed": bool(args.resume),
    }
    trainer.callbacks.insert(0, ProgressCallback(log, steps_per_epoch, start_fields))
    resume_from = checkpoints / f"{LAST}.ckpt" if args.resume else None
    if resume_from is not None:
        _check_resumable(resume_from, card)
        log.say(f"resuming from {resume_from}")

    started = time.monotonic()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    except BaseException as error:  # also SIGTERM (Lightning exits) and Ctrl-C: the record says the run ended
        log.record("end", epoch=trainer.current_epoch, step=trainer.global_step, status="failed", model=None,
                   error=f"{type(error).__name__}: {error}", elapsed_s=time.monotonic() - started)
        raise
    if trainer.interrupted:
        log.record("end", epoch=trainer.current_epoch, step=trainer.global_step, status="failed", model=None,
                   error="interrupted", elapsed_s=time.monotonic() - started)
        raise KeyboardInterrupt
    if not trainer.is_global_zero:
        return out

    if trainer.early_stopping_callback is not None and trainer.early_stopping_callback.stopped_epoch:
        status = "stopped early"
    elif trainer.current_epoch < args.epochs:
        status = "time limit"
    else:
        status = "finished"
    seconds = module.seconds_before + time.monotonic() - module.fit_started
    best_path = checkpoints / f"{LAST}.ckpt"
    if best_checkpoint is not None and best_checkpoint.best_model_path:
        best_path = Path(best_checkpoint.best_model_path)
    state = torch.load(best_path, map_location="cpu", weights_only=True)
    network = UNet(card.channels, num_classes=len(card.labels))
    network.load_state_dict({key.removeprefix("network."): value for key, value in state["state_dict"].items()})
    best = state.get("liverseg", {}).get("best") or module.best
    card.created = datetime.now().astimezone().isoformat(timespec="seconds")
    hardware = _hardware(trainer)
    card.training = {
        "command": command,
        "data": [
            {"case": c.name, "role": "validation" if c in val_cases else "training", "kind": c.kind, "layout": c.layout,
             "image": str(c.image), "image_sha256": sha256(c.image), "label": str(c.label), "label_sha256": sha256(c.label),
             "licence": licence(c.image)}
            for c in train_cases + val_cases
        ],
        "split": {"training": [c.name for c in train_cases], "validation": [c.name for c in val_cases], "seed": args.seed,
                  "rule": f"--val {args.val}", "excluded": excluded_names(args.exclude)},
        "augmentation": describe(args.augment, args.synthetic_lesions),
        "init": args.init,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "best_epoch": best["epoch"],
        "status": status,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                                 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)), 1),
        "hardware": hardware,
        "options": {key: value for key, value in vars(args).items() if key not in ("run", "command")},
    }
    coarse = None
    if stage_one is not None:
        coarse_card, coarse = stage_one
        card.cascade = {"coarse": asdict(coarse_card), "weights": COARSE_WEIGHTS_FILE, "roi_margin_mm": args.roi_margin}
    if val_cases:
        log.say("scoring the best model on the held-out cases with the inference pipeline")
        held_out = evaluate_held_out(network, card, val_cases, device="cuda" if hardware["accelerator"] == "cuda" else "cpu",
                                     coarse=coarse)
        for name, scores in held_out.items():
            log.say(f"held out {name}: liver Dice {_number(scores['liver_dice'])}, lesion Dice {_number(scores['lesion_dice'])}")
        card.metrics = {
            "measured_on": "held-out validation cases, never trained on: each scan segmented by core.inference "
                           "(preprocessing, sliding window, post-processing) with the best epoch's weights and scored "
                           "on its own grid by core.metrics.evaluate",
            "cases": held_out,
            "mean": summarise(held_out),
            "during_training": {"note": "per-epoch validation on the model grid, raw argmax, at the best epoch",
                                "cases": best["cases"]},
        }
    else:
        card.metrics = {"measured_on": "none: no case was held out (--val 0), so this card makes no accuracy claim"}
    from core.registry import save_model

    save_model(network, card, out, coarse=coarse)
    log.record("end", epoch=trainer.current_epoch, step=trainer.global_step, status=status, model=str(out),
               elapsed_s=seconds, best_score=best["score"], best_epoch=best["epoch"])
    log.say(f"{status}: model written to {out} ({seconds / 60:.1f} min)")
    return out


def _check_resumable(path: Path, card: ModelCard) -> None:
    stored = torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters", {}).get("card", {})
    for key in ("channels", "spacing_mm", "hu_window", "patch_size", "denoise"):
        if stored.get(key) != getattr(card, key):
            raise LiverSegError(f"--resume: the checkpoint was trained with {key}={stored.get(key)}, "
                                f"not {getattr(card, key)}; resume with the original options")

