"""``MultiPathwayUNet``: the DeepVoxNet-style 3D U-Net of the pretrained KU Leuven liver and lesion networks.

Written from the published architecture (Robben et al. 2018; pyliverlesionseg 0.3,
Tang et al. 2020) so that the authors' trained weights load into PyTorch:

- one pathway per subsampling factor (for example 1, 3, 9, 27): max pooling by the
  ratio of neighbouring factors, then two convolutions on the way down and two on
  the way up, the way up starting from the concatenation [left features, upsampled];
- before every convolution except the very first: instance normalisation without
  learned parameters, ``(x - mean) / (std + 1e-7)`` over the whole spatial extent of
  the input (so the input's size, zero padding included, changes the output), then
  LeakyReLU 0.01;
- "same" padding with linear upsampling (repeat, then a box filter of the factor's
  width) for the liver network; "valid" padding with nearest upsampling and residual
  shortcuts (a 1x1x1 convolution where the channel count changes) for the lesion network;
- a final normalisation, LeakyReLU and 1x1x1 convolution with a sigmoid: one probability.

Feature maps that meet at a concatenation are centre-cropped to the smaller one, as
the original does; ``output_shape`` gives the output size for an input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

#: Keras' ``K.epsilon()``, added to the standard deviation by the original normalisation.
EPSILON = 1e-7
NEGATIVE_SLOPE = 0.01


@dataclass(frozen=True)
class Architecture:
    """What distinguishes the two trained networks.

    Attributes:
        factors: the subsampling factor of each pathway, finest first (isotropic).
        down: per pathway, the (kernel, features) of its two convolutions on the way down.
        up: per pathway but the last, the (kernel, features) of its two convolutions on the way up.
        padding: ``"same"`` or ``"valid"``.
        upsampling: ``"linear"`` or ``"nearest"``.
        residual: residual shortcuts around each pathway's convolutions.
    """

    factors: tuple[int, ...]
    down: tuple[tuple[tuple[tuple[int, int, int], int], ...], ...]
    up: tuple[tuple[tuple[tuple[int, int, int], int], ...], ...]
    padding: str
    upsampling: str
    residual: bool


_FLAT, _CUBE = (3, 3, 1), (3, 3, 3)

#: The whole-liver network (3 mm input, "same" padding, pathways at 1, 3, 9 and 27 voxels).
LIVER = Architecture(
    factors=(1, 3, 9, 27),
    down=(((_FLAT, 20), (_CUBE, 40)), ((_FLAT, 40), (_CUBE, 80)), ((_FLAT, 80), (_CUBE, 160)), ((_CUBE, 160), (_CUBE, 160))),
    up=(((_CUBE, 40), (_FLAT, 20)), ((_CUBE, 80), (_FLAT, 40)), ((_CUBE, 160), (_FLAT, 80))),
    padding="same", upsampling="linear", residual=False,
)

#: The lesion network (1 x 1 x 3 mm input inside the liver, "valid" padding, residual, pathways at 1, 2, 4, 8).
LESION = Architecture(
    factors=(1, 2, 4, 8),
    down=(((_FLAT, 20), (_CUBE, 40)), ((_FLAT, 40), (_CUBE, 80)), ((_FLAT, 80), (_CUBE, 160)), ((_FLAT, 160), (_CUBE, 160))),
    up=(((_CUBE, 40), (_FLAT, 20)), ((_CUBE, 80), (_FLAT, 40)), ((_CUBE, 160), (_FLAT, 80))),
    padding="valid", upsampling="nearest", residual=True,
)


#: The pair's networks by name, as the model card and the weight files name them.
ARCHITECTURES = {"liver": LIVER, "lesion": LESION}


def instance_norm_lrelu(x: torch.Tensor) -> torch.Tensor:
    """The original's normalisation then activation, in place when no gradient is needed (inference),
    which halves the peak memory.

    In reduced precision (a GPU's autocast, bfloat16 on a CPU) the statistics and the normalisation are
    float32 and only the result is rounded: statistics rounded to bfloat16 are off by up to 2 % of a
    standard deviation, which shifts every voxel of a channel alike (on IRCAD 1.1 the lesion
    network's outputs then differed from float32 at 218 voxels, against 173). On a CPU this takes
    ``_chunked_norm_lrelu``, which is also faster.
    """
    dims = tuple(range(2, x.ndim))
    if torch.is_grad_enabled():
        std, mean = torch.std_mean(x, dim=dims, keepdim=True, correction=0)
        return F.leaky_relu((x - mean) / (std + EPSILON), NEGATIVE_SLOPE)
    if x.dtype == torch.float32:
        std, mean = torch.std_mean(x, dim=dims, keepdim=True, correction=0)
        return F.leaky_relu_(x.sub_(mean).div_(std + EPSILON), NEGATIVE_SLOPE)
    if x.device.type == "cpu" and x.is_contiguous(memory_format=torch.channels_last_3d):
        for sample in x:
            _chunked_norm_lrelu(sample.permute(1, 2, 3, 0).reshape(-1, x.shape[1]))
        return x
    values = x.float()
    std, mean = torch.std_mean(values, dim=dims, keepdim=True, correction=0)
    return x.copy_(F.leaky_relu_(values.sub_(mean).div_(std + EPSILON), NEGATIVE_SLOPE))


#: Float32 values per chunk of ``_chunked_norm_lrelu``: about a megabyte, which stays in a core's cache.
_CHUNK_VALUES = 2**18


def _chunked_norm_lrelu(voxels: torch.Tensor) -> None:
    """Normalise and activate ``voxels`` (a view of one reduced-precision map on the CPU as voxels x
    channels) in place, computing in float32 chunk by chunk, which no whole-map float32 copy needs.

    Why not torch's reductions: on a CPU they reduce a bfloat16 map at a fifth of their float32 speed.
    Here the statistics are float32 sums (one matrix-vector product per chunk), shifted by a sampled
    mean so that the one-pass variance does not cancel: with the normalisation, 3-4x faster than
    torch's bfloat16 statistics, and 16x closer to float64 on a map whose mean is 17 deviations
    from zero (mean error 0.0006 against 0.009).
    """
    rows = max(1, _CHUNK_VALUES // voxels.shape[1])
    shift = voxels[:: max(1, len(voxels) // 1024)].float().mean(dim=0)
    ones = voxels.new_ones(rows, dtype=torch.float32)
    total = torch.zeros_like(shift)
    squares = torch.zeros_like(shift)
    for chunk in voxels.split(rows):
        centred = chunk.float().sub_(shift)
        total += ones[: len(chunk)] @ centred
        squares += ones[: len(chunk)] @ centred.square_()
    offset = total / len(voxels)
    mean = shift + offset
    std = (squares / len(voxels) - offset * offset).clamp_min_(0).sqrt_() + EPSILON
    for chunk in voxels.split(rows):
        chunk.copy_(F.leaky_relu_(chunk.float().sub_(mean).div_(std), NEGATIVE_SLOPE))


def _centre_crop(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """``x`` cut to ``size`` (spatial), the same margin on both sides as the original's Cropping3D."""
    slices = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], size):
        margin = (have - want) // 2
        slices.append(slice(margin, have - margin))
    return x[tuple(slices)]


