"""Fine-tuning one of the pretrained pair's networks on labelled cases, the rest of the pair kept.

The network sees exactly what it sees at inference (``core.inference.pretrained_pair``):
the lesion network tiles of the scaled CT inside the case's own liver (the expert label,
as the authors trained it), the liver network the whole 3 mm abdomen canvas. The loss is
the authors' soft Dice on the sigmoid output. ``layers`` chooses what learns: ``"head"``
(the last up block and the output convolution), ``"decoder"`` (every up block and the
output), or ``"all"``; the rest stays as the authors trained it, which is what a handful
of cases can afford to move. Lesion tiles are centred on a lesion voxel two times in three
(on any liver voxel otherwise), so that the few lesion voxels are seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from core.imageio.nifti import read_scan
from core.inference.pretrained_pair import (
    LESION_OUTPUT,
    LESION_TILE,
    Canonical,
    LesionView,
    liver_input_and_target,
)
from core.model.multipathway_unet import MultiPathwayUNet
from core.segmentation import BACKGROUND, LESION
from core.training.discovery import Case

NETWORKS = ("lesion", "liver")
LAYERS = ("head", "decoder", "all")
SMOOTH = 1.0


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


@dataclass
class _LesionCase:
    view: LesionView
    lesion: np.ndarray  # on the view's grid and box

    @classmethod
    def load(cls, case: Case) -> _LesionCase:
        scan = Canonical(*_voxels_and_affine(case))
        labels = Canonical(*_labels_and_affine(case)).hu
        view = LesionView(scan, labels > BACKGROUND)
        return cls(view, view.resampled(labels == LESION))

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        where = np.argwhere(self.lesion if self.lesion.any() and rng.random() < 2 / 3 else self.view.liver)
        centre = where[rng.integers(len(where))]
        return _window(self.view.image, centre, LESION_TILE, 0.0), _window(self.lesion, centre, LESION_OUTPUT, 0).astype(np.float32)


def _window(array: np.ndarray, centre, size, fill) -> np.ndarray:
    """``array`` around ``centre`` in a box of ``size`` (``fill`` outside), as the tiler cuts tiles."""
    out = np.full(size, fill, array.dtype)
    source, target = [], []
    for c, n, extent in zip(centre, size, array.shape):
        low = int(c) - n // 2
        source.append(slice(max(0, low), min(extent, low + n)))
        target.append(slice(max(0, low) - low, min(extent, low + n) - low))
    out[tuple(target)] = array[tuple(source)]
    return out


def _voxels_and_affine(case: Case) -> tuple[np.ndarray, np.ndarray]:
    scan = read_scan(case.image)
    return scan.voxels, scan.affine


def _labels_and_affine(case: Case) -> tuple[np.ndarray, np.ndarray]:
    reference = case.ground_truth()
    return reference.labels, read_scan(case.image).affine


def fine_tune(network: MultiPathwayUNet, which: str, layers: str, cases: list[Case], steps: int, learning_rate: float,
              seed: int = 0, amp: bool = False, report: Callable[[int, float, float], None] | None = None) -> list[float]:
    """Train ``network`` (the pair's ``which`` network) in place for ``steps`` steps; the loss of each step."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if which == "lesion":
        usable = [c for c in cases if not c.liver_only]
        if not usable:
            raise ValueError("fine-tuning the lesion network needs cases whose labels mark lesions (0/1/2)")
        loaded = [_LesionCase.load(case) for case in usable]
        draw = lambda: loaded[rng.integers(len(loaded))].sample(rng)  # noqa: E731
    else:
        loaded = [liver_input_and_target(*_voxels_and_affine(case), _labels_and_affine(case)[0] > BACKGROUND) for case in cases]
        draw = lambda: loaded[rng.integers(len(loaded))]  # noqa: E731
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
