"""Training: the liver-only-label loss, the split, the cache, and tiny real runs (single process, resume, DDP)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from core import config
from core.cli import main
from core.errors import LiverSegError
from core.model.card import ModelCard
from core.model.registry import load_network
from core.segmentation import LESION, LIVER
from core.training.datamodule import cache_paths, prepare_case
from core.training.discovery import discover
from core.training.loss import segmentation_loss
from core.training.options import parse
from core.training.progress import PROGRESS_FILE
from core.training.run import split_cases, train
from tests.helpers.fake_training import TINY

pytestmark = pytest.mark.slow  # real (tiny) training runs


def run(*argv: str) -> Path:
    return train(parse(argv))


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / PROGRESS_FILE).read_text(encoding="utf-8").splitlines()]


# ----------------------------------------------------------------------------- loss


def one_voxel(logits: list[float], label: int, liver_only: bool) -> torch.Tensor:
    tensor = torch.tensor(logits).view(1, 3, 1, 1, 1)
    _, _, cross_entropy = segmentation_loss(tensor, torch.tensor([[[[label]]]]), torch.tensor([liver_only]))
    return float(cross_entropy)


def test_partial_label_does_not_punish_a_lesion_inside_the_liver():
    says_liver, says_lesion = [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]
    # Full label: a voxel marked liver predicted as lesion costs a lot.
    assert one_voxel(says_lesion, LIVER, liver_only=False) > 4
    # Partial label: liver or lesion are both allowed where it says liver.
    assert one_voxel(says_lesion, LIVER, liver_only=True) == pytest.approx(one_voxel(says_liver, LIVER, liver_only=True), abs=1e-5)
    assert one_voxel(says_lesion, LIVER, liver_only=True) < 0.02
    # Background and (synthetic) lesion voxels stay exact even in liver-only samples.
    assert one_voxel(says_lesion, 0, liver_only=True) > 4
    assert one_voxel(says_liver, LESION, liver_only=True) > 4


def test_loss_falls_for_the_right_answer():
    labels = torch.zeros(2, 8, 8, 8, dtype=torch.long)
    labels[:, 2:6, 2:6, 2:6] = LIVER
    labels[:, 3:5, 3:5, 3:5] = LESION
    perfect = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).float() * 20
    liver_only = torch.tensor([False, True])
    good, _, _ = segmentation_loss(perfect, labels, liver_only)
    bad, _, _ = segmentation_loss(torch.zeros_like(perfect), labels, liver_only)
    assert good < 0.05 < 1 < bad


# ----------------------------------------------------------------------------- split and cache


def test_split_by_fraction_count_and_names(phantoms):
    cases = discover([phantoms]).cases
    train, held_out = split_cases(cases, "0.34", seed=0)
    assert len(held_out) == 1 and len(train) == 2 and set(train).isdisjoint(held_out)
    assert split_cases(cases, "0.34", seed=0) == (train, held_out)  # the seed fixes the split
    assert len(split_cases(cases, "2", seed=0)[1]) == 2
    assert [c.name for c in split_cases(cases, "case0,case2", seed=0)[1]] == ["case0", "case2"]
    assert split_cases(cases, "0", seed=0)[1] == []
    with pytest.raises(LiverSegError, match="unknown case"):
        split_cases(cases, "case9", seed=0)
    with pytest.raises(LiverSegError, match="no case to train on"):
        split_cases(cases, "3", seed=0)


def test_cache_pads_to_the_patch_and_is_written_once(phantoms, tmp_path):
    case = discover([phantoms]).cases[0]
    card = ModelCard(name="t", channels=[4, 8], spacing_mm=[6.0, 6.0, 6.0], patch_size=[48, 32, 32])
    image_path, label_path = prepare_case(case, card, tmp_path)
    assert (image_path, label_path) == cache_paths(case, card, tmp_path)
    stored = torch.load(image_path, weights_only=True)
    labels = torch.load(label_path, weights_only=True)["data"]
    assert stored["data"].shape == labels.shape == (1, 48, 36, 32)  # 40x36x24 padded to at least 48x32x32
    assert stored["data"].min() == -1 and stored["data"].max() <= 1
    assert labels[:, :4].sum() == 0  # the padding is background
    written = image_path.stat().st_mtime_ns
    prepare_case(case, card, tmp_path)
    assert image_path.stat().st_mtime_ns == written
    other = ModelCard(name="t", channels=[4, 8], spacing_mm=[4.0, 4.0, 4.0], patch_size=[48, 32, 32])
    assert cache_paths(case, other, tmp_path)[0] != image_path  # other settings, other cache entry


# ----------------------------------------------------------------------------- runs


def test_tiny_training_writes_a_loadable_model_card_and_progress(phantoms, tmp_path, monkeypatch, machine_paths):
    out = run("--data", str(phantoms), "--out", str(tmp_path / "tiny"), "--val", "case0", "--epochs", "2",
              "--cache-dir", str(tmp_path / "cache"), *TINY)
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path)
    network, card = load_network("tiny")
    assert card.channels == [4, 8] and card.patch_size == [32, 32, 32] and card.spacing_mm == [6.0, 6.0, 6.0]
    assert network(torch.zeros(1, 1, 32, 32, 32)).shape == (1, 3, 32, 32, 32)
    training = card.training
    assert training["split"]["validation"] == ["case0"] and sorted(training["split"]["training"]) == ["case1", "case2"]
    kinds = {d["case"]: d["kind"] for d in training["data"]}
    assert kinds == {"case0": "liver+lesion", "case1": "liver+lesion", "case2": "liver-only"}
    assert all(len(d["image_sha256"]) == 64 and d["licence"] for d in training["data"])
    assert training["epochs"] == 2 and training["status"] == "finished" and training["hardware"]["accelerator"] == "cpu"
    assert training["command"].startswith("python -m core train --data ") and "--val case0" in training["command"]
    # Where things lay on this machine stays here: folders by name, each case relative to its folder.
    assert machine_paths(asdict(card)) == []
    assert training["command"].startswith(f"python -m core train --data {phantoms.name} --out tiny ")
    assert training["options"]["data"] == [phantoms.name] and training["options"]["cache_dir"] == "cache"
    assert {d["case"]: (d["data_folder"], d["image"], d["label"]) for d in training["data"]}["case2"] == (
        phantoms.name, "case2.nii.gz", "case2_seg.nii.gz")
    assert set(card.metrics["cases"]) == {"case0"} and 0 <= card.metrics["mean"]["liver_dice"] <= 1
    assert "core.pipeline" in card.metrics["measured_on"] and card.metrics["cases"]["case0"]["lesion_dice"] is not None
    assert set(card.metrics["during_training"]["cases"]) == {"case0"}
    events = records(out)
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "end"
    steps = [e for e in events if e["event"] == "step"]
    assert steps[-1]["step"] == 4 and all(e["patches_per_s"] > 0 for e in steps)
    assert {"loss", "dice_loss", "ce_loss", "lr", "eta_s", "progress"} <= set(steps[0])
    validations = [e for e in events if e["event"] == "validation"]
    assert len(validations) == 2 and validations[0]["cases"]["case0"]["lesion_dice"] is not None
    assert (out / "train.log").read_text(encoding="utf-8").count("validation: liver Dice") == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1  # the latest, whichever is best
    # Fine-tuning takes the architecture and weights of a model in trained/ (here tmp_path).
    tuned = run("--data", str(phantoms), "--out", str(tmp_path / "tuned"), "--init", "tiny", "--val", "0", "--epochs", "1",
                "--cache-dir", str(tmp_path / "cache"), *TINY[:4], "--channels", "16", "32", *TINY[7:])
    tuned_card = ModelCard.load(tuned)
    assert tuned_card.channels == [4, 8] and tuned_card.training["init"] == "tiny"
    # A finished model is never overwritten.
    with pytest.raises(LiverSegError, match="already holds a finished model"):
        run("--data", str(phantoms), "--out", str(out), *TINY)


def test_resume_continues_an_interrupted_run(phantoms, tmp_path):
    common = ["--data", str(phantoms), "--out", str(tmp_path / "run"), "--val", "0",
              "--cache-dir", str(tmp_path / "cache"), *TINY]
    with pytest.raises(LiverSegError, match="no checkpoint"):
        run(*common, "--resume")
    out = run(*common, "--epochs", "1")
    # As if the run had been killed after its first epoch: checkpoints but no model yet.
    (out / "card.json").unlink()
    (out / "model.pt").unlink()
    with pytest.raises(LiverSegError, match="unfinished run"):
        run(*common, "--epochs", "2")
    run(*common, "--epochs", "2", "--resume")
    card = ModelCard.load(out)
    starts = [e for e in records(out) if e["event"] == "start"]
    assert card.training["epochs"] == 2 and card.training["steps"] == 2 * starts[0]["steps_per_epoch"]
    assert "no case was held out" in card.metrics["measured_on"]
    assert [s["resumed"] for s in starts] == [False, True] and starts[1]["epoch"] == 1


def test_cli_reports_unusable_data_without_a_traceback(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    assert capsys.readouterr().err.startswith("error: no labelled cases found")
    assert not (tmp_path / "m" / "card.json").exists()


def test_ddp_on_two_cpu_processes(phantoms, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "core", "train", "--data", str(phantoms), "--out", str(out), "--val", "case0",
               "--epochs", "1", "--cache-dir", str(tmp_path / "cache"), *TINY, "--strategy", "ddp", "--devices", "2"]
    result = subprocess.run(command, cwd=config.ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    card = ModelCard.load(out)
    assert card.training["hardware"]["devices"] == 2 and card.training["status"] == "finished"
    start = records(out)[0]
    assert start["devices"] == 2
    # 2 training volumes x 2 patches, shared by 2 processes with batches of 2: one step each.
    assert card.training["steps"] == start["steps_per_epoch"] == 1
    assert set(card.metrics["cases"]) == {"case0"}


def test_exclude_leaves_a_case_out_of_training_and_validation(phantoms, tmp_path):
    out = run("--data", str(phantoms), "--out", str(tmp_path / "fold"), "--val", "0", "--exclude", "case0", "--epochs", "1",
              "--cache-dir", str(tmp_path / "cache"), *TINY)
    split = ModelCard.load(out).training["split"]
    assert sorted(split["training"]) == ["case1", "case2"] and split["validation"] == [] and split["excluded"] == ["case0"]
    with pytest.raises(LiverSegError, match="--exclude names unknown case"):
        run("--data", str(phantoms), "--out", str(tmp_path / "x"), "--exclude", "case9", *TINY)


def test_first_stage_makes_a_cascade_that_carries_it(phantoms, tmp_path, monkeypatch, machine_paths):
    first = run("--data", str(phantoms), "--out", str(tmp_path / "first"), "--val", "0", "--epochs", "1",
                 "--cache-dir", str(tmp_path / "cache"), *TINY[:-4], "--spacing", "12", "--accelerator", "cpu")
    fine = run("--data", str(phantoms), "--out", str(tmp_path / "cascade"), "--val", "case0", "--epochs", "1",
               "--first-stage", str(first), "--roi-margin", "15", "--cache-dir", str(tmp_path / "cache"), *TINY)
    card = ModelCard.load(fine)
    assert machine_paths(asdict(card)) == [] and card.training["options"]["first_stage"] == "first"
    assert card.cascade["roi_margin_mm"] == 15 and card.first_stage.spacing_mm == [12.0, 12.0, 12.0]
    assert card.spacing_mm == [6.0, 6.0, 6.0] and (fine / "first_stage.pt").is_file()
    assert "case0" in card.metrics["cases"]  # held-out scoring ran through the cascade
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path)
    from core.inference.segmenter import Segmenter
    from tests.helpers.phantom import make_phantom

    result = Segmenter("cascade").segment(make_phantom(shape=(40, 36, 24), spacing=(6.0, 6.0, 6.0), seed=5)[0])
    assert "first_stage" in result.seconds
    with pytest.raises(LiverSegError, match="itself a cascade"):
        run("--data", str(phantoms), "--out", str(tmp_path / "again"), "--first-stage", str(fine), *TINY)