class _Block(nn.Module):
    """Two convolutions of one pathway (down or up), each after normalisation and activation."""

    def __init__(self, in_channels: int, convolutions, architecture: Architecture, normalise_first: bool) -> None:
        super().__init__()
        self.normalise_first = normalise_first
        self.convolutions = nn.ModuleList()
        channels = in_channels
        for kernel, features in convolutions:
            padding = tuple(k // 2 for k in kernel) if architecture.padding == "same" else 0
            self.convolutions.append(nn.Conv3d(channels, features, kernel, padding=padding))
            channels = features
        self.out_channels = channels
        self.shortcut: nn.Module | None = None
        if architecture.residual and in_channels != channels:
            self.shortcut = nn.Conv3d(in_channels, channels, 1)
        self.residual = architecture.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.residual else None
        for index, convolution in enumerate(self.convolutions):
            if index > 0 or self.normalise_first:
                x = instance_norm_lrelu(x if index > 0 or shortcut is None else x.clone())
            x = convolution(x)
        if shortcut is not None:
            shortcut = _centre_crop(shortcut, x.shape[2:])
            x = x + (self.shortcut(shortcut) if self.shortcut is not None else shortcut)
        return x


def output_shape(architecture: Architecture, input_shape) -> tuple[int, int, int]:
    """The output size for ``input_shape``; a ``ValueError`` for sizes the network cannot take, where
    pooling, cropping and valid convolutions would not line up (the original refuses them too)."""
    return tuple(_axis_output(architecture, int(n), axis) for axis, n in enumerate(input_shape))  # type: ignore[return-value]


def _axis_output(architecture: Architecture, n: int, axis: int) -> int:
    def through(block, n: int) -> int:
        start = n
        if architecture.padding == "valid":
            n -= sum(kernel[axis] - 1 for kernel, _ in block)
        if n <= 0 or (architecture.residual and (start - n) % 2):
            raise ValueError(f"input size {size} along axis {axis} does not fit the network")
        return n

    size, lefts, previous = n, [], 1
    for factor, block in zip(architecture.factors, architecture.down):
        n = through(block, n // (factor // previous))
        lefts.append(n)
        previous = factor
    n = lefts.pop()
    for index in range(len(architecture.up) - 1, -1, -1):
        step = architecture.factors[index + 1] // architecture.factors[index]
        n = n * step - (step - 1 if architecture.upsampling == "linear" else 0)
        left = lefts.pop()
        if left < n or (left - n) % 2:
            raise ValueError(f"input size {size} along axis {axis} does not fit the network")
        n = through(architecture.up[index], n)
    return n


class MultiPathwayUNet(nn.Module):
    """One of the two pretrained networks; input (N, 1, X, Y, Z), output sigmoid probabilities (N, 1, x, y, z)."""

    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        self.down = nn.ModuleList()
        channels = [1]
        for index, convolutions in enumerate(architecture.down):
            block = _Block(channels[-1], convolutions, architecture, normalise_first=index > 0)
            self.down.append(block)
            channels.append(block.out_channels)
        self.up = nn.ModuleList()
        below = channels[-1]
        for index in range(len(architecture.up) - 1, -1, -1):
            block = _Block(channels[index + 1] + below, architecture.up[index], architecture, normalise_first=True)
            self.up.insert(0, block)
            below = block.out_channels
        self.head = nn.Conv3d(below, 1, 1)

    def _upsample(self, x: torch.Tensor, factor: int) -> torch.Tensor:
        """The original's upsampling: each voxel repeated ``factor`` times per axis, then (linear) a box
        filter ``factor`` wide without padding. The box filter of repeats is linear interpolation with the
        corners aligned, which ``interpolate`` computes directly in ``x``'s precision and memory layout
        (the repeats and a 3D average pool, which a CPU has no bfloat16 kernel for, took 12x longer)."""
        if self.architecture.upsampling == "linear":
            size = [factor * (n - 1) + 1 for n in x.shape[2:]]
            return F.interpolate(x, size=size, mode="trilinear", align_corners=True)
        return F.interpolate(x, scale_factor=factor, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factors = self.architecture.factors
        lefts = []
        previous = 1
        for factor, block in zip(factors, self.down):
            if factor > previous:
                x = F.max_pool3d(x, factor // previous)
            previous = factor
            x = block(x)
            lefts.append(x)
        x = lefts.pop()
        for index in range(len(self.up) - 1, -1, -1):
            x = self._upsample(x, factors[index + 1] // factors[index])
            left = lefts.pop()
            x = torch.cat([_centre_crop(left, x.shape[2:]), x], dim=1)
            del left
            x = self.up[index](x)
        return torch.sigmoid(self.head(instance_norm_lrelu(x)))

    def creation_order(self) -> list[nn.Conv3d]:
        """The convolutions in the order the original builds them (down pathways, up pathways from the
        coarsest, each block's convolutions then its shortcut, last the head): the order of the weight file."""
        order: list[nn.Conv3d] = []
        for block in [*self.down, *reversed(self.up)]:
            order += list(block.convolutions)
            if block.shortcut is not None:
                order.append(block.shortcut)
        return [*order, self.head]


class NetworkPair(nn.Module):
    """The liver and the lesion network together: one module to load, move, save and fine-tune."""

    def __init__(self) -> None:
        super().__init__()
        self.liver = MultiPathwayUNet(LIVER)
        self.lesion = MultiPathwayUNet(LESION)
