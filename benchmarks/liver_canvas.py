"""Why the liver network keeps its trained canvas: liver Dice against the expert labels, trained canvas vs smallest.

The pretrained liver network normalises every feature map over its whole input, so the zero
canvas around the abdomen changes its output. For each labelled case in ../shared/data this
runs the liver network (bfloat16 where native, as the default) on the trained 189 x 162 x 162
canvas and on the smallest canvas the network accepts that still covers the abdomen crop, and
prints the seconds of each and the liver Dice of each against the case's label. Usage::

    .venv/bin/python benchmarks/liver_canvas.py [CASE ...]     # default: every case with a label
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the checkout is the package root
from core import config
from core.inference import pretrained_pair as pair_recipe
from core.inference.segmenter import _forward
from core.inference.sliding_window import cpu_inference_dtype
from core.model import registry
from core.model.multipathway_unet import LIVER, output_shape


def smallest_canvas(image_shape) -> tuple[int, ...]:
    """Per axis, the smallest input whose output still covers the image."""
    sizes = []
    for axis, n in enumerate(image_shape):
        for size in range(n, 4 * n + 200):
            shape = list(pair_recipe.LIVER_CANVAS)  # valid along the other axes: only this one is searched
            shape[axis] = size
            try:
                if output_shape(LIVER, shape)[axis] >= n:
                    break
            except ValueError:
                continue
        sizes.append(size)
    return tuple(sizes)


def liver_on(canvas_shape, image, box, lps_shape, scan, network) -> tuple[np.ndarray, float]:
    saved = pair_recipe.LIVER_CANVAS, pair_recipe.LIVER_OUTPUT
    pair_recipe.LIVER_CANVAS, pair_recipe.LIVER_OUTPUT = canvas_shape, output_shape(LIVER, canvas_shape)
    try:
        canvas, output = pair_recipe._in_canvas(image)
    finally:
        pair_recipe.LIVER_CANVAS, pair_recipe.LIVER_OUTPUT = saved
    start = time.perf_counter()
    probability = _forward(network, canvas, torch.device("cpu"), amp=False)[output]
    seconds = time.perf_counter() - start
    mask = pair_recipe._largest_liver(np.flip(probability, (0, 1)))
    liver = np.zeros(lps_shape, bool)
    if mask is not None:
        crop_shape = np.array([s.stop - s.start for s in box])
        liver[box] = ndimage.zoom(mask.astype(np.int16), crop_shape / mask.shape, order=1, prefilter=False) > 0
    return scan.to_scan(np.flip(liver, (0, 1))), seconds


def main() -> None:
    pair, _ = registry.load_network("kul-liver-lesion-v1")
    # As the default runs it on this CPU: a bfloat16 copy where bfloat16 is native, channels-last.
    dtype = cpu_inference_dtype(mixed=True)
    network = pair.liver.eval().to(dtype, memory_format=torch.channels_last_3d)
    folders = [config.SHARED_DATA_DIR / name for name in sys.argv[1:]] or sorted(config.SHARED_DATA_DIR.iterdir())
    for folder in folders:
        label = next((folder / n for n in ("label.nii.gz", "liver.nii.gz") if (folder / n).exists()), None)
        if label is None or not (folder / "ct.nii.gz").exists():
            continue
        image_file = nib.load(folder / "ct.nii.gz")
        expert = np.asarray(nib.load(label).dataobj) > 0
        scan = pair_recipe.Canonical(np.asarray(image_file.dataobj, np.float32), image_file.affine)
        lps = np.flip(scan.voxels, (0, 1))
        image, box = pair_recipe._liver_input(lps, scan.spacing)
        for name, shape in (("trained", pair_recipe.LIVER_CANVAS), ("smallest", smallest_canvas(image.shape))):
            liver, seconds = liver_on(shape, image, box, lps.shape, scan, network)
            dice = 2 * (liver & expert).sum() / (liver.sum() + expert.sum())
            print(f"{folder.name}: {name} canvas {shape}: {seconds:.1f} s, liver Dice against the label {dice:.4f}")


if __name__ == "__main__":
    main()
