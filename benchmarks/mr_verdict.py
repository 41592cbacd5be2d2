"""Issue 23's verdict: do the pretrained networks find the liver in an abdominal MR with their authors' MR recipe?

Runs the pretrained liver network (float32) on an MR volume, by default the shared
``../shared/data/totalseg-example/mr_not_ct.nii.gz``, prepared as the package's MR branch
prepares it (``benchmarks/mr_recipe.py``: its MR crop, 1.5 mm, median filter, 3 mm,
the lower 80 % of the range scaled to [-0.5, 0.5], the trained canvas), then the same with
a few changes that tell whether a negative is the port's fault or the networks':

- ``recipe``: the authors' MR recipe, as the product would run it;
- ``no-crop``: the whole volume instead of the MR crop;
- ``full-range``: the whole intensity range scaled, not its lower 80 %;
- ``ct-crop``: the CT recipe's crop (``core.inference.abdomen_crop``) with the MR scaling;
- ``mirrored``: the volume mirrored left-right (the answer, mirrored back, should follow the liver);
- ``inverted``: the signal turned upside down (not a recipe: does the network see the liver
  when the liver is brighter than fat?).

For each it prints the highest liver probability, the voxels above 0.5 on the 3 mm grid, the
liver after the recipe's post-processing (threshold 0.5, erosion, largest component, dilation)
in mL, where its centre lies from the body's centre (mm to the patient's right, negative: left),
the share of the body it covers, and where the probability above 0.1 lies (same measure), so
that an answer below the threshold still shows where the network looks. The lesion network
is not run: it looks only inside the liver that the recipe finds, and the recipe finds none. Usage::

    .venv/bin/python benchmarks/mr_verdict.py [--scan MR.nii.gz] [--variants recipe inverted ...] [--device cpu|cuda]

About 40 s per variant on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the checkout is the package root
from benchmarks import mr_recipe as mr
from core import config
from core.inference import pretrained_pair as recipe
from core.inference.abdomen_crop import abdomen_box
from core.inference.zoom import zoom

SCAN = config.SHARED_DATA_DIR / "totalseg-example" / "mr_not_ct.nii.gz"
Run = Callable[[str, np.ndarray], np.ndarray]


def _whole(volume: np.ndarray, spacing) -> tuple[slice, ...]:
    return tuple(slice(0, n) for n in volume.shape)


def _full_range(image: np.ndarray) -> np.ndarray:
    low, high = float(image.min()), float(image.max())
    return ((image - low) / (high - low) - 0.5).astype(np.float32)


@dataclass(frozen=True)
class Variant:
    name: str
    box: Callable = mr.mr_abdomen_box
    scale: Callable = mr.scaled_for_liver
    mirrored: bool = False
    inverted: bool = False


VARIANTS = {v.name: v for v in (
    Variant("recipe"), Variant("no-crop", box=_whole), Variant("full-range", scale=_full_range),
    Variant("ct-crop", box=abdomen_box), Variant("mirrored", mirrored=True), Variant("inverted", inverted=True),
)}


def liver_probability(lps: np.ndarray, spacing: np.ndarray, variant: Variant, run: Run) -> tuple[np.ndarray, tuple[slice, ...]]:
    """The liver network's probability on its 3 mm grid (LPS order, the scan's own frame) and the box it covers.

    The recipe's order: crop, 1.5 mm, median filter 3, 3 mm, intensity scaling, RAS order, the trained canvas."""
    volume = np.ascontiguousarray(lps[::-1]) if variant.mirrored else lps
    box = variant.box(volume, spacing)
    image = zoom(volume[box], spacing / recipe.LIVER_MEDIAN_MM)
    image = zoom(ndimage.median_filter(image, size=3), [recipe.LIVER_MEDIAN_MM / recipe.LIVER_MM] * 3)
    if variant.inverted:
        image = -image
    canvas, output = recipe._in_canvas(np.flip(variant.scale(image), (0, 1)))
    probability = np.flip(run("liver", canvas)[output], (0, 1))
    if variant.mirrored:
        probability = probability[::-1]
        box = (slice(lps.shape[0] - box[0].stop, lps.shape[0] - box[0].start), *box[1:])
    return np.ascontiguousarray(probability), box


