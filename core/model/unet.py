"""``UNet``: a compact 3D U-Net (Ronneberger 2015, Cicek 2016) as nnU-Net configures it.

Instance normalisation and leaky ReLU (Isensee et al., nnU-Net), strided
convolutions to go down, transposed convolutions to go up. 3D rather than 2D:
lesions and the liver's boundary are judged across slices, and at the model's
coarse spacing a whole abdomen fits in a few patches.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.InstanceNorm3d(out_channels, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
        nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.InstanceNorm3d(out_channels, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
    )


class UNet(nn.Module):
    """3D U-Net from one CT channel to ``num_classes`` logits.

    Args:
        channels: feature channels per level, e.g. ``[16, 32, 64, 128]``; input sizes
            must be multiples of ``2 ** (len(channels) - 1)``.
        num_classes: output channels (background, liver, lesion).
    """

    def __init__(self, channels: list[int], num_classes: int = 3) -> None:
        super().__init__()
        self.encoders = nn.ModuleList()
        previous = 1
        for level, width in enumerate(channels):
            self.encoders.append(_conv_block(previous, width, stride=1 if level == 0 else 2))
            previous = width
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(channels[:-1]):
            self.upsamplers.append(nn.ConvTranspose3d(previous, width, 2, stride=2))
            self.decoders.append(_conv_block(2 * width, width))
            previous = width
        self.head = nn.Conv3d(previous, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        skips.pop()
        for upsample, decoder in zip(self.upsamplers, self.decoders):
            x = decoder(torch.cat([upsample(x), skips.pop()], dim=1))
        return self.head(x)
