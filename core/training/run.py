"""The training run: ``python -m core train`` from parsed options to a finished model folder.

One command from a laptop CPU to several GPUs with DDP (PyTorch Lightning). The output
folder (``--out``)::

    progress.jsonl   progress records (schema: ``core.training.progress``)
    train.log        the same events as plain text (also printed on stdout)
    checkpoints/     best.ckpt (highest validation score) and last.ckpt, each written
                     atomically; ``--resume`` continues from last.ckpt
    model.pt         the best weights (a state dict), written only when training ends
    card.json        the model card, written last: a folder with card.json is a complete model

A run that crashes or is killed leaves progress, log and checkpoints, but no
model.pt/card.json, so the registry never sees a half model.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import resource
import time
import warnings
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path

import lightning as L
import torch
import torchio as tio
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from core import config
from core.errors import LiverSegError
from core.model.card import CARD_FILE, FIRST_STAGE_WEIGHTS_FILE, ModelCard
from core.model.unet import UNet
from core.training.augmentation import describe
from core.training.callbacks import AtomicCheckpointIO, ProgressCallback
from core.training.datamodule import CaseDataModule
from core.training.discovery import Case, discover, licence, sha256
from core.training.module import LiverSegModule, summarise
from core.training.options import TrainOptions
from core.training.progress import END, ProgressLog
from core.viewing.numbers import number

CHECKPOINT_DIR = "checkpoints"
BEST, LAST = "best", "last"
#: Gradient norm clip (nnU-Net's value): keeps early steps on tiny batches stable.
GRADIENT_CLIP = 12.0


def exclude_cases(cases: list[Case], names: list[str]) -> list[Case]:
    """``cases`` without those named in ``--exclude`` (``TrainOptions.excluded``)."""
    unwanted = set(names)
    unknown = sorted(unwanted - {case.name for case in cases})
    if unknown:
        raise LiverSegError(f"--exclude names unknown case(s) {unknown}; the cases found are {sorted(c.name for c in cases)}")
    kept = [case for case in cases if case.name not in unwanted]
    if not kept:
        raise LiverSegError(f"--exclude {','.join(names)} leaves no case to train on; exclude fewer cases")
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
            share = float(val)
        except ValueError:
            raise LiverSegError(f"--val {val!r}: give a fraction (0.2), a count (3) or case names separated by commas") from None
        count = round(share * len(cases)) if "." in val else int(share)
        if share > 0 and len(cases) > 1:
            count = max(1, count)
        shuffled = sorted(cases, key=lambda case: case.name)
        random.Random(seed).shuffle(shuffled)
        held_out = shuffled[:count]
    train = [case for case in cases if case not in held_out]
    if not train:
        raise LiverSegError(f"--val {val} leaves no case to train on; hold out fewer cases")
    return train, held_out


def _card(options: TrainOptions, name: str) -> tuple[ModelCard, torch.nn.Module | None]:
    """The new model's card, and the initial network when fine-tuning (``--init``)."""
    if options.init:
        from core.model.registry import load_network

        network, initial = load_network(options.init)
        card = ModelCard(name=name, channels=initial.channels, spacing_mm=initial.spacing_mm, hu_window=initial.hu_window,
                         patch_size=list(options.patch_size), denoise=initial.denoise, labels=initial.labels)
        return card, network
    spacing = list(options.spacing) * 3 if len(options.spacing) == 1 else list(options.spacing)
    if len(spacing) != 3:
        raise LiverSegError(f"--spacing takes one value or three, not {len(options.spacing)}")
    return ModelCard(name=name, channels=list(options.channels), spacing_mm=spacing, hu_window=list(options.hu_window),
                     patch_size=list(options.patch_size), denoise=None if options.denoise == "none" else options.denoise), None