def _right_of_centre_mm(mask: np.ndarray, box: tuple[slice, ...], body_centre: float, spacing: np.ndarray) -> float | None:
    """How far the centre of ``mask`` (3 mm grid of ``box``, LPS) lies to the patient's right of ``body_centre``
    (an LPS x index of the scan), in mm; ``None`` for an empty mask."""
    if not mask.any():
        return None
    step = (box[0].stop - box[0].start) / mask.shape[0]
    centre = box[0].start + (ndimage.center_of_mass(mask)[0] + 0.5) * step - 0.5
    return float((body_centre - centre) * spacing[0])  # LPS: x grows towards the left


def verdict(path: Path, variants: list[str], run: Run) -> list[dict]:
    """One row of figures per variant (printed as it comes)."""
    image = nib.load(path)
    scan = recipe.Canonical(np.asarray(image.dataobj, np.float32), image.affine)
    lps = np.ascontiguousarray(np.flip(scan.voxels, (0, 1)))
    body = lps > mr.TISSUE_RATIO * lps.max()
    body_centre = ndimage.center_of_mass(body)[0]
    body_ml = body.sum() * np.prod(scan.spacing) / 1000
    print(f"{path.name}: {lps.shape} voxels of {tuple(float(s) for s in scan.spacing)} mm, body {body_ml:.0f} mL "
          f"(signal above {100 * mr.TISSUE_RATIO:.0f} % of the maximum)")
    rows = []
    for name in variants:
        variant = VARIANTS[name]
        start = time.perf_counter()
        probability, box = liver_probability(lps, scan.spacing, variant, run)
        seconds = time.perf_counter() - start
        voxel_ml = np.prod(scan.spacing * [s.stop - s.start for s in box] / probability.shape) / 1000
        liver = recipe._largest_liver(probability)
        liver = np.zeros(probability.shape, bool) if liver is None else liver
        row = {
            "variant": name, "input": probability.shape, "max_probability": float(probability.max()),
            "above_half": int((probability > recipe.THRESHOLD).sum()), "liver_ml": float(liver.sum() * voxel_ml),
            "liver_right_mm": _right_of_centre_mm(liver, box, body_centre, scan.spacing),
            "body_share": float(liver.sum() * voxel_ml / body_ml),
            "leaning_right_mm": _right_of_centre_mm(probability > 0.1, box, body_centre, scan.spacing),
            "seconds": seconds,
        }
        print(_line(row), flush=True)
        rows.append(row)
    return rows


def _mm(value: float | None) -> str:
    return "none" if value is None else f"{value:+.0f} mm"


def _line(row: dict) -> str:
    return (f"{row['variant']:>10}: input {row['input']}, highest probability {row['max_probability']:.3f}, "
            f"{row['above_half']} voxels above 0.5; liver {row['liver_ml']:.0f} mL ({100 * row['body_share']:.0f} % of the body), "
            f"centre {_mm(row['liver_right_mm'])} right of the body's; probability above 0.1 centred "
            f"{_mm(row['leaning_right_mm'])} right; {row['seconds']:.0f} s")


def network_runner(device: str) -> Run:
    from core.model import registry

    pair, _ = registry.load_network("kul-liver-lesion-v1")
    pair = pair.eval().to(device)

    def run(name: str, array: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return getattr(pair, name)(torch.from_numpy(array)[None, None].to(device))[0, 0].float().cpu().numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scan", type=Path, default=SCAN, help="an abdominal MR (NIfTI); default: the shared MR volume")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if not args.scan.exists():
        sys.exit(f"error: {args.scan} not found (the shared MR volume is in ../shared/data beside the checkout)")
    verdict(args.scan, args.variants, network_runner(args.device))


if __name__ == "__main__":
    main()
