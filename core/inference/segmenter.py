"""``Segmenter``: a scan in, liver and lesion labels on the scan's own grid out.

For a two-stage cascade (``ModelCard.cascade``) a first stage looks at the whole scan
at a coarse spacing and finds the liver's region (``core.inference.first_stage``); the second
stage, described below, then works in that region's box only, and its liver and
lesion probabilities outside the region become background.

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

import contextlib
import copy
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torchio as tio
from torch import nn

from core.affine import spacing_mm
from core.devices import DEVICES, PRECISIONS
from core.errors import LiverSegError
from core.imageio.sitk_image import resample_onto
from core.inference.first_stage import FirstStageRegion
from core.inference.preprocessing import preprocessing
from core.inference.pretrained_pair import PairOutput, PretrainedPair
from core.inference.sliding_window import autocast, cpu_inference_dtype, sliding_window_probabilities
from core.model import registry
from core.model.card import PRETRAINED_PAIR, ModelCard
from core.model.multipathway_unet import NetworkPair
from core.postprocessing.anatomy import anatomy_warnings
from core.postprocessing.cleanup import drop_unconfident_lesions, postprocess
from core.scan import Scan
from core.segmentation import BACKGROUND, LESION, LIVER, Progress, Segmentation

#: One inference at a time per process: app sessions share one GPU (two at once would
#: contend for its memory), and on the CPU torch already uses every core.
_ACCELERATOR = threading.Lock()
OOM_NOTE = "the GPU ran out of memory, so inference finished on the CPU (slower)"
#: Sliding window: a quarter of each patch shared with its neighbour, two patches per forward pass.
OVERLAP, BATCH_SIZE = 0.25, 2


@contextlib.contextmanager
def _accelerator(notes: list[str]) -> Iterator[None]:
    """Hold the accelerator for one inference, noting a wait of over a second for another session's."""
    queued = time.perf_counter()
    with _ACCELERATOR:
        waited = time.perf_counter() - queued
        if waited > 1:
            notes.append(f"waited {waited:.0f} s for another segmentation to finish")
        yield


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when present, else the CPU; ``"cuda"`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in DEVICES:
        raise LiverSegError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise LiverSegError("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
    return torch.device(device)


class _OnDevice:
    """A network on its device, and on the CPU in ``cpu_dtype``: there itself, or a copy made on first
    need for the out-of-memory fallback (the shared GPU copy stays put)."""

    def __init__(self, network: nn.Module, device: torch.device, memory_format: torch.memory_format = torch.preserve_format,
                 cpu_dtype: torch.dtype = torch.float32) -> None:
        self.device = device
        self.network = network.eval().to(device, memory_format=memory_format)
        self._cpu_dtype = cpu_dtype
        self._cpu_copy: nn.Module | None = None
        self._cpu_copy_lock = threading.Lock()

    def _cpu_network(self) -> nn.Module:
        if self.device.type == "cpu" and self._cpu_dtype == torch.float32:
            return self.network
        with self._cpu_copy_lock:
            if self._cpu_copy is None:
                self._cpu_copy = copy.deepcopy(self.network).to("cpu", self._cpu_dtype)
            return self._cpu_copy


class _Stage(_OnDevice):
    """One network with its card's preprocessing, on a device, with a CPU copy for the out-of-memory fallback."""

    def __init__(self, network: nn.Module, card: ModelCard, device: torch.device, precision: str) -> None:
        super().__init__(network, device)
        self.card, self.precision = card, precision
        self.preprocess = preprocessing(card)

    def model_grid(self, scan: Scan) -> tuple[torch.Tensor, np.ndarray]:
        """``scan`` preprocessed as the card says: (1, X, Y, Z) tensor on the model grid, and its affine."""
        subject = self.preprocess(tio.Subject(ct=scan.to_torchio()))
        return subject["ct"].data, subject["ct"].affine

    def infer(self, image: torch.Tensor, report: Callable[[float], None]) -> tuple[torch.Tensor, str, list[str]]:
        """Class probabilities on the model grid, the device that produced them, and notes."""
        window = dict(patch_size=self.card.patch_size, overlap=OVERLAP, batch_size=BATCH_SIZE, progress=report)
        notes: list[str] = []
        with _accelerator(notes):
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


class _PairStage(_OnDevice):
    """The pretrained pair on a device: whole inputs (the liver canvas, lesion tiles) one at a time, mixed
    precision as chosen, and after an out-of-memory error on the GPU the rest of the scan on the CPU."""

    def __init__(self, pair: NetworkPair, card: ModelCard, device: torch.device, precision: str) -> None:
        # bfloat16 on a CPU only where asked, or where the card records it was measured to keep the labels,
        # and where the CPU computes it natively. There the networks are bfloat16 copies run as they are:
        # autocast would cast every weight again for every input and max-pool in float32 (11 % of a lesion tile).
        cpu_amp = precision == "mixed" or (precision == "auto" and card.cpu_bfloat16_measured)
        # Channels-last: oneDNN's and cuDNN's fast 3D convolutions (1.6x on this project's CPU).
        super().__init__(pair, device, torch.channels_last_3d, cpu_inference_dtype(cpu_amp))
        self.gpu_amp = precision != "float32"

    def predict(self, scan: Scan, report: Progress, notes: list[str]) -> tuple[PairOutput, str]:
        """What the pair finds on ``scan``, and the device that finished it."""
        device = self.device

        def run(name: str, array: np.ndarray) -> np.ndarray:
            nonlocal device
            if device.type == "cuda":
                try:
                    return _forward(getattr(self.network, name), array, device, self.gpu_amp)
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()  # give back what the failed input held before the CPU run
                    notes.append(OOM_NOTE)
                    device = torch.device("cpu")
            return _forward(getattr(self._cpu_network(), name), array, device, amp=False)

        with _accelerator(notes):
            output = PretrainedPair(run).predict(scan.voxels, scan.affine, report)
        return output, device.type


def _forward(network: nn.Module, array: np.ndarray, device: torch.device, amp: bool) -> np.ndarray:
    """``network``'s probabilities for one whole input (a 3D array), as float32 on the CPU; the input
    takes the network's dtype, and ``amp`` runs a float32 network in mixed precision."""
    dtype = next(network.parameters()).dtype
    tensor = torch.from_numpy(array)[None, None].to(device, dtype, memory_format=torch.channels_last_3d)
    with torch.inference_mode(), autocast(device, amp):
        return network(tensor)[0, 0].float().cpu().numpy()


class Segmenter:
    """A loaded model (one stage, a two-stage cascade, or the pretrained pair) ready to segment scans;
    safe to share between threads.

    Args:
        model: name of a model under ``config.TRAINED_DIR``; ``None`` takes the default model.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        precision: ``"auto"``: mixed precision on a GPU; on the CPU float32, except for a model whose
            card records that bfloat16 keeps its labels (the pretrained pair), which then runs in
            bfloat16 where the CPU computes it natively; ``"mixed"``: also bfloat16 on such a CPU
            for any model (see ``core.inference.sliding_window``); ``"float32"``: never mixed.
    """

    def __init__(self, model: str | None = None, device: str = "auto", precision: str = "auto") -> None:
        network, card, first_stage = registry.load_model(model)
        self._setup(network, card, first_stage, resolve_device(device), precision)

    @classmethod
    def from_network(cls, network: nn.Module, card: ModelCard, device: str = "cpu", precision: str = "auto",
                     first_stage: nn.Module | None = None) -> Segmenter:
        """A segmenter around networks already in memory (a model being trained, a fold, a test stand-in).

        ``first_stage`` is a cascade's first stage, which ``card.cascade`` describes.
        """
        segmenter = cls.__new__(cls)
        segmenter._setup(network, card, first_stage, resolve_device(device), precision)
        return segmenter

    def _setup(self, network: nn.Module, card: ModelCard, first_stage: nn.Module | None, device: torch.device, precision: str) -> None:
        if precision not in PRECISIONS:
            raise LiverSegError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        if (first_stage is None) != (card.cascade is None):
            raise LiverSegError(f"model {card.name!r}: a cascade card needs its first stage, and only a cascade takes one")
        self.card = card
        self.device = device
        if card.architecture == PRETRAINED_PAIR:
            self._pair = _PairStage(network, card, device, precision)  # type: ignore[arg-type]
            return
        self._pair = None
        self._second_stage = _Stage(network, card, device, precision)
        self._first_stage = None if first_stage is None else _Stage(first_stage, card.first_stage, device, precision)  # type: ignore[arg-type]

    def segment(self, scan: Scan, progress: Progress | None = None) -> Segmentation:
        """Labels 0/1/2 on ``scan``'s grid, with the device used, seconds per stage, notes and warnings.

        ``progress(stage, fraction)`` is called as the stages advance from 0 to 1: ``"first_stage"``
        (a cascade's first stage, on the whole scan), then ``"preprocess"``, ``"infer"`` and
        ``"postprocess"``.
        """
        report = progress or (lambda stage, fraction: None)
        if self._pair is not None:
            return self._segment_with_pair(scan, report)
        seconds: dict[str, float] = {}
        notes: list[str] = []
        devices: list[str] = []
        region = None
        if self._first_stage is not None:
            start = time.perf_counter()
            report("first_stage", 0.0)
            region = self._find_region(scan, lambda fraction: report("first_stage", fraction), devices, notes)
            seconds["first_stage"] = time.perf_counter() - start

        start = time.perf_counter()
        report("preprocess", 0.0)
        image, model_affine = self._second_stage.model_grid(region.crop(scan) if region is not None else scan)
        report("preprocess", 1.0)
        seconds["preprocess"] = time.perf_counter() - start

        start = time.perf_counter()
        report("infer", 0.0)
        probabilities, device, infer_notes = self._second_stage.infer(image, lambda fraction: report("infer", fraction))
        devices.append(device)
        notes += infer_notes
        seconds["infer"] = time.perf_counter() - start

        start = time.perf_counter()
        report("postprocess", 0.0)
        probabilities = probabilities.numpy()
        if region is not None:
            region.confine(probabilities, model_affine)
        labels, lesion_probability = _labels_on_scan_grid(probabilities, model_affine, scan, self.card.lesion_threshold, notes)
        warnings = anatomy_warnings(labels, scan)
        report("postprocess", 1.0)
        seconds["postprocess"] = time.perf_counter() - start
        device = "cpu" if "cpu" in devices else devices[0]  # after a fallback in either stage, say CPU
        return Segmentation(labels, scan, model=self.card.name, model_version=self.card.created, device=device, seconds=seconds,
                            notes=notes, warnings=warnings, lesion_probability=lesion_probability)

    def _segment_with_pair(self, scan: Scan, report: Progress) -> Segmentation:
        """The pretrained pair's labels, cleaned as every model's are: one liver, lesions in and against it
        and no specks (``core.postprocessing.cleanup``), unconfident lesions dropped, anatomy checked."""
        assert self._pair is not None
        notes: list[str] = []
        output, device = self._pair.predict(scan, report, notes)
        start = time.perf_counter()
        report("postprocess", 0.0)
        labels = np.where(output.liver, LIVER, BACKGROUND).astype(np.uint8)
        labels[output.lesion] = LESION
        box = scan.box_around(labels > BACKGROUND, scan.affine)
        if box is None:
            notes.append("no liver was found in this scan")
        else:  # the clean-up's components and distances on the organ's box only: the rest is background
            cleaned, cleaning_notes = postprocess(labels[box], scan.spacing)
            labels[box] = cleaned
            notes += cleaning_notes
        labels, confidence_notes = drop_unconfident_lesions(labels, output.lesion_probability, self.card.lesion_threshold)
        notes += confidence_notes
        warnings = anatomy_warnings(labels, scan)
        seconds = {**output.seconds, "postprocess": time.perf_counter() - start}
        report("postprocess", 1.0)
        probability = np.rint(output.lesion_probability * 255).astype(np.uint8)
        if output.tiles[1]:
            notes.append(f"the lesion network ran {output.tiles[0]} of the {output.tiles[1]} tiles its authors' tiler lays "
                         "(the others are overwritten or hold no liver)")
        return Segmentation(labels, scan, model=self.card.name, model_version=self.card.created, device=device,
                            seconds=seconds, notes=notes, warnings=warnings, lesion_probability=probability)

    def _find_region(self, scan: Scan, report: Callable[[float], None], devices: list[str], notes: list[str]) -> FirstStageRegion | None:
        """The cascade's first stage: where in the whole scan the liver is (``None``: nowhere, so search it all)."""
        assert self._first_stage is not None and self.card.cascade is not None
        image, affine = self._first_stage.model_grid(scan)
        probabilities, device, stage_notes = self._first_stage.infer(image, report)
        devices.append(device)
        notes += stage_notes
        region = FirstStageRegion.from_probabilities(probabilities.numpy(), affine, self.card.roi_margin_mm)
        if region is None:
            notes.append("the first stage found no liver, so the second searched the whole scan")
        return region


def _labels_on_scan_grid(probabilities: np.ndarray, model_affine: np.ndarray, scan: Scan, lesion_threshold: float,
                         notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Clean the labels on the model grid, resample the edited probabilities onto the scan, take the argmax.

    Returns the labels and the lesion probability (uint8, 0-255 for 0-1) on the scan's grid.
    """
    model_labels = probabilities.argmax(axis=0).astype(np.uint8)
    cleaned, cleaning_notes = postprocess(model_labels, spacing_mm(model_affine))
    notes.extend(cleaning_notes)
    changed = cleaned != model_labels
    probabilities[:, changed] = np.eye(len(probabilities), dtype=probabilities.dtype)[cleaned[changed]].T

    labels = np.zeros(scan.shape, np.uint8)
    lesion_probability = np.zeros(scan.shape, np.uint8)
    box = scan.box_around(cleaned > BACKGROUND, model_affine)
    if box is None:
        return labels, lesion_probability
    # Only the box around the organ is resampled: outside it every label is background, and a
    # 0.6 mm scan has ~30 million voxels of which the liver fills a tenth.
    crop = scan.crop(box)
    # Only liver and lesion travel: background is 1 minus both, since interpolation keeps the sum at 1.
    liver = resample_onto(probabilities[LIVER], model_affine, crop.shape, crop.affine)
    lesion = resample_onto(probabilities[LESION], model_affine, crop.shape, crop.affine)
    background = 1.0 - liver
    background -= lesion
    # The argmax, ties broken towards the lower label as numpy's argmax does on the model grid.
    inside = np.zeros_like(liver, dtype=np.uint8)  # same memory layout as the resampled arrays: faster masks
    inside[(liver > background) & (liver >= lesion)] = LIVER
    inside[(lesion > background) & (lesion > liver)] = LESION
    inside, confidence_notes = drop_unconfident_lesions(inside, lesion, lesion_threshold)
    notes.extend(confidence_notes)
    labels[box] = inside
    lesion_probability[box] = np.rint(np.clip(lesion, 0.0, 1.0) * 255)
    return labels, lesion_probability
