"""Whether bfloat16 keeps the pretrained pair's labels: each shared scan segmented in float32 and in bfloat16.

The pair runs in bfloat16 on a CPU that computes it natively (``precision="auto"``) because its
model card records that the labels agree with float32 (``pretrained.cpu_bfloat16``); this is
the measurement behind that record, to run again whenever the networks' arithmetic changes.
For every CT in ../shared/data it prints the liver and lesion Dice between the float32 labels
and the bfloat16 labels (after the same clean-up), and the seconds of each. Usage::

    .venv/bin/python benchmarks/bfloat16_agreement.py [CASE ...]     # default: every shared case
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the checkout is the package root
from core import config
from core.imageio.nifti import read_scan
from core.inference.segmenter import Segmenter
from core.inference.sliding_window import cpu_has_native_bfloat16
from core.segmentation import LESION, LIVER

MODEL = "kul-liver-lesion-v1"


def dice(a: np.ndarray, b: np.ndarray) -> str:
    total = a.sum() + b.sum()
    return "no voxel in either" if total == 0 else f"{2 * (a & b).sum() / total:.4f}"


def main() -> None:
    if not cpu_has_native_bfloat16():
        sys.exit("error: this CPU has no native bfloat16; the pair runs in float32 here, so there is nothing to compare")
    folders = [config.SHARED_DATA_DIR / name for name in sys.argv[1:]] or sorted(config.SHARED_DATA_DIR.iterdir())
    segmenters = {precision: Segmenter(MODEL, device="cpu", precision=precision) for precision in ("float32", "mixed")}
    for folder in folders:
        if not (folder / "ct.nii.gz").exists():
            continue
        scan = read_scan(folder / "ct.nii.gz")
        labels, seconds = {}, {}
        for precision, segmenter in segmenters.items():
            start = time.perf_counter()
            labels[precision] = segmenter.segment(scan).labels
            seconds[precision] = time.perf_counter() - start
        full, half = labels["float32"], labels["mixed"]
        print(f"{folder.name}: liver Dice {dice(full >= LIVER, half >= LIVER)}, lesion Dice {dice(full == LESION, half == LESION)} "
              f"(float32 {seconds['float32']:.0f} s, bfloat16 {seconds['mixed']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
