"""Sliding-window inference: patches, batches, padding, AMP, and Hann blending of overlapping patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.inference import sliding_window
from core.inference.sliding_window import count_patches, sliding_window_probabilities


class Recorder(nn.Module):
    """A voxel-wise network (its answer does not depend on the patch) that records batch shapes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(1, 3, 1)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.conv(x)


def full_volume_softmax(network: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(network.conv(image[None]), dim=1)[0]


@pytest.mark.parametrize("overlap_mode", ["hann", "average"])
@pytest.mark.parametrize("shape", [(40, 36, 28), (10, 50, 17)], ids=["larger", "smaller-than-patch"])
def test_patches_blend_back_to_the_whole_volume_answer(shape, overlap_mode):
    """A voxel-wise network answers alike in every patch, so either blend gives back its whole-volume answer
    (blending weights themselves: test_overlapping_patches_are_blended_with_a_hann_window_by_default)."""
    network = Recorder()
    image = torch.randn(1, *shape)
    probabilities = sliding_window_probabilities(network, image, (16, 16, 16), overlap=0.5, overlap_mode=overlap_mode)
    assert probabilities.shape == (3, *shape)
    assert probabilities.device.type == "cpu" and probabilities.dtype == torch.float32
    torch.testing.assert_close(probabilities, full_volume_softmax(network, image), atol=1e-5, rtol=1e-5)
    assert all(s[1:] == (1, 16, 16, 16) for s in network.shapes)


class WherePatch(nn.Module):
    """A network whose answer depends on where a voxel sits in its patch: lesion logit = intensity + (x - 7.5) / 4."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position = (torch.arange(x.shape[2], dtype=x.dtype) - 7.5) / 4
        lesion = x + position.view(1, 1, -1, 1, 1)
        return torch.cat([torch.zeros_like(x), lesion], dim=1)


def hann(size: int) -> np.ndarray:
    """The blending weight of each position in a patch: a raised cosine that falls to zero just outside it."""
    return np.sin(np.pi * (np.arange(size) + 1) / (size + 1)) ** 2


def two_patch_probabilities(image: np.ndarray, blend: str) -> np.ndarray:
    """The expected lesion probability along x of a (24, 16, 16) volume cut into 16-voxel patches at x = 0 and x = 8."""
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731 - a 2-class softmax
    position = (np.arange(16) - 7.5) / 4
    first = np.full((24, 16, 16), np.nan)
    second = np.full((24, 16, 16), np.nan)
    first[:16] = sigmoid(image[:16] + position[:, None, None])
    second[8:] = sigmoid(image[8:] + position[:, None, None])
    weight = hann(16) if blend == "hann" else np.ones(16)
    w_first, w_second = np.zeros(24), np.zeros(24)
    w_first[:16], w_second[8:] = weight, weight
    total = np.nan_to_num(first) * w_first[:, None, None] + np.nan_to_num(second) * w_second[:, None, None]
    return total / (w_first + w_second)[:, None, None]


def test_overlapping_patches_are_blended_with_a_hann_window_by_default():
    """Where two patches overlap, each counts by its Hann weight at that position (the default), not equally."""
    image = torch.randn(1, 24, 16, 16, generator=torch.Generator().manual_seed(0))
    voxels = image[0].double().numpy()
    hann_expected, average_expected = two_patch_probabilities(voxels, "hann"), two_patch_probabilities(voxels, "average")
    assert np.abs(hann_expected - average_expected)[8:16].min() > 1e-3  # the two blends differ on every overlap voxel
    default = sliding_window_probabilities(WherePatch(), image, (16, 16, 16), overlap=0.5, batch_size=1)
    np.testing.assert_allclose(default[1].double().numpy(), hann_expected, atol=1e-5)
    np.testing.assert_allclose(default.sum(0).numpy(), 1, atol=1e-5)
    average = sliding_window_probabilities(WherePatch(), image, (16, 16, 16), overlap=0.5, overlap_mode="average")
    np.testing.assert_allclose(average[1].double().numpy(), average_expected, atol=1e-5)


def test_batches_and_progress():
    network = Recorder()
    fractions = []
    sliding_window_probabilities(network, torch.randn(1, 32, 32, 32), (16, 16, 16), overlap=0, batch_size=3, progress=fractions.append)
    assert [s[0] for s in network.shapes] == [3, 3, 2]  # 8 patches
    assert fractions == [3 / 8, 6 / 8, 1.0]


def test_padding_is_the_image_minimum_not_zero():
    """A patch that runs past a small volume sees air (the minimum), not a bright zero border."""
    seen = []

    def network(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return torch.zeros(x.shape[0], 2, *x.shape[2:])

    sliding_window_probabilities(network, torch.full((1, 8, 16, 16), -1.0), (16, 16, 16))
    assert torch.all(seen[0] == -1.0)


def test_no_gradients_and_result_is_an_ordinary_tensor():
    network = Recorder()
    probabilities = sliding_window_probabilities(network, torch.randn(1, 16, 16, 16), (16, 16, 16))
    assert not probabilities.requires_grad
    probabilities += 1  # callers may modify it in place (an inference-mode tensor would refuse)


@pytest.mark.parametrize("native", [True, False])
def test_amp_on_the_cpu_is_bfloat16_only_where_the_cpu_computes_it(native, monkeypatch):
    monkeypatch.setattr(sliding_window, "cpu_has_native_bfloat16", lambda: native)
    autocast = []

    class Probe(Recorder):
        def forward(self, x):
            autocast.append(torch.is_autocast_enabled("cpu"))
            return super().forward(x)

    network = Probe()
    image = torch.randn(1, 16, 16, 16)
    probabilities = sliding_window_probabilities(network, image, (16, 16, 16), amp=True)
    assert autocast == [native]
    tolerance = 2e-2 if native else 1e-6  # bfloat16 keeps 8 bits of mantissa
    torch.testing.assert_close(probabilities, full_volume_softmax(network, image), atol=tolerance, rtol=tolerance)


def test_bad_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(1, X, Y, Z\)"):
        sliding_window_probabilities(Recorder(), torch.randn(16, 16, 16), (16, 16, 16))


@pytest.mark.parametrize("shape, overlap, expected", [((32, 32, 32), 0, 8), ((40, 16, 10), 0.5, 4), ((145, 145, 103), 0.25, 8)])
def test_count_patches_matches_the_patches_run(shape, overlap, expected):
    patch = (16, 16, 16) if shape[0] < 100 else (96, 96, 96)  # the last: the DICOM case at 2 mm, default card
    assert count_patches(shape, patch, overlap) == expected
    if shape[0] < 100:
        network = Recorder()
        sliding_window_probabilities(network, torch.randn(1, *shape), patch, overlap=overlap, batch_size=1)
        assert len(network.shapes) == expected
