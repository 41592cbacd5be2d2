"""Sliding-window inference: class probabilities for a volume larger than one patch.

The volume is cut into overlapping patches with TorchIO's ``GridSampler``, the
network runs on batches of patches, and ``GridAggregator`` blends the softmax
outputs back together with a Hann window so that patch borders (where a
convolutional network sees the least context) count least. Used by
``core.inference.segmenter`` and by validation during training, so both see the same
numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
import torchio as tio
from torch import nn


def sliding_window_probabilities(
    network: nn.Module,
    image: torch.Tensor,
    patch_size: Sequence[int],
    overlap: float = 0.25,
    batch_size: int = 2,
    device: str | torch.device = "cpu",
    amp: bool = False,
    progress: Callable[[float], None] | None = None,
    overlap_mode: str = "hann",
) -> torch.Tensor:
    """Softmax probabilities of ``network`` over the whole of ``image``.

    Args:
        network: maps a batch ``(B, 1, *patch_size)`` to logits ``(B, C, *patch_size)``; it must
            already be on ``device`` and in the mode the caller wants (``eval()`` for inference).
        image: preprocessed intensities, float tensor ``(1, X, Y, Z)``, on any device.
        patch_size: patch in voxels, e.g. the model card's ``patch_size``.
        overlap: fraction of the patch shared by neighbouring patches (0 <= overlap < 1).
        batch_size: patches per forward pass.
        device: where the network runs; inputs are moved there patch batch by patch batch.
        amp: mixed precision: on CUDA bfloat16 where the GPU supports it, else float16; on a CPU
            with native bfloat16 (AVX512-BF16 or AMX) bfloat16; ignored on other CPUs, where
            emulated bfloat16 is slower than float32.
        progress: called with the fraction of patches done, from 0 to 1.
        overlap_mode: ``"hann"`` (default) or ``"average"`` blending of overlapping patches.

    Returns:
        float32 probabilities ``(C, X, Y, Z)`` on the CPU, summing to 1 over ``C``.

    Volumes smaller than the patch along an axis are padded (with the image's minimum, which
    after the HU window is air) and the padding is cropped from the result.
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be (1, X, Y, Z), not {tuple(image.shape)}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), not {overlap}")
    patch = tuple(int(p) for p in patch_size)
    shape = tuple(int(n) for n in image.shape[1:])
    image = image.detach().float().cpu()
    padding = [max(0, p - n) for p, n in zip(patch, shape)]
    if any(padding):
        # F.pad lists the last axis first: (Z before, Z after, Y before, Y after, X before, X after).
        pad = [amount for axis in reversed(padding) for amount in (0, axis)]
        image = F.pad(image, pad, value=float(image.min()))
    sampler = _sampler(image, patch, overlap)
    aggregator = tio.GridAggregator(sampler, overlap_mode=overlap_mode)
    device = torch.device(device)
    total = len(sampler)
    done = 0
    with torch.inference_mode():
        for start in range(0, total, batch_size):
            patches = [sampler[index] for index in range(start, min(start + batch_size, total))]
            batch = torch.stack([p["image"][tio.DATA] for p in patches]).to(device, non_blocking=True)
            locations = torch.stack([torch.as_tensor(p[tio.LOCATION]) for p in patches])
            with autocast(device, amp):
                logits = network(batch)
            aggregator.add_batch(torch.softmax(logits.float(), dim=1).cpu(), locations)
            done += len(patches)
            if progress is not None:
                progress(done / total)
    # Outside inference mode the division makes an ordinary tensor, which callers may modify in place.
    probabilities = aggregator.get_output_tensor()
    return probabilities[:, : shape[0], : shape[1], : shape[2]].contiguous()


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if amp and device.type == "cpu" and cpu_has_native_bfloat16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), where it is ~2x float32 for convolutions."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def cpu_inference_dtype(mixed: bool) -> torch.dtype:
    """The dtype a network runs in as such on this CPU: bfloat16 where ``mixed`` and computed natively, else float32."""
    return torch.bfloat16 if mixed and cpu_has_native_bfloat16() else torch.float32


def _sampler(image: torch.Tensor, patch: tuple[int, ...], overlap: float) -> tio.GridSampler:
    # GridSampler wants an even overlap per axis, smaller than the patch.
    overlap_voxels = tuple(min(2 * round(p * overlap / 2), p - 2) for p in patch)
    return tio.GridSampler(tio.Subject(image=tio.ScalarImage(tensor=image)), patch, overlap_voxels)


def count_patches(shape: Sequence[int], patch_size: Sequence[int], overlap: float = 0.25) -> int:
    """How many patches ``sliding_window_probabilities`` runs for a volume of ``shape`` (for cost estimates)."""
    padded = [max(int(n), int(p)) for n, p in zip(shape, patch_size)]
    return len(_sampler(torch.zeros(1, *padded), tuple(int(p) for p in patch_size), overlap))
