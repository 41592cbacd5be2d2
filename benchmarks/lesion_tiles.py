"""Why the lesion network keeps its trained tiles: lesions found with the authors' tiles and with fewer, larger inputs.

The lesion network normalises every feature map over its whole input, so the size of its input
changes its output. For each case with lesion labels this runs the pair's liver stage, then the
lesion network (bfloat16 where native, as the default) once with the authors' tiles of
180 x 172 x 86 voxels (the default, ``PretrainedPair._tiled``) and once per voxel budget with the
fewest inputs of at most that many voxels that cover the liver's box (the box cut into
near-equal parts, each with the network's margin). It prints, on the 1 x 1 x 3 mm grid inside
the liver, the seconds, the inputs run, the tumour Dice against the label, the reference tumours
found (any voxel above 0.5) with the smallest one missed, and the lesions that match none. Usage::

    .venv/bin/python benchmarks/lesion_tiles.py [--budgets 7500000 3000000] [CASE ...]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the checkout is the package root
from core import config
from core.inference import pretrained_pair as recipe
from core.inference.segmenter import _forward
from core.inference.sliding_window import cpu_inference_dtype
from core.model import registry
from core.model.multipathway_unet import LESION, output_shape
from core.segmentation import LESION as LESION_LABEL
from core.training.discovery import discover


def input_size(axis: int, needed: int) -> tuple[int, int]:
    """The smallest input along ``axis`` whose output covers ``needed`` voxels, and that output's size."""
    shape = list(recipe.LESION_TILE)
    for size in itertools.count(needed):
        shape[axis] = size
        try:
            out = output_shape(LESION, shape)[axis]
        except ValueError:
            continue
        if out >= needed:
            return size, out
    raise AssertionError("unreachable")


def larger_inputs(image: np.ndarray, liver: np.ndarray, budget: int, run) -> tuple[np.ndarray, int]:
    """The lesion probability from the fewest inputs of at most ``budget`` voxels covering the liver's box."""
    box = ndimage.find_objects(liver.view(np.uint8))[0]

    def cuts(counts):
        return [[(s.start + (s.stop - s.start) * i // k, s.start + (s.stop - s.start) * (i + 1) // k) for i in range(k)]
                for s, k in zip(box, counts)]

    def largest(counts) -> int:
        return math.prod(max(input_size(axis, b - a)[0] for a, b in parts) for axis, parts in enumerate(cuts(counts)))

    counts = min((c for c in itertools.product(range(1, 9), repeat=3) if largest(c) <= budget), key=lambda c: (math.prod(c), largest(c)))
    probability = np.zeros(image.shape, np.float32)
    for parts in itertools.product(*cuts(counts)):
        sizes = [input_size(axis, b - a) for axis, (a, b) in enumerate(parts)]
        starts = [a - (size - out) // 2 for (a, _), (size, out) in zip(parts, sizes)]
        array = np.zeros([size for size, _ in sizes], np.float32)
        source = tuple(slice(max(0, s), min(n, s + size)) for s, (size, _), n in zip(starts, sizes, image.shape))
        array[tuple(slice(src.start - s, src.stop - s) for src, s in zip(source, starts))] = image[source]
        probability[tuple(slice(a, b) for a, b in parts)] = run("lesion", array)[tuple(slice(0, b - a) for a, b in parts)]
    return probability, math.prod(counts)


def report(name: str, probability: np.ndarray, seconds: float, inputs: int, liver: np.ndarray, reference: np.ndarray) -> None:
    found = (probability > recipe.THRESHOLD) & liver
    components, count = ndimage.label(reference)
    sizes_ml = ndimage.sum(reference, components, range(1, count + 1)) * 3 / 1000  # 1 x 1 x 3 mm voxels
    hit = np.array([found[components == i].any() for i in range(1, count + 1)])
    predicted, predicted_count = ndimage.label(found)
    false = sum(not reference[predicted == i].any() for i in range(1, predicted_count + 1))
    dice = 2 * (found & reference).sum() / max(1, found.sum() + reference.sum())
    missed = f", smallest missed {sizes_ml[~hit].min():.2f} mL" if (~hit).any() else ""
    print(f"  {name}: {seconds:.1f} s, {inputs} inputs, tumour Dice {dice:.3f}, tumours found {hit.sum()} of {count}{missed}, "
          f"false lesions {false}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[7_500_000, 3_000_000])
    parser.add_argument("cases", nargs="*", help="case names as discovery names them (default: every case with lesion labels)")
    args = parser.parse_args()
    pair, _ = registry.load_network("kul-liver-lesion-v1")
    # As the default runs it on this CPU: a bfloat16 copy where bfloat16 is native, channels-last.
    dtype = cpu_inference_dtype(mixed=True)
    pair = pair.eval().to(dtype, memory_format=torch.channels_last_3d)

    def run(name: str, array: np.ndarray) -> np.ndarray:
        return _forward(getattr(pair, name), array, torch.device("cpu"), amp=False)

    for case in discover(config.data_dirs()).cases:
        if case.kind != "liver+lesion" or (args.cases and case.name not in args.cases):
            continue
        image_file, label = nib.load(case.image), np.asarray(nib.load(case.label).dataobj)
        print(f"{case.name}:", flush=True)
        voxels = np.asarray(image_file.dataobj, np.float32)
        output = recipe.PretrainedPair(run).predict(voxels, image_file.affine, lambda *_: None)
        scan = recipe.Canonical(voxels, image_file.affine)
        view = recipe.LesionView(scan, recipe.Canonical(output.liver.astype(np.float32), image_file.affine).voxels > 0.5)
        reference = view.resampled(recipe.Canonical((label == LESION_LABEL).astype(np.float32), image_file.affine).voxels > 0.5)
        start = time.perf_counter()
        probability, (inputs, _) = recipe.PretrainedPair(run)._tiled(view.image, view.liver, lambda *_: None)
        report("the authors' tiles (default)", probability, time.perf_counter() - start, inputs, view.liver, reference)
        for budget in args.budgets:
            start = time.perf_counter()
            probability, inputs = larger_inputs(view.image, view.liver, budget, run)
            report(f"inputs of at most {budget / 1e6:.1f} M voxels", probability, time.perf_counter() - start, inputs, view.liver, reference)


if __name__ == "__main__":
    main()
