"""``fine_tune_pair``: ``python -m core train --init kul-liver-lesion-v1`` fine-tunes one of the pretrained networks.

The network sees exactly what it sees at inference (``core.inference.pretrained_pair``): the
lesion network tiles of the scaled CT inside the case's own liver (the expert label, as the
authors trained it), the liver network the whole 3 mm abdomen canvas. The loss is the authors'
soft Dice on the sigmoid output, with Adam. ``--train-layers`` chooses what learns: ``head``
(the finest up block and the output convolution), ``decoder`` (every up block and the output)
or ``all``; the rest keeps the authors' weights, which is what a handful of cases can afford
to move. Lesion tiles are centred on a lesion voxel two times in three (on any liver voxel
otherwise), so that the few lesion voxels are seen. One step is one tile (or one canvas):
``--epochs`` x ``--patches-per-epoch`` steps. The other network is copied unchanged; the new
model's card records the data, the steps and the held-out scores as ``core.training.run`` does.
"""

from __future__ import annotations

import copy
import resource
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from core.errors import LiverSegError
from core.imageio.nifti import read_scan
from core.inference.pretrained_pair import LESION_OUTPUT, LESION_TILE, Canonical, LesionView, liver_input_and_target
from core.inference.sliding_window import cpu_has_native_bfloat16
from core.model.card import ModelCard
from core.model.multipathway_unet import MultiPathwayUNet, NetworkPair
from core.segmentation import BACKGROUND, LESION
from core.training.discovery import Case, discover
from core.training.options import TrainOptions
from core.training.progress import END, START, STEP, ProgressLog

SMOOTH = 1.0
REPORT_EVERY_S = 10.0


