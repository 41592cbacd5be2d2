"""Training throughput (patches per second) of the real pipeline on this machine.

Runs ``python -m core train`` for one short epoch on the built-in LiTS 117 sample
(cached preprocessing, augmentation with synthetic lesions, TorchIO Queue, UNet
forward and backward) for each configuration, and reports the patches per second
recorded in its progress file: loading and augmentation included, validation
excluded. Usage::

    .venv/bin/python benchmarks/train_speed.py                 # CPU, the configurations below
    .venv/bin/python benchmarks/train_speed.py --accelerator gpu --patches 200
    .venv/bin/python benchmarks/train_speed.py --only 0 1 2 3 --patches 24   # float32 against bfloat16, both stages

Each configuration is "channels / patch / spacing"; results go to stdout and
``benchmarks/results/train_speed.json``. On a machine shared with other work the
wall-clock figure falls with the load; patches per CPU-second does not (much).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the checkout is the package root
from core import config
from core.imageio.sample import ensure_sample
from core.training.options import parse
from core.training.progress import PROGRESS_FILE
from core.training.run import train

#: The shipped cascade's two stages (second: 8-64 at 2 mm; first: 16-128 at 5 mm), each in float32 and bfloat16,
#: then all threads and a bigger fine stage.
CONFIGURATIONS = [
    {"channels": [8, 16, 32, 64], "patch": 64, "spacing": 2.0, "threads": 1, "precision": "float32"},
    {"channels": [8, 16, 32, 64], "patch": 64, "spacing": 2.0, "threads": 1, "precision": "mixed"},
    {"channels": [16, 32, 64, 128], "patch": 48, "spacing": 5.0, "threads": 1, "precision": "float32"},
    {"channels": [16, 32, 64, 128], "patch": 48, "spacing": 5.0, "threads": 1, "precision": "mixed"},
    {"channels": [8, 16, 32, 64], "patch": 64, "spacing": 2.0, "threads": 0, "precision": "float32"},
    {"channels": [16, 32, 64, 128], "patch": 96, "spacing": 2.0, "threads": 0, "precision": "float32"},
]


def measure(configuration: dict, patches: int, accelerator: str, workdir: Path) -> dict:
    out = workdir / f"c{configuration['channels'][0]}-p{configuration['patch']}-t{configuration['threads']}-{configuration['precision']}"
    argv = [
        "--data", str(ensure_sample()[0].parent), "--out", str(out), "--val", "0", "--epochs", "1",
        "--patches-per-epoch", str(patches), "--samples-per-volume", "8", "--batch-size", "2",
        "--patch-size", *[str(configuration["patch"])] * 3, "--channels", *map(str, configuration["channels"]),
        "--spacing", str(configuration["spacing"]), "--accelerator", accelerator, "--cache-dir", str(workdir / "cache"),
        "--threads", str(configuration["threads"]), "--precision", configuration["precision"],
    ]
    started = time.perf_counter()
    train(parse(argv))
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / PROGRESS_FILE).read_text(encoding="utf-8").splitlines()]
    steps = [r for r in records if r["event"] == "step"]
    start = next(r for r in records if r["event"] == "start")
    # The first record includes warm-up (first Queue fill, allocator); report the later ones.
    steady = steps[1:] or steps
    return {
        **configuration,
        "accelerator": start["accelerator"],
        "precision": start["precision"],
        "patches": patches,
        "patches_per_s": sum(r["patches_per_s"] for r in steady) / len(steady),
        "patches_per_cpu_s": sum(r["patches_per_cpu_s"] for r in steady) / len(steady),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=48, help="patches per configuration")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--only", type=int, nargs="+", metavar="N", help="run only these configurations (0-based)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="train-speed-"))
    results = []
    try:
        for index, configuration in enumerate(CONFIGURATIONS):
            if args.only is not None and index not in args.only:
                continue
            result = measure(configuration, args.patches, args.accelerator, workdir)
            results.append(result)
            threads = result["threads"] or "all"
            print(f"channels {result['channels']} patch {result['patch']}^3 at {result['spacing']} mm on {result['accelerator']} "
                  f"({result['precision']}, {threads} threads): {result['patches_per_s']:.2f} patches/s wall, "
                  f"{result['patches_per_cpu_s']:.2f} patches per CPU-second ({result['wall_s']} s wall)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    target = config.ROOT / "benchmarks" / "results" / "train_speed.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
