"""Fine-tuning the pretrained pair: what learns, the loss, tiles as the tiler cuts them, and a whole run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.model.multipathway_unet import LESION, MultiPathwayUNet
from core.training.fine_tuning import _window, soft_dice_loss, trainable


@pytest.mark.parametrize(("layers", "learning"), [("head", ["up.0.", "head."]), ("decoder", ["up.", "head."]), ("all", [""])])
def test_only_the_chosen_layers_learn(layers, learning):
    network = MultiPathwayUNet(LESION)
    chosen = {id(p) for p in trainable(network, layers)}
    for name, parameter in network.named_parameters():
        should = any(name.startswith(prefix) for prefix in learning)
        assert parameter.requires_grad == should == (id(parameter) in chosen), name


def test_soft_dice_loss_is_zero_for_a_perfect_answer_and_one_for_the_opposite():
    target = torch.zeros(1, 1, 4, 4, 4)
    target[..., 1:3, 1:3, 1:3] = 1
    assert float(soft_dice_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_dice_loss(1 - target, target)) == pytest.approx(1.0, abs=0.02)


def test_windows_are_cut_as_tiles_with_the_fill_outside():
    array = np.arange(5 * 6 * 4, dtype=np.float32).reshape(5, 6, 4)
    window = _window(array, (0, 3, 2), (4, 4, 2), -1.0)
    assert window.shape == (4, 4, 2)
    assert (window[:2] == -1).all()  # before the array's start
    assert np.array_equal(window[2:], array[0:2, 1:5, 1:3])


@pytest.mark.slow
def test_train_init_pair_writes_a_fine_tuned_pair(tmp_path, sample_paths, monkeypatch):
    """``python -m core train --init kul-liver-lesion-v1`` on the sample: the lesion network changes, the liver does not."""
    from core import config
    from core.cli import main
    from core.model import registry

    out = tmp_path / "trained" / "tuned"
    monkeypatch.setenv("LIVERSEG_DATA_DIRS", str(sample_paths[0].parent))
    assert main(["train", "--init", "kul-liver-lesion-v1", "--data", str(sample_paths[0].parent), "--out", str(out),
                 "--val", "0", "--epochs", "1", "--patches-per-epoch", "2", "--lr", "1e-4", "--train-layers", "head"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["pretrained"]["fine_tuned"]["network"] == "lesion" and "cpu_bfloat16" not in card["pretrained"]
    assert [row["case"] for row in card["training"]["data"]] == ["lits117"]
    original, _ = registry.load_network("kul-liver-lesion-v1")
    tuned, _, _ = registry.load_folder(out)
    assert all(torch.equal(a, b) for a, b in zip(original.liver.state_dict().values(), tuned.liver.state_dict().values()))
    assert not torch.equal(original.lesion.head.weight, tuned.lesion.head.weight)
    assert torch.equal(original.lesion.down[0].convolutions[0].weight, tuned.lesion.down[0].convolutions[0].weight)
    assert config.TRAINED_DIR != out.parent  # written where asked, not into the shipped models
