"""Converting the pretrained networks' Keras weights: checksums, layer counts, shapes, a known activation, offline."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from core import config
from core.errors import LiverSegError
from core.imageio import wheels
from core.model.card import ModelCard
from core.model.multipathway_unet import LESION, LIVER, MultiPathwayUNet
from core.model.pretrained import ensure_converted, keras_convolutions

PAIR = config.TRAINED_DIR / "kul-liver-lesion-v1"


def _ball(size, radius: float, inside: float, outside: float) -> torch.Tensor:
    grid = np.stack(np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in size], indexing="ij"))
    return torch.from_numpy(np.where((grid**2).sum(0) <= radius**2, inside, outside).astype(np.float32))[None, None]


@pytest.fixture
def offline_folder(tmp_path, monkeypatch):
    """The shipped card alone in a new folder, with the network forbidden: conversion must use the cached wheel."""
    import h5py  # noqa: F401  (imported before subprocesses are forbidden: its first import runs one)

    folder = tmp_path / "pair"
    folder.mkdir()
    shutil.copy(PAIR / "card.json", folder)
    monkeypatch.setattr(wheels.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network used")))
    return folder


def test_conversion_from_the_cached_wheel_gives_the_shipped_weights(offline_folder):
    paths = ensure_converted(offline_folder)
    assert [path.name for path in paths] == ["liver.pt", "lesion.pt"]
    for path in paths:
        converted, shipped = torch.load(path, weights_only=True), torch.load(PAIR / path.name, weights_only=True)
        assert converted.keys() == shipped.keys() and all(torch.equal(converted[k], shipped[k]) for k in converted)
    before = paths[0].stat().st_mtime_ns
    ensure_converted(offline_folder)  # idempotent: nothing converted twice
    assert paths[0].stat().st_mtime_ns == before


def test_the_weight_files_hold_the_architectures_layers():
    card = ModelCard.load(PAIR)
    wheel = config.CACHE_DIR / "wheels" / card.pretrained["source"]["wheel"]
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        for name, architecture in (("liver", LIVER), ("lesion", LESION)):
            layers, voxel_size = keras_convolutions(archive.read(card.pretrained["networks"][name]["member"]))
            expected = MultiPathwayUNet(architecture).creation_order()
            assert len(layers) == len(expected) == {"liver": 15, "lesion": 21}[name]
            assert [kernel.shape[::-1][:2] for kernel, _ in layers] == [tuple(c.weight.shape[:2]) for c in expected]
            assert voxel_size == tuple(card.pretrained["networks"][name]["spacing_mm"])


@pytest.mark.parametrize(("name", "architecture", "size", "ball", "mean"), [
    ("liver", LIVER, (81, 81, 81), (15, 0.125, -0.5), 0.0909288),
    ("lesion", LESION, (108, 100, 46), (6, -0.1, 0.2), 0.000356973),
])
def test_a_known_activation(name, architecture, size, ball, mean):
    """Pinned from the port whose labels match the authors' own run at Dice 1.000 (tests/inference/test_pretrained_pair.py):
    a transposed kernel, a swapped layer or a wrong normalisation moves these by orders of magnitude."""
    network = MultiPathwayUNet(architecture)
    network.load_state_dict(torch.load(PAIR / f"{name}.pt", weights_only=True))
    with torch.inference_mode():
        output = network.eval()(_ball(size, *ball))
    assert float(output.mean()) == pytest.approx(mean, rel=1e-3)


def test_a_changed_file_is_refused(offline_folder):
    card = json.loads((offline_folder / "card.json").read_text())
    card["pretrained"]["networks"]["lesion"]["sha256"] = "0" * 64
    (offline_folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(LiverSegError, match="sha256"):
        ensure_converted(offline_folder)
    assert not (offline_folder / "lesion.pt").exists()


def test_a_model_without_converted_weights_says_how_to_get_them(tmp_path, monkeypatch):
    from core.model import registry

    shutil.copytree(PAIR, tmp_path / "kul-liver-lesion-v1", ignore=shutil.ignore_patterns("*.pt"))
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path)
    with pytest.raises(LiverSegError, match="run make"):
        registry.load_model("kul-liver-lesion-v1")