def data_and_split(train_cases: list[Case], val_cases: list[Case], options: TrainOptions) -> dict:
    """The card's record of the cases a run used (by data folder, with checksums and licences) and its split."""
    return {
        "data": [{"case": c.name, "role": "validation" if c in val_cases else "training", "kind": c.kind, "layout": c.layout,
                  **c.record(), "image_sha256": sha256(c.image), "label_sha256": sha256(c.label), "licence": licence(c.image)}
                 for c in train_cases + val_cases],
        "split": {"training": [c.name for c in train_cases], "validation": [c.name for c in val_cases], "seed": options.seed,
                  "rule": f"--val {options.val}", "excluded": options.excluded},
    }


def _is_pretrained_pair(name: str) -> bool:
    from core.model.card import PRETRAINED_PAIR
    from core.model.registry import model_dir

    return ModelCard.load(model_dir(name)).architecture == PRETRAINED_PAIR


def first_stage(options: TrainOptions) -> tuple[ModelCard, torch.nn.Module] | None:
    """The cascade's first stage from ``--first-stage`` (or kept from an ``--init`` cascade): its card and network."""
    from core.model.registry import load_folder, model_dir

    source = options.first_stage or options.init
    if source is None:
        return None
    folder = Path(source).expanduser()
    folder = folder if (folder / CARD_FILE).is_file() else model_dir(source)
    network, card, first = load_folder(folder)
    if options.first_stage is None:  # fine-tuning: a cascade keeps its first stage, a single-stage model has none
        return None if card.cascade is None else (card.first_stage, first)  # type: ignore[return-value]
    if first is not None:
        raise LiverSegError(f"--first-stage {source}: that model is itself a cascade; give a single-stage model trained at a coarse spacing")
    return card, network


def evaluate_held_out(network: torch.nn.Module, card: ModelCard, cases: list[Case], device: str = "cpu",
                      first_stage: torch.nn.Module | None = None) -> dict[str, dict]:
    """Score ``network`` on whole held-out cases exactly as users get it, per case.

    Each scan goes through ``core.pipeline.run`` (preprocessing, sliding window,
    post-processing, labels back on the scan's own grid, scored against its reference on
    that grid). Returns per case the liver and lesion Dice, HD95 (mm), volume difference
    (%), and lesion detection recall and precision; lesion values are ``None`` for
    liver-only references.
    """
    from core import pipeline
    from core.evaluation.metrics import summary
    from core.imageio.nifti import read_scan
    from core.inference.segmenter import Segmenter

    segmenter = Segmenter.from_network(network, card, device=device, first_stage=first_stage)
    results = {}
    for case in cases:
        result = pipeline.run(read_scan(case.image), segmenter, reference=case.ground_truth())
        inference_s = sum(result.segmentation.seconds.values())
        results[case.name] = {**summary(result.metrics), "inference_s": round(inference_s, 1)}
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


def _precision(options: TrainOptions) -> str:
    """Lightning's name for ``--precision`` (``core.devices.PRECISIONS``) on the device the run trains on."""
    if options.precision == "float32":
        return "32-true"
    gpu = options.accelerator == "cuda" or (options.accelerator == "auto" and torch.cuda.is_available())
    if not gpu:
        return "bf16-mixed" if options.precision == "mixed" else "32-true"
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _num_workers(options: TrainOptions) -> int:
    if options.num_workers >= 0:
        return options.num_workers
    on_cpu = options.accelerator == "cpu" or (options.accelerator == "auto" and not torch.cuda.is_available())
    return 0 if on_cpu else min(4, max(0, (os.cpu_count() or 1) - 1))


