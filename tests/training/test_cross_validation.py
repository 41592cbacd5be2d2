"""Cross-validation: every labelled case held out once, by the model's own recipe, nothing chosen on it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.cli import main
from core.errors import LiverSegError
from core.model.card import ModelCard
from core.segmentation import LESION, LIVER
from core.training.cross_validation import RESULTS_FILE, THRESHOLDS, choose_threshold, cross_validate, recipe, record_in_card
from core.training.options import parse
from core.training.run import train as train_run

pytestmark = pytest.mark.slow  # trains a model per fold

TINY = ["--patch-size", "32", "32", "32", "--channels", "4", "8", "--patches-per-epoch", "4", "--samples-per-volume", "2",
        "--batch-size", "2", "--threads", "1", "--accelerator", "cpu", "--epochs", "1", "--val", "0"]


def train(*argv: str):
    return train_run(parse(argv))


@pytest.fixture(scope="module")
def cascade(phantoms, tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    first = train("--data", str(phantoms), "--out", str(root / "first_stage"), "--spacing", "12", *TINY)
    return train("--data", str(phantoms), "--out", str(root / "cascade"), "--spacing", "6", "--first-stage", str(first), *TINY)


def test_every_case_is_held_out_once_by_a_model_trained_without_it(cascade, phantoms, tmp_path):
    lines = []
    results = cross_validate(cascade, tmp_path / "work", [phantoms], log=lines.append)
    assert [row["case"] for row in results["cases"]] == ["case0", "case1", "case2"]
    for row in results["cases"]:
        assert row["case"] not in row["trained_on"] and len(row["trained_on"]) == 2
        fold = ModelCard.load(tmp_path / "work" / row["case"] / "second_stage")
        assert fold.training["split"]["excluded"] == [row["case"]] and fold.cascade is not None
        assert fold.first_stage.spacing_mm == [12.0, 12.0, 12.0] and 0 <= row["liver_dice"] <= 1
    assert results["cases"][2]["lesion_dice"] is None  # case2 has a liver-only label
    assert results["cases"][0]["lesion_dice"] is not None and results["cases"][0]["lesion_threshold"] == 0.5
    assert results["lesion_threshold"]["threshold"] in THRESHOLDS
    assert sum("training:" in line for line in lines) == 6  # two stages per fold
    assert json.loads((tmp_path / "work" / RESULTS_FILE).read_text(encoding="utf-8"))["cases"] == results["cases"]

    lines.clear()  # a second run reuses every finished fold
    again = cross_validate(cascade, tmp_path / "work", [phantoms], log=lines.append)
    assert sum("reusing" in line for line in lines) == 6 and not any("training:" in line for line in lines)
    timeless = [[{k: v for k, v in row.items() if k != "seconds"} for row in run["cases"]] for run in (again, results)]
    assert timeless[0] == timeless[1]

    card = record_in_card(cascade, results)
    assert card.lesion_threshold == results["lesion_threshold"]["threshold"]
    assert card.metrics["cross_validation"]["cases"] == results["cases"]


def test_the_recipe_is_each_stages_recorded_command(cascade, phantoms):
    first, second = recipe(ModelCard.load(cascade), [phantoms])
    assert "--spacing" in first and first[first.index("--spacing") + 1] == "12.0"
    assert "--first-stage" in second
    assert second[second.index("--data") + 1] == str(phantoms.resolve())  # the card's folder name, found here


def test_a_data_folder_the_recipe_names_must_be_given(cascade, tmp_path):
    with pytest.raises(LiverSegError, match="data folders named phantoms.*give each with --data"):
        recipe(ModelCard.load(cascade), [tmp_path])


def test_a_fold_is_retrained_when_its_data_changed(cascade, phantoms, tmp_path):
    """A card names its data folders only, so reuse also checks each recorded case's content hash."""
    from core.training.cross_validation import _same_recipe

    arguments = recipe(ModelCard.load(cascade), [phantoms])[1]
    assert _same_recipe(cascade, arguments)
    copy = tmp_path / phantoms.name
    shutil.copytree(phantoms, copy)
    assert _same_recipe(cascade, [copy.as_posix() if word == str(phantoms.resolve()) else word for word in arguments])
    label = next(copy.rglob("*seg*.nii.gz"))
    label.write_bytes(label.read_bytes() + b"\0")  # other bytes, same case name
    assert not _same_recipe(cascade, [copy.as_posix() if word == str(phantoms.resolve()) else word for word in arguments])


def test_a_card_without_a_command_cannot_be_cross_validated(tmp_path):
    ModelCard(name="bare").save(tmp_path)
    with pytest.raises(LiverSegError, match="records no training command"):
        cross_validate(tmp_path, tmp_path / "work")
    assert main(["cross-validate", str(tmp_path)]) == 2


def test_the_threshold_is_the_one_with_the_best_pooled_detection_f1():
    reference = np.zeros((20, 20, 20), np.uint8)
    reference[2:18, 2:18, 2:18] = LIVER
    reference[4:7, 4:7, 4:7] = LESION  # one real lesion
    labels = reference.copy()
    labels[12:15, 12:15, 12:15] = LESION  # and one false alarm
    probability = np.zeros(reference.shape, np.float32)
    probability[4:7, 4:7, 4:7] = 0.72  # the real one is surer than the false one
    probability[12:15, 12:15, 12:15] = 0.52
    chosen = choose_threshold([(labels, probability, reference)])
    assert chosen["threshold"] == 0.55  # the lowest that drops the false alarm and keeps the lesion
    assert chosen["f1"] == 1.0 and chosen["per_threshold"][0.5] == pytest.approx(2 / 3)
    assert choose_threshold([])["threshold"] is None
