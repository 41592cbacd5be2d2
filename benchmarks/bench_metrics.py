"""Time ``evaluate``, ``analyse_lesions`` and ground-truth resampling on a full-size CT grid.

The grid is 3D-IRCADb 1.1's (512x512x129 at 0.57x0.57x1.6 mm); the masks are
synthetic (an ellipsoidal liver with spherical lesions, and a prediction that is
shifted, grown, misses one lesion and adds a false one), so the script needs no
data. Run from the checkout: ``.venv/bin/python -m benchmarks.bench_metrics [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from core.evaluation.lesions import analyse_lesions
from core.evaluation.metrics import evaluate
from core.imageio.ground_truth import LabelGrid, to_grid
from core.scan import Scan

SHAPE, SPACING = (512, 512, 129), (0.57, 0.57, 1.6)


def _labels(centre_mm, liver_radii_mm, lesions) -> np.ndarray:
    axes = [np.arange(n, dtype=np.float32) * s for n, s in zip(SHAPE, SPACING)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    labels = np.zeros(SHAPE, np.uint8)
    liver = sum(((c - m) / r) ** 2 for c, m, r in zip((x, y, z), centre_mm, liver_radii_mm)) <= 1
    labels[liver] = 1
    for (lx, ly, lz), radius in lesions:
        labels[((x - lx) ** 2 + (y - ly) ** 2 + (z - lz) ** 2 <= radius**2) & liver] = 2
    return labels


def _median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    lesions = [((170, 150, 100), 15), ((130, 170, 120), 8), ((190, 130, 80), 20), ((150, 120, 110), 5)]
    reference = _labels((160, 150, 100), (90, 70, 60), lesions)
    prediction = _labels((162, 149, 101), (92, 71, 60), [*lesions[:3], ((200, 160, 90), 6)])
    affine = np.diag([*SPACING, 1.0])
    scan = Scan(np.random.default_rng(0).normal(60, 20, SHAPE).astype(np.float32), affine)
    flipped = affine @ np.array([[-1, 0, 0, SHAPE[0] - 1], [0, -1, 0, SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])

    print(f"grid {'x'.join(map(str, SHAPE))} at {SPACING} mm; liver {np.count_nonzero(reference):,} voxels; {repeats} repeats, median")
    seconds = _median_seconds(lambda: evaluate(prediction, reference, SPACING), repeats)
    print(f"evaluate (liver + lesion + detection): {seconds:.2f} s")
    seconds = _median_seconds(lambda: analyse_lesions(reference, scan), repeats)
    print(f"analyse_lesions ({len(lesions)} lesions): {seconds:.2f} s")
    stored = reference[::-1, ::-1].copy()  # the same grid stored LPS
    seconds = _median_seconds(lambda: to_grid(stored, flipped, LabelGrid(SHAPE, affine), "ground truth"), repeats)
    print(f"ground truth onto the grid (LPS -> RAS, exact): {seconds:.2f} s")
    coarse = affine @ np.diag([2.0, 2.0, 1.0, 1.0])
    seconds = _median_seconds(lambda: to_grid(reference[::2, ::2], coarse, LabelGrid(SHAPE, affine), "ground truth"), repeats)
    print(f"ground truth onto the grid (half resolution, nearest neighbour): {seconds:.2f} s")


if __name__ == "__main__":
    main()
