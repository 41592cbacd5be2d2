"""The Lightning module: the UNet, its learning-rate schedule and optimiser, and whole-volume validation."""

from __future__ import annotations

import math
import time

import lightning as L
import numpy as np
import torch

from core.evaluation.metrics import dice
from core.inference.sliding_window import sliding_window_probabilities
from core.model.unet import UNet
from core.segmentation import BACKGROUND, LESION
from core.training.loss import segmentation_loss


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
        loss, dice_loss, cross_entropy = segmentation_loss(self.network(image), batch["label"], batch["liver_only"])
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
            "liver_dice": dice(predicted > BACKGROUND, reference > BACKGROUND),
            # A liver-only reference says nothing about lesions: no lesion score for it.
            "lesion_dice": None if case["liver_only"] else dice(predicted == LESION, reference == LESION),
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
