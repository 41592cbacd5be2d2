"""For job and training tests: a stand-in for ``python -m core train``; phantoms and tiny options to train on for real.

Run as ``python tests/fake_training.py OUT MODE MODEL``: writes a start, two training
steps and one validation record to ``OUT/progress.jsonl`` (``core.training.progress``'s schema), then
by ``MODE``: ``succeed`` copies the model folder ``MODEL`` into ``OUT`` (its card renamed
to ``OUT``'s name); ``fail`` exits 2 with an ``error:`` line; ``interrupted`` exits 0
without a model; ``wait`` first waits for a ``release`` file in the job folder. No torch
import, so a job takes a few tenths of a second.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: A ``wait`` job gives up after this long (s).
WAIT_LIMIT_S = 600

#: ``python -m core train`` options for a real training of a few seconds on the CPU (tests/conftest.py's ``phantoms``).
TINY = ["--patch-size", "32", "32", "32", "--channels", "4", "8", "--spacing", "6", "--patches-per-epoch", "4",
        "--samples-per-volume", "2", "--batch-size", "2", "--threads", "1", "--accelerator", "cpu"]


def end_all(jobs_dir: Path) -> None:
    """Cancel every job still queued or running under ``jobs_dir`` (a test's teardown)."""
    from core.jobs.runner import JobRunner

    runner = JobRunner(jobs_dir)
    for job in runner.jobs():
        if job.active:
            runner.cancel(job.id)


def command(model: Path, mode: Callable[[object], str]) -> Callable[[object, Path], list[str]]:
    """A ``JobRunner(command=...)`` that runs this script with the mode ``mode(request)``."""

    def build(request, output: Path) -> list[str]:
        return [sys.executable, __file__, str(output), mode(request), str(model)]

    return build


def labelled_phantoms(folder: Path, shape: tuple[int, int, int] = (40, 32, 24), seeds: tuple[int, ...] = (0, 1)) -> Path:
    """``ph0.nii.gz`` + ``ph0_seg.nii.gz``, ... (the NAME + NAME_seg layout) in ``folder``."""
    import nibabel as nib

    from tests.helpers.phantom import make_phantom

    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        scan, labels = make_phantom(shape=shape, seed=seed, lesions=2)
        nib.save(nib.Nifti1Image(scan.voxels, scan.affine), folder / f"ph{seed}.nii.gz")
        nib.save(nib.Nifti1Image(labels, scan.affine), folder / f"ph{seed}_seg.nii.gz")
    return folder


def make_model(folder: Path) -> Path:
    """A valid tiny model folder (weights that fit the card) for the stand-in to hand in."""
    from core.model import registry
    from core.model.card import ModelCard
    from core.model.unet import UNet

    card = ModelCard(name="tiny", channels=[2, 4], patch_size=[16, 16, 16])
    registry.save_model(UNet(card.channels, num_classes=len(card.labels)), card, folder)
    return folder


def release(job) -> None:
    """Let a ``wait`` job finish."""
    (job.folder / "release").touch()


def main(out: Path, mode: str, model: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    records = [{"event": "start", "epoch": 0, "step": 0, "max_epochs": 2}]
    records += [{"event": "step", "epoch": 0, "step": step, "loss": 1.0 / step, "patches_per_s": 3.5, "progress": step / 4,
                 "eta_s": 9.0} for step in (1, 2)]
    records.append({"event": "validation", "epoch": 0, "step": 2, "liver_dice": 0.5, "lesion_dice": 0.25, "score": 0.375, "best": True})
    with open(out / "progress.jsonl", "a", encoding="utf-8") as progress:
        for record in records:
            progress.write(json.dumps({**record, "time": time.time()}) + "\n")
    print(f"epoch 0 done; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}", flush=True)
    if mode == "fail":
        print("error: no labelled cases under /data; add NAME_seg.nii.gz labels", file=sys.stderr)
        return 2
    if mode == "interrupted":  # as Lightning does on SIGTERM: a clean exit, but no model
        print("Received SIGTERM: stopping", flush=True)
        return 0
    deadline = time.monotonic() + WAIT_LIMIT_S
    while mode == "wait" and not (out.parents[1] / "release").exists():
        if time.monotonic() > deadline:  # a test that died without releasing or cancelling leaves nothing running
            print("error: never released", file=sys.stderr)
            return 3
        time.sleep(0.05)
    shutil.copy(model / "model.pt", out / "model.pt")
    card = json.loads((model / "card.json").read_text(encoding="utf-8"))
    (out / "card.json").write_text(json.dumps({**card, "name": out.name}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])))
