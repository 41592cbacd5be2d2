"""``benchmarks/mr_verdict.py``'s measures, with stand-in networks: where the liver lies and what the variants change."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from benchmarks import mr_verdict
from core.inference.pretrained_pair import LIVER_OUTPUT


def centre(array: np.ndarray, shape) -> np.ndarray:
    return array[tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(array.shape, shape))]


def stand_in(name: str, array: np.ndarray) -> np.ndarray:
    """A 'liver network' that marks the brightest tissue."""
    assert name == "liver"  # the verdict runs the liver network only
    return (centre(array, LIVER_OUTPUT) > 0.45).astype(np.float32)


@pytest.fixture
def mr_file(tmp_path):
    """An MR-like phantom (RAS, 6 mm): a body of fat-like signal, a bright organ on the patient's right."""
    shape = (40, 32, 12)
    x, y, _ = np.ogrid[: shape[0], : shape[1], : shape[2]]
    volume = np.zeros(shape, np.float32)
    volume[np.broadcast_to(((x - 20) / 16) ** 2 + ((y - 16) / 12) ** 2 <= 1, shape)] = 300
    volume[24:33, 10:22, 2:10] = 700  # RAS: high x is the patient's right
    path = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([6.0, 6.0, 6.0, 1.0])), path)
    return path


def test_the_liver_is_placed_on_the_side_where_it_lies_even_when_mirrored(mr_file):
    recipe, mirrored = mr_verdict.verdict(mr_file, ["recipe", "mirrored"], stand_in)
    for row in (recipe, mirrored):
        assert row["above_half"] > 0 and 0 < row["body_share"] < 0.3
        assert 40 < row["liver_right_mm"] < 90  # the organ's centre: about 8.5 voxels of 6 mm right of the body's

