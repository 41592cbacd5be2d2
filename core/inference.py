"""``Segmenter``: a scan in, liver and lesion labels on the scan's own grid out.

The path: the model card's TorchIO preprocessing (canonical RAS, the model's
spacing, HU window), sliding-window inference on the model grid, post-processing
there, and finally the liver and lesion probabilities resampled in physical space
onto the scan's voxels and turned into labels. Computing in one canonical grid
and resampling through the affines is what keeps the output aligned with the
input whatever its orientation.

Where post-processing runs: on the model grid. That is where the network decides
(detail finer than its spacing is interpolation), and it has ~15x fewer voxels
than a 0.6 mm scan, so connected components and the mm margin cost little. Its
decisions are written back into the probabilities (changed voxels become one-hot
in their cleaned class) before they are resampled, so a class can appear on the
scan grid only within one model voxel of where the cleaned labels have it, while
the boundaries keep the sub-voxel detail of the interpolated probabilities.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable

import numpy as np
import torch
import torchio as tio
from torch import nn

from core import registry
from core.errors import LiverSegError
from core.model_card import ModelCard
from core.postprocess import postprocess
from core.preprocess import preprocessing
from core.scan import Scan
from core.segmentation import LESION, LIVER, Segmentation
from core.sitk_image import resample_onto
from core.sliding_window import sliding_window_probabilities

Progress = Callable[[str, float], None]

#: One inference at a time per process: app sessions share one GPU (two at once would
#: contend for its memory), and on the CPU torch already uses every core.
_ACCELERATOR = threading.Lock()
OOM_NOTE = "the GPU ran out of memory, so inference finished on the CPU (slower)"
#: Sliding window: a quarter of each patch shared with its neighbour, two patches per forward pass.
OVERLAP, BATCH_SIZE = 0.25, 2
PRECISIONS = ("auto", "mixed", "float32")


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when present, else the CPU; ``"cuda"`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise LiverSegError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise LiverSegError("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
    return torch.device(device)


class Segmenter:
    """A loaded model ready to segment scans; safe to share between threads.

    Args:
        model: name of a model under ``config.TRAINED_DIR``; ``None`` takes the default model.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        precision: ``"auto"``: mixed precision on a GPU, float32 on the CPU; ``"mixed"``: also
            bfloat16 on a CPU that computes it natively (see ``core.sliding_window``);
            ``"float32"``: never mixed.
    """

    def __init__(self, model: str | None = None, device: str = "auto", precision: str = "auto") -> None:
        name = model or registry.default_model()
        network, card = registry.load_network(name)
        self._setup(network, card, resolve_device(device), precision)

    @classmethod
    def from_network(cls, network: nn.Module, card: ModelCard, device: str = "cpu", precision: str = "auto") -> Segmenter:
        """A segmenter around a network already in memory (a model being trained, a test stand-in)."""
        segmenter = cls.__new__(cls)
        segmenter._setup(network, card, resolve_device(device), precision)
        return segmenter

    def _setup(self, network: nn.Module, card: ModelCard, device: torch.device, precision: str) -> None:
        if precision not in PRECISIONS:
            raise LiverSegError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        self.card = card
        self.device = device
        self.precision = precision
        self.network = network.eval().to(device)
        self._preprocess = preprocessing(card)
        self._cpu_copy: nn.Module | None = None
        self._cpu_copy_lock = threading.Lock()

    def _cpu_network(self) -> nn.Module:
        """The network on the CPU, for the out-of-memory fallback (the shared GPU copy stays put)."""
        if self.device.type == "cpu":
            return self.network
        with self._cpu_copy_lock:
            if self._cpu_copy is None:
                self._cpu_copy = copy.deepcopy(self.network).cpu()
            return self._cpu_copy

    def _infer(self, image: torch.Tensor, report: Callable[[float], None]) -> tuple[torch.Tensor, str, list[str]]:
        """Class probabilities on the model grid, the device that produced them, and notes."""
        window = dict(patch_size=self.card.patch_size, overlap=OVERLAP, batch_size=BATCH_SIZE, progress=report)
        notes = []
        queued = time.perf_counter()
        with _ACCELERATOR:
            waited = time.perf_counter() - queued
            if waited > 1:
                notes.append(f"waited {waited:.0f} s for another segmentation to finish")
            if self.device.type == "cuda":
                try:
                    amp = self.precision != "float32"
                    return sliding_window_probabilities(self.network, image, device=self.device, amp=amp, **window), "cuda", notes
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()  # give back what the failed batch held before the CPU run
                    notes.append(OOM_NOTE)
            amp = self.precision == "mixed"
            probabilities = sliding_window_probabilities(self._cpu_network(), image, device="cpu", amp=amp, **window)
        return probabilities, "cpu", notes

    def segment(self, scan: Scan, progress: Progress | None = None) -> Segmentation:
        """Labels 0/1/2 on ``scan``'s grid, with the device used, seconds per stage and notes.

        ``progress(stage, fraction)`` is called as the stages ``"preprocess"``, ``"infer"`` and
        ``"postprocess"`` advance from 0 to 1.
        """
        report = progress or (lambda stage, fraction: None)
        seconds: dict[str, float] = {}

        start = time.perf_counter()
        report("preprocess", 0.0)
        subject = self._preprocess(tio.Subject(ct=scan.to_torchio()))
        image, model_affine = subject["ct"].data, subject["ct"].affine
        del subject
        report("preprocess", 1.0)
        seconds["preprocess"] = time.perf_counter() - start

        start = time.perf_counter()
        report("infer", 0.0)
        probabilities, device, notes = self._infer(image, lambda fraction: report("infer", fraction))
        seconds["infer"] = time.perf_counter() - start

        start = time.perf_counter()
        report("postprocess", 0.0)
        labels = _labels_on_scan_grid(probabilities.numpy(), model_affine, scan, notes)
        report("postprocess", 1.0)
        seconds["postprocess"] = time.perf_counter() - start
        return Segmentation(labels, scan, model=self.card.name, device=device, seconds=seconds, notes=notes)


def _labels_on_scan_grid(probabilities: np.ndarray, model_affine: np.ndarray, scan: Scan, notes: list[str]) -> np.ndarray:
    """Clean the labels on the model grid, then resample the edited probabilities onto the scan and take the argmax."""
    model_labels = probabilities.argmax(axis=0).astype(np.uint8)
    spacing = np.linalg.norm(model_affine[:3, :3], axis=0)
    cleaned, cleaning_notes = postprocess(model_labels, spacing)
    notes.extend(cleaning_notes)
    changed = cleaned != model_labels
    probabilities[:, changed] = np.eye(len(probabilities), dtype=probabilities.dtype)[cleaned[changed]].T

    labels = np.zeros(scan.shape, np.uint8)
    box = _scan_box(cleaned > 0, model_affine, scan)
    if box is None:
        return labels
    # Only the box around the organ is resampled: outside it every label is background, and a
    # 0.6 mm scan has ~30 million voxels of which the liver fills a tenth.
    shape = tuple(s.stop - s.start for s in box)
    affine = scan.affine.copy()
    affine[:3, 3] = scan.affine[:3, :3] @ [s.start for s in box] + scan.affine[:3, 3]
    # Only liver and lesion travel: background is 1 minus both, since interpolation keeps the sum at 1.
    liver = resample_onto(probabilities[LIVER], model_affine, shape, affine)
    lesion = resample_onto(probabilities[LESION], model_affine, shape, affine)
    background = 1.0 - liver
    background -= lesion
    # The argmax, ties broken towards the lower label as numpy's argmax does on the model grid.
    inside = np.zeros_like(liver, dtype=np.uint8)  # same memory layout as the resampled arrays: faster masks
    inside[(liver > background) & (liver >= lesion)] = LIVER
    inside[(lesion > background) & (lesion > liver)] = LESION
    labels[box] = inside
    return labels


def _scan_box(mask: np.ndarray, model_affine: np.ndarray, scan: Scan) -> tuple[slice, slice, slice] | None:
    """The scan voxels within one model voxel of ``mask`` (a box on the model grid), as slices; None if empty.

    Linear interpolation mixes the 8 model voxels around a point, so a class can only win
    where one of them has it: one model voxel of margin is enough.
    """
    found = np.argwhere(mask)
    if not len(found):
        return None
    low, high = found.min(axis=0) - 1, found.max(axis=0) + 1
    corners = np.array([[(low, high)[bit >> axis & 1][axis] for axis in range(3)] for bit in range(8)], dtype=float)
    to_scan = np.linalg.inv(scan.affine) @ model_affine
    points = corners @ to_scan[:3, :3].T + to_scan[:3, 3]
    start = np.maximum(np.floor(points.min(axis=0)).astype(int) - 1, 0)
    stop = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 2, scan.shape)
    if np.any(stop <= start):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