def trainable(network: MultiPathwayUNet, layers: str) -> list[torch.nn.Parameter]:
    """The parameters ``layers`` lets learn; the others are frozen."""
    chosen = {"head": [network.up[0], network.head], "decoder": [*network.up, network.head], "all": [network]}[layers]
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    parameters = [p for module in chosen for p in module.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    return parameters


def soft_dice_loss(probability: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    overlap = (probability * target).sum()
    return 1 - (2 * overlap + SMOOTH) / (probability.sum() + target.sum() + SMOOTH)


def _window(array: np.ndarray, centre, size, fill) -> np.ndarray:
    """``array`` around ``centre`` in a box of ``size`` (``fill`` outside), cut as the tiler cuts tiles."""
    out = np.full(size, fill, array.dtype)
    source, target = [], []
    for c, n, extent in zip(centre, size, array.shape):
        low = int(c) - n // 2
        source.append(slice(max(0, low), min(extent, low + n)))
        target.append(slice(max(0, low) - low, min(extent, low + n) - low))
    out[tuple(target)] = array[tuple(source)]
    return out


class _LesionCase:
    """One case as the lesion network learns it: its view inside the expert liver and the lesion target."""

    def __init__(self, case: Case) -> None:
        scan = read_scan(case.image)
        labels = Canonical(case.ground_truth().labels, scan.affine).voxels
        self.view = LesionView(Canonical(scan.voxels, scan.affine), labels > BACKGROUND)
        self.lesion = self.view.resampled(labels == LESION)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        where = np.argwhere(self.lesion if self.lesion.any() and rng.random() < 2 / 3 else self.view.liver)
        centre = where[rng.integers(len(where))]
        return (_window(self.view.image, centre, LESION_TILE, 0.0),
                _window(self.lesion, centre, LESION_OUTPUT, False).astype(np.float32))


def _liver_case(case: Case) -> tuple[np.ndarray, np.ndarray]:
    scan = read_scan(case.image)
    return liver_input_and_target(scan.voxels, scan.affine, case.ground_truth().labels > BACKGROUND)


def fine_tune(network: MultiPathwayUNet, which: str, layers: str, cases: list[Case], steps: int, learning_rate: float,
              seed: int = 0, amp: bool = False, report=None) -> list[float]:
    """Train ``network`` (the pair's ``which`` network) in place for ``steps`` steps; the loss of each step.

    ``report(step, loss, elapsed_s)`` after each step.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if which == "lesion":
        usable = [case for case in cases if not case.liver_only]
        if not usable:
            raise LiverSegError("fine-tuning the lesion network needs cases whose labels mark lesions (0/1/2); "
                                f"{', '.join(c.name for c in cases)} mark the liver only")
        lesion_cases = [_LesionCase(case) for case in usable]

        def draw() -> tuple[np.ndarray, np.ndarray]:
            return lesion_cases[rng.integers(len(lesion_cases))].sample(rng)
    else:
        liver_cases = [_liver_case(case) for case in cases]

        def draw() -> tuple[np.ndarray, np.ndarray]:
            return liver_cases[rng.integers(len(liver_cases))]
    optimiser = torch.optim.Adam(trainable(network, layers), lr=learning_rate)
    network.train()
    losses = []
    started = time.perf_counter()
    for step in range(steps):
        image, target = draw()
        optimiser.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            probability = network(torch.from_numpy(image)[None, None])
        loss = soft_dice_loss(probability.float(), torch.from_numpy(target)[None, None])
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if report:
            report(step + 1, losses[-1], time.perf_counter() - started)
    network.eval()
    return losses


def fine_tune_pair(options: TrainOptions, command: str, out: Path) -> Path:
    """``python -m core train --init PAIR``: fine-tune ``options.network`` and write the new pair to ``out``."""
    from core.model.registry import load_network, save_model
    from core.training.run import data_and_split, exclude_cases, split_cases

    if options.resume:
        raise LiverSegError("--resume is not offered for fine-tuning the pretrained pair; start again (its runs are short)")
    if options.accelerator == "cuda" or options.devices not in ("auto", "1"):
        raise LiverSegError("fine-tuning the pretrained pair runs on one CPU process here; use --accelerator auto or cpu")
    if options.threads > 0:
        torch.set_num_threads(options.threads)
    log = ProgressLog(out, fresh=True)
    report = discover([Path(d) for d in options.data])
    log.say(report.summary())
    cases = exclude_cases(report.require_cases(), options.excluded)
    train_cases, val_cases = split_cases(cases, options.val, options.seed)
    log.say(f"split (seed {options.seed}): train {[c.name for c in train_cases]}, validation {[c.name for c in val_cases]}")
    pair, initial = load_network(options.init)
    assert isinstance(pair, NetworkPair)
    steps = options.epochs * options.patches_per_epoch
    amp = options.precision == "mixed" or (options.precision == "auto" and cpu_has_native_bfloat16())
    log.record(START, epoch=0, step=0, max_epochs=options.epochs, steps_per_epoch=options.patches_per_epoch,
               total_steps=steps, max_minutes=options.max_minutes, train_cases=[c.name for c in train_cases],
               val_cases=[c.name for c in val_cases], accelerator="cpu", devices=1,
               precision="bf16-mixed" if amp else "32-true", resumed=False)
    log.say(f"fine-tuning the {options.network} network of {options.init!r} ({options.train_layers} layers) for {steps} steps")
    started = time.monotonic()
    last = {"time": started, "losses": []}

    def progress(step: int, loss: float, elapsed: float) -> None:
        last["losses"].append(loss)
        now = time.monotonic()
        if now - last["time"] >= REPORT_EVERY_S or step == steps:
            mean = float(np.mean(last["losses"]))
            log.record(STEP, epoch=(step - 1) // options.patches_per_epoch, step=step, loss=mean, dice_loss=mean,
                       ce_loss=None, lr=options.lr, patches_per_s=step / elapsed, patches_per_cpu_s=None,
                       elapsed_s=elapsed, progress=step / steps, eta_s=elapsed / step * (steps - step))
            last.update(time=now, losses=[])
        if options.max_minutes and elapsed > options.max_minutes * 60:
            raise TimeoutError

    network = getattr(pair, options.network)
    try:
        fine_tune(network, options.network, options.train_layers, train_cases, steps, options.lr, options.seed, amp, progress)
        status = "finished"
    except TimeoutError:
        network.eval()
        status = "time limit"
    except BaseException as error:
        log.record(END, epoch=0, step=0, status="failed", model=None, error=f"{type(error).__name__}: {error}",
                   elapsed_s=time.monotonic() - started)
        raise
    seconds = time.monotonic() - started
    card = replace(copy.deepcopy(initial), name=out.name, shipped=False,
                   created=datetime.now().astimezone().isoformat(timespec="seconds"))
    card.pretrained.pop("cpu_bfloat16", None)  # measured for the authors' weights, not for these
    card.pretrained["fine_tuned"] = {"from": options.init, "network": options.network, "layers": options.train_layers,
                                     "steps": steps, "lr": options.lr, "loss": "soft Dice", "status": status}
    card.training = {
        "command": command,
        **data_and_split(train_cases, val_cases, options),
        "init": options.portable().init,
        "status": status,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),
        "options": options.record(),
    }
    card.metrics = _held_out_metrics(pair, card, val_cases, log)
    save_model(pair, card, out)
    log.record(END, epoch=options.epochs - 1, step=steps, status=status, model=str(out), elapsed_s=seconds,
               best_score=None, best_epoch=None)
    log.say(f"model written to {out}")
    return out


def _held_out_metrics(pair: NetworkPair, card: ModelCard, val_cases: list[Case], log: ProgressLog) -> dict:
    if not val_cases:
        return {"measured_on": "none: no case was held out (--val 0), so this card makes no accuracy claim; "
                               "python -m core compare-models scores it on the cases it never saw"}
    from core.training.module import summarise
    from core.training.run import evaluate_held_out

    log.say("scoring the fine-tuned pair on the held-out cases with the inference pipeline")
    held_out = evaluate_held_out(pair, card, val_cases)

    return {"measured_on": "held-out validation cases, never trained on, through core.pipeline", "cases": held_out,
            "mean": summarise(held_out)}
