"""The pretrained networks' architecture: sizes, normalisation and the order weights load in."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from core.model import multipathway_unet
from core.model.multipathway_unet import LESION, LIVER, MultiPathwayUNet, instance_norm_lrelu, output_shape


def test_trained_canvas_and_tile_give_the_documented_outputs():
    assert output_shape(LIVER, (189, 162, 162)) == (163, 136, 136)
    assert output_shape(LESION, (180, 172, 86)) == (92, 84, 42)


@pytest.mark.parametrize(("architecture", "size"), [(LESION, (108, 100, 46)), (LIVER, (54, 45, 33))])
def test_output_shape_matches_the_network(architecture, size):
    network = MultiPathwayUNet(architecture).eval()
    with torch.inference_mode():
        output = network(torch.randn(1, 1, *size))
    assert tuple(output.shape[2:]) == output_shape(architecture, size)
    assert 0 <= float(output.min()) and float(output.max()) <= 1  # one sigmoid probability


def test_sizes_that_do_not_line_up_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        output_shape(LESION, (92, 84, 42))


def test_convolutions_in_the_weight_files_order():
    """15 convolutions in the liver network, 21 in the residual lesion network (6 shortcuts), as Keras numbered them."""
    liver, lesion = MultiPathwayUNet(LIVER).creation_order(), MultiPathwayUNet(LESION).creation_order()
    assert [tuple(c.weight.shape[:2]) for c in liver][:4] == [(20, 1), (40, 20), (40, 40), (80, 40)]
    assert len(liver) == 15 and len(lesion) == 21
    # conv3d_3 of the lesion file is pathway 0's shortcut, 1 -> 40 channels, 1x1x1.
    assert tuple(lesion[2].weight.shape) == (40, 1, 1, 1, 1)
    assert sum(p.numel() for p in MultiPathwayUNet(LIVER).parameters()) == 3_874_961
    assert sum(p.numel() for p in MultiPathwayUNet(LESION).parameters()) == 3_464_221


def test_normalisation_is_over_the_whole_extent_without_parameters():
    x = torch.randn(1, 3, 6, 5, 4) * 7 + 3
    y = instance_norm_lrelu(x.clone())
    positive = torch.where(y >= 0, y, y / 0.01)  # undo LeakyReLU 0.01
    assert torch.allclose(positive.mean(dim=(2, 3, 4)), torch.zeros(1, 3), atol=1e-5)
    assert torch.allclose(positive.std(dim=(2, 3, 4), unbiased=False), torch.ones(1, 3), atol=1e-4)


@pytest.mark.parametrize(("chunk_values", "memory_format"), [
    (2**18, torch.channels_last_3d), (97, torch.channels_last_3d),  # the CPU's chunks: one per map, many uneven ones
    (2**18, torch.contiguous_format),  # the whole-map path a GPU takes
])
def test_bfloat16_normalisation_is_float32_arithmetic_rounded_once(monkeypatch, chunk_values, memory_format):
    """Reduced precision against float64 on the same bfloat16 values: every voxel within one bfloat16
    rounding of the result, per sample of a batch, though the mean is 20 standard deviations from zero,
    where statistics rounded to bfloat16 would shift every voxel by up to 0.08."""
    monkeypatch.setattr(multipathway_unet, "_CHUNK_VALUES", chunk_values)
    x = (torch.randn(2, 3, 17, 13, 11, dtype=torch.float64) * 0.05 + torch.tensor([1.0, -3.0])[:, None, None, None, None])
    x = x.to(torch.bfloat16).contiguous(memory_format=memory_format)
    std, mean = torch.std_mean(x.double(), dim=(2, 3, 4), keepdim=True, correction=0)
    expected = F.leaky_relu((x.double() - mean) / (std + 1e-7), 0.01)
    with torch.inference_mode():
        y = instance_norm_lrelu(x.clone(memory_format=memory_format))
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=memory_format)
    assert ((y.double() - expected).abs() <= expected.abs() * 2**-8 + 1e-5).all()