def train(options: TrainOptions) -> Path:
    """Run ``python -m core train`` with ``options``; return the model folder.

    Raises:
        LiverSegError: unusable data or options, an existing model in ``--out``, or a failed run.
    """
    command = options.command()
    out = Path(options.out).expanduser().resolve()
    checkpoints = out / CHECKPOINT_DIR
    if (out / CARD_FILE).exists():
        raise LiverSegError(f"{out} already holds a finished model; choose another --out or remove that folder")
    if options.resume and not (checkpoints / f"{LAST}.ckpt").exists():
        raise LiverSegError(f"--resume: no checkpoint at {checkpoints / (LAST + '.ckpt')}; start without --resume")
    if not options.resume and (checkpoints / f"{LAST}.ckpt").exists():
        raise LiverSegError(f"{out} holds an unfinished run; add --resume to continue it, or choose another --out")
    if options.init and _is_pretrained_pair(options.init):
        from core.training.fine_tuning import fine_tune_pair

        return fine_tune_pair(options, command, out)
    options = replace(options, num_workers=_num_workers(options))
    # Lightning's start-up notices (GPU/TPU availability, tips) would drown the training log.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # inside Lightning; nothing to act on
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")  # expected on --resume

    log = ProgressLog(out, fresh=not options.resume, enabled=rank_zero_only.rank == 0)
    report = discover([Path(d) for d in options.data])
    log.say(report.summary())
    cases = exclude_cases(report.require_cases(), options.excluded)
    train_cases, val_cases = split_cases(cases, options.val, options.seed)
    log.say(f"split (seed {options.seed}): train {[c.name for c in train_cases]}, validation {[c.name for c in val_cases]}")
    card, initial = _card(options, out.name)
    chosen_first_stage = first_stage(options)  # before training: a wrong --first-stage fails now, not after an hour
    L.seed_everything(options.seed, workers=True, verbose=False)
    cache_dir = Path(options.cache_dir).expanduser() if options.cache_dir else config.CACHE_DIR / "train"
    datamodule = CaseDataModule(train_cases, val_cases, card, cache_dir, options)

    precision = _precision(options)
    # Two checkpoint callbacks: Lightning's save_last only follows saves of the best one, but
    # --resume must continue from the latest epoch, not from the best.
    last_checkpoint = ModelCheckpoint(dirpath=checkpoints, filename=LAST, monitor=None, save_top_k=1,
                                      save_on_train_epoch_end=True, enable_version_counter=False)
    callbacks: list[Callback] = [last_checkpoint]
    best_checkpoint = None
    if val_cases:
        best_checkpoint = ModelCheckpoint(dirpath=checkpoints, filename=BEST, monitor="val_score", mode="max", save_top_k=1,
                                          enable_version_counter=False)
        callbacks += [best_checkpoint, EarlyStopping(monitor="val_score", mode="max", patience=options.patience,
                                                     check_on_train_epoch_end=False)]
    trainer = L.Trainer(
        accelerator=options.accelerator, devices=_devices(options.devices), strategy=options.strategy, num_nodes=options.num_nodes,
        precision=precision, max_epochs=options.epochs,
        max_time={"minutes": options.max_minutes} if options.max_minutes else None,
        check_val_every_n_epoch=options.val_every, limit_val_batches=1.0 if val_cases else 0,
        num_sanity_val_steps=0, gradient_clip_val=GRADIENT_CLIP, use_distributed_sampler=False,
        logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
        plugins=[AtomicCheckpointIO()], callbacks=callbacks,
    )
    if options.threads > 0:
        torch.set_num_threads(options.threads)
    elif trainer.accelerator.__class__.__name__ == "CPUAccelerator" and trainer.world_size > 1:
        # Several processes on one machine's cores: share the cores instead of oversubscribing them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, trainer.num_devices)))
    steps_per_epoch = datamodule.steps_per_epoch(trainer.world_size)
    total_steps = steps_per_epoch * options.epochs
    module = LiverSegModule(asdict(card), lr=options.lr, weight_decay=options.weight_decay,
                            total_steps=total_steps, max_seconds=options.max_minutes * 60 if options.max_minutes else None,
                            val_batch_size=options.batch_size)
    if initial is not None:
        module.network.load_state_dict(initial.state_dict())
        log.say(f"fine-tuning from model {options.init!r}")
    start_fields = {
        "max_epochs": options.epochs, "total_steps": total_steps, "max_minutes": options.max_minutes,
        "train_cases": [c.name for c in train_cases], "val_cases": [c.name for c in val_cases],
        "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
        "devices": trainer.num_devices, "precision": str(trainer.precision), "resumed": bool(options.resume),
    }
    trainer.callbacks.insert(0, ProgressCallback(log, steps_per_epoch, start_fields))
    resume_from = checkpoints / f"{LAST}.ckpt" if options.resume else None
    if resume_from is not None:
        _check_resumable(resume_from, card)
        log.say(f"resuming from {resume_from}")

    started = time.monotonic()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    except BaseException as error:  # also SIGTERM (Lightning exits) and Ctrl-C: the record says the run ended
        log.record(END, epoch=trainer.current_epoch, step=trainer.global_step, status="failed", model=None,
                   error=f"{type(error).__name__}: {error}", elapsed_s=time.monotonic() - started)
        raise
    if trainer.interrupted:
        log.record(END, epoch=trainer.current_epoch, step=trainer.global_step, status="failed", model=None,
                   error="interrupted", elapsed_s=time.monotonic() - started)
        raise KeyboardInterrupt
    if not trainer.is_global_zero:
        return out

    if trainer.early_stopping_callback is not None and trainer.early_stopping_callback.stopped_epoch:
        status = "stopped early"
    elif trainer.current_epoch < options.epochs:
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
        **data_and_split(train_cases, val_cases, options),
        "augmentation": describe(options.augment, options.synthetic_lesions),
        "init": options.portable().init,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "best_epoch": best["epoch"],
        "status": status,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                                 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)), 1),
        "hardware": hardware,
        "options": options.record(),
    }
    first_stage_network = None
    if chosen_first_stage is not None:
        first_stage_card, first_stage_network = chosen_first_stage
        card.cascade = {"first_stage": asdict(first_stage_card), "weights": FIRST_STAGE_WEIGHTS_FILE, "roi_margin_mm": options.roi_margin}
    if val_cases:
        log.say("scoring the best model on the held-out cases with the inference pipeline")
        held_out = evaluate_held_out(network, card, val_cases, device="cuda" if hardware["accelerator"] == "cuda" else "cpu",
                                     first_stage=first_stage_network)
        for name, scores in held_out.items():
            log.say(f"held out {name}: liver Dice {number(scores['liver_dice'])}, lesion Dice {number(scores['lesion_dice'])}")
        card.metrics = {
            "measured_on": "held-out validation cases, never trained on: each scan segmented by core.pipeline "
                           "(preprocessing, sliding window, post-processing) with the best epoch's weights and scored "
                           "on its own grid by core.evaluation.metrics.evaluate",
            "cases": held_out,
            "mean": summarise(held_out),
            "during_training": {"note": "per-epoch validation on the model grid, raw argmax, at the best epoch",
                                "cases": best["cases"]},
        }
    else:
        card.metrics = {"measured_on": "none: no case was held out (--val 0), so this card makes no accuracy claim"}
    from core.model.registry import save_model

    save_model(network, card, out, first_stage=first_stage_network)
    log.record(END, epoch=trainer.current_epoch, step=trainer.global_step, status=status, model=str(out),
               elapsed_s=seconds, best_score=best["score"], best_epoch=best["epoch"])
    log.say(f"{status}: model written to {out} ({seconds / 60:.1f} min)")
    return out


def _check_resumable(path: Path, card: ModelCard) -> None:
    stored = torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters", {}).get("card", {})
    for key in ("channels", "spacing_mm", "hu_window", "patch_size", "denoise"):
        if stored.get(key) != getattr(card, key):
            raise LiverSegError(f"--resume: the checkpoint was trained with {key}={stored.get(key)}, "
                                f"not {getattr(card, key)}; resume with the original options")
