"""Speed and memory of ``python -m core segment`` on the real DICOM case, from process start.

Runs the command as a fresh process ``--runs`` times on
``../shared/data/ircad-1.1/ct_dicom.zip`` (512x512x129) and reports the median wall
time, each process's peak resident memory (from ``os.wait4``) and CPU seconds, and
the median seconds of each stage (read, preprocess, infer, postprocess, write) as
the command prints them with ``-v`` (a cascade adds ``first_stage``, its first stage on the
whole scan). Then, for a single-stage model, its cost for this case: convolution
FLOPs (``torch.utils.flop_counter``) times the number of sliding-window patches, the
rate the inference stage reached, and that rate as a fraction of a plain ``Conv3d``
measured in the same script (a cascade's second stage covers only the region its
first stage finds, so its cost is not known in advance and is not reported). Usage::

    .venv/bin/python benchmarks/segment_speed.py                       # default model, or a random one
    .venv/bin/python benchmarks/segment_speed.py --model liverseg-unet-2mm-v1
    .venv/bin/python benchmarks/segment_speed.py --random --channels 8 16 32 64 --patch 96 --spacing 2

Speed does not depend on the weights: without a trained model (or with ``--random``)
a model with random weights and the given card settings is made in a temporary
folder and used through ``LIVERSEG_TRAINED_DIR``. The machine is shared: the load
average before and after is printed, and CPU seconds are less sensitive to other
processes than wall time. Results also go to ``benchmarks/results/segment_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchio as tio
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script (make bench): the checkout is the package root
from core import config
from core.errors import LiverSegError
from core.imageio.nifti import read_scan
from core.inference.preprocessing import preprocessing
from core.inference.segmenter import OVERLAP
from core.inference.sliding_window import count_patches, cpu_has_native_bfloat16
from core.model import registry
from core.model.card import ModelCard
from core.model.unet import UNet

#: The issues' targets on the 2-core CPU, per architecture: (seconds, peak GB).
TARGETS = {"unet": (10.0, 2.0), "pretrained-pair": (30.0, 3.0)}
RESULTS = config.ROOT / "benchmarks" / "results" / "segment_speed.json"


def run_once(scan: Path, output: Path, device: str, precision: str, env: dict, model: str) -> dict:
    """One ``segment`` process: wall and CPU seconds, peak RSS (GB) and the stage seconds it printed.

    ``os.wait4`` reaps the child and gives its own resource usage (``RUSAGE_CHILDREN`` would be
    the maximum over every run).
    """
    command = [sys.executable, "-m", "core", "segment", str(scan), "-o", str(output), "--device", device, "--precision", precision,
               "--model", model, "-v"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=config.ROOT, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"segment failed ({process.returncode}):\n{stderr}")
    stages = next(line for line in stderr.splitlines() if line.startswith("seconds: "))
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_gb": usage.ru_maxrss / 2**20,  # ru_maxrss is in KiB on Linux
        "stages_s": {key: float(value) for key, value in (item.split("=") for item in stages[len("seconds: ") :].split())},
        "summary": stdout.strip(),
    }


def count_flops(module: torch.nn.Module, *inputs: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        module(*inputs)
    return counter.get_total_flops()


def conv3d_rate(bfloat16: bool, repeats: int = 5) -> dict:
    """GFLOP/s of one plain Conv3d (32 -> 32 channels, 3^3 kernel, 64^3 voxels): what this CPU reaches at best.

    In bfloat16 (autocast) when the segment runs used mixed precision, so that like is compared with like.
    """
    conv = torch.nn.Conv3d(32, 32, 3, padding=1, bias=False).eval()
    x = torch.randn(1, 32, 64, 64, 64)
    flops = count_flops(conv, x)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        conv(x)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - start)
    return {"gflop": flops / 1e9, "best_s": best, "gflop_per_s": flops / best / 1e9, "bfloat16": bfloat16}


def model_cost(card: ModelCard, scan_path: Path) -> dict:
    """Convolution FLOPs of the whole case: patches on the model grid times FLOPs per patch."""
    scan = read_scan(scan_path)
    grid = preprocessing(card)(tio.Subject(ct=scan.to_torchio()))["ct"].shape[1:]
    patches = count_patches(grid, card.patch_size, OVERLAP)
    per_patch = count_flops(UNet(card.channels, len(card.labels)).eval(), torch.zeros(1, 1, *card.patch_size))
    return {"model_grid": list(grid), "patches": patches, "gflop_per_patch": per_patch / 1e9, "gflop": patches * per_patch / 1e9}


def random_model(folder: Path, args: argparse.Namespace) -> ModelCard:
    card = ModelCard(
        name="random-weights",
        channels=args.channels,
        spacing_mm=[args.spacing] * 3,
        patch_size=args.patch * 3 if len(args.patch) == 1 else args.patch,
        created="benchmark",
    )
    torch.manual_seed(0)
    registry.save_model(UNet(card.channels, len(card.labels)), card, folder / card.name)
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=config.SHARED_DATA_DIR / "ircad-1.1" / "ct_dicom.zip")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="auto", choices=["auto", "mixed", "float32"], help="passed to segment")
    parser.add_argument("--model", help="model in trained/ (default: the default model)")
    parser.add_argument("--random", action="store_true", help="use a random-weights model even when trained/ has one")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128], help="random model's channels")
    parser.add_argument("--spacing", type=float, default=2.0, help="random model's spacing (mm)")
    parser.add_argument("--patch", type=int, nargs="+", default=[96], help="random model's patch (one size or three)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON file for the results")
    parser.add_argument("--cost-only", action="store_true", help="only count the patches and FLOPs of the random model's card")
    args = parser.parse_args()
    if not args.input.exists():
        raise SystemExit(f"{args.input} not found: the benchmark needs ../shared/data beside the checkout")
    if args.cost_only:
        with tempfile.TemporaryDirectory(prefix="liverseg-bench-") as folder:
            card = random_model(Path(folder), args)
        cost = model_cost(card, args.input)
        print(json.dumps({"channels": card.channels, "spacing_mm": card.spacing_mm, "patch_size": card.patch_size, **cost}))
        return

    with tempfile.TemporaryDirectory(prefix="liverseg-bench-") as folder:
        folder = Path(folder)
        env = dict(os.environ)
        try:
            if args.random:
                raise LiverSegError("random weights asked for")
            card = registry.load_network(args.model or registry.default_model())[1]
        except LiverSegError:
            card = random_model(folder / "trained", args)
            env["LIVERSEG_TRAINED_DIR"] = str(folder / "trained")
        print(f"model {card.name}: {card.architecture_text()}; precision {args.precision}")
        load_before = os.getloadavg()
        runs = []
        for index in range(args.runs):
            runs.append(run_once(args.input, folder / "labels.nii.gz", args.device, args.precision, env, card.name))
            run = runs[-1]
            print(f"run {index + 1}: {run['wall_s']:.1f} s wall, {run['cpu_s']:.1f} s CPU, peak {run['peak_rss_gb']:.2f} GB; "
                  + " ".join(f"{k}={v:.2f}" for k, v in run["stages_s"].items()))
        load_after = os.getloadavg()

    median = {key: statistics.median(run["stages_s"][key] for run in runs) for key in runs[0]["stages_s"]}
    cost = rate = conv = None
    if card.architecture == "unet" and card.cascade is None:
        conv = conv3d_rate(bfloat16=args.device == "cpu" and args.precision == "mixed" and cpu_has_native_bfloat16())
        cost = model_cost(card, args.input)
        rate = cost["gflop"] / median["infer"]
    result = {
        "input": args.input.name,
        "device": args.device,
        "precision": args.precision,
        "card": {"name": card.name, "architecture": card.architecture, "channels": card.channels, "spacing_mm": card.spacing_mm,
                 "patch_size": card.patch_size, "overlap": OVERLAP, "cascade": card.cascade is not None},
        "runs": runs,
        "median_wall_s": statistics.median(run["wall_s"] for run in runs),
        "median_cpu_s": statistics.median(run["cpu_s"] for run in runs),
        "peak_rss_gb": max(run["peak_rss_gb"] for run in runs),
        "median_stages_s": median,
        "model": cost,
        "conv3d": conv,
        "infer_gflop_per_s": rate,
        "infer_fraction_of_conv3d": None if conv is None else rate / conv["gflop_per_s"],
        "load_average_before_after": [load_before[0], load_after[0]],
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    target_seconds, target_gb = TARGETS[card.architecture]
    print(f"\nmedian wall {result['median_wall_s']:.1f} s (target <= {target_seconds:g} s), "
          f"median CPU {result['median_cpu_s']:.1f} s, peak RSS {result['peak_rss_gb']:.2f} GB (target <= {target_gb:g} GB)")
    print("median stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in median.items()))
    if cost is not None:
        print(f"model: {cost['patches']} patches of {card.patch_size} on a {cost['model_grid']} grid, "
              f"{cost['gflop_per_patch']:.1f} GFLOP each, {cost['gflop']:.0f} GFLOP in all")
        print(f"inference {rate:.1f} GFLOP/s = {result['infer_fraction_of_conv3d']:.0%} of a plain Conv3d "
              f"({conv['gflop_per_s']:.1f} GFLOP/s{' in bfloat16' if conv['bfloat16'] else ''})")
    print(f"load average (1 min) before/after: {load_before[0]:.1f} / {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
