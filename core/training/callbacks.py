"""Lightning callbacks of a run: progress records and log lines, and checkpoints written atomically."""

from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from core.atomic import atomic_path
from core.training.progress import START, STEP, VALIDATION, ProgressLog
from core.viewing.numbers import number


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
        self.progress_log.record(START, epoch=trainer.current_epoch, step=trainer.global_step,
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
        self.progress_log.record(VALIDATION, epoch=trainer.current_epoch, step=trainer.global_step, **result)
        cases = ", ".join(f"{name} {number(v['liver_dice'])}/{number(v['lesion_dice'])}"
                          for name, v in sorted(result["cases"].items()))
        self.progress_log.say(f"epoch {trainer.current_epoch} validation: liver Dice {number(result['liver_dice'])}, "
                     f"lesion Dice {number(result['lesion_dice'])}, "
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
        self.progress_log.record(STEP, epoch=trainer.current_epoch, step=trainer.global_step, **means, lr=lr,
                        patches_per_s=throughput,
                        patches_per_cpu_s=self.patches / trainer.world_size / max(self.cpu_seconds, 1e-9),
                        elapsed_s=elapsed, progress=fraction, eta_s=eta)
        self.progress_log.say(f"epoch {trainer.current_epoch} step {trainer.global_step}: loss {means['loss']:.4f} "
                     f"(Dice {means['dice_loss']:.4f}, CE {means['ce_loss']:.4f}) lr {lr:.2e} "
                     f"{throughput:.2f} patches/s, {fraction:.0%} done" + (f", ETA {eta / 60:.1f} min" if eta else ""))
        self._reset()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints through ``core.atomic``: a kill mid-write leaves the previous checkpoint intact."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_path(Path(path)) as temporary:
            super().save_checkpoint(checkpoint, temporary, storage_options)
