"""Leave-one-case-out cross-validation of a model's own recipe: honest figures from few cases.

With a handful of labelled CTs, a score on a case the model was trained on says
nothing about the next scan. So every labelled case found in the recipe's data
folders is held out once: the recipe (each stage's recorded ``python -m core
train`` command, read from the model's card) is run again with ``--exclude CASE``,
and the resulting model segments that case exactly as users get it
(``core.pipeline``), scored on the case's own grid.

Nothing is chosen on the case being scored: the recipe trains without
validation (``--val 0``: no best epoch is picked), and the table uses the fold's
card threshold for lesion confidence, fixed before any fold ran. The lesion
threshold for the *shipped* model is then chosen on the folds' out-of-fold
predictions (pooled lesion-detection F1 over the held-out cases with lesion
labels), which is the only place a choice is made, and it is recorded as such.

Fold models are kept in ``WORK/CASE/STAGE/``; a fold whose card records the
same recipe is reused, so an interrupted cross-validation continues where it
stopped.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from core import config
from core.atomic import write_atomically
from core.errors import LiverSegError
from core.evaluation.metrics import summary
from core.model.card import CARD_FILE, ModelCard
from core.postprocessing.cleanup import drop_unconfident_lesions
from core.segmentation import LESION
from core.training.discovery import Case, discover, sha256
from core.training.options import parse
from core.viewing.numbers import number

#: Lesion-confidence thresholds tried on the out-of-fold predictions.
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.3, 0.951, 0.05))
#: Options that differ between folds of one recipe, or do not change what is trained.
_PER_FOLD = {"out", "first_stage", "exclude", "resume", "cache_dir", "num_workers"}
RESULTS_FILE = "cross_validation.json"


def recipe(card: ModelCard, data_dirs: list[Path] | None = None) -> list[list[str]]:
    """The ``python -m core train`` arguments of each stage (first stage first), from the card's records.

    A card names its data folders without saying where they were (``TrainOptions.portable``),
    so each is looked up by name among ``data_dirs`` (default: ``config.data_dirs()``, the
    shared data and the sample).

    Raises:
        LiverSegError: no recorded command, or a data folder the recipe names is not among ``data_dirs``.
    """
    folders = {folder.name: folder for folder in (Path(d).expanduser().resolve()
                                                  for d in (config.data_dirs() if data_dirs is None else data_dirs))}
    stages = ([card.first_stage] if card.first_stage is not None else []) + [card]
    commands = []
    for stage in stages:
        command = stage.training.get("command")
        if not command:
            raise LiverSegError(f"model {stage.name!r} records no training command in its card; it cannot be cross-validated")
        words = shlex.split(command)
        if words[:4] != ["python", "-m", "core", "train"]:
            raise LiverSegError(f"model {stage.name!r}: its recorded command is not 'python -m core train ...': {command}")
        options = parse(words[4:])
        missing = [name for name in options.data if Path(name).name not in folders]
        if missing:
            raise LiverSegError(f"model {stage.name!r} was trained on data folders named {', '.join(missing)}, not among "
                                f"{', '.join(sorted(folders)) or 'none'}; give each with --data DIR")
        commands.append(replace(options, data=[str(folders[Path(name).name]) for name in options.data]).arguments())
    return commands


def _fold_arguments(arguments: list[str], held_out: str, out: Path, first_stage: Path | None) -> list[str]:
    """``arguments`` with ``held_out`` excluded, written to ``out``, attached to the fold's own first stage."""
    options = parse(arguments)
    options = replace(options, exclude=",".join(sorted({*options.excluded, held_out})), out=str(out), resume=False,
                      first_stage=options.first_stage if first_stage is None else str(first_stage))
    return options.arguments()


def _same_recipe(folder: Path, arguments: list[str]) -> bool:
    """Whether ``folder`` holds a finished model trained with ``arguments`` (folder-specific options aside)."""
    if not (folder / CARD_FILE).is_file():
        return False
    training = ModelCard.load(folder).training
    recorded, options = training.get("options", {}), parse(arguments)
    for key, value in options.record().items():
        if key in _PER_FOLD:
            continue
        if key == "data":
            if sorted(recorded.get("data", [])) != sorted(value):  # folders by name, as cards record them
                return False
        elif recorded.get(key) != value:
            return False
    return _same_cases(training.get("data", []), [Path(d).expanduser().resolve() for d in options.data])


def _same_cases(recorded: list[dict], data_dirs: list[Path]) -> bool:
    """Whether every case a card records is still in ``data_dirs`` with the same content (a card names folders only)."""
    folders = {folder.name: folder for folder in data_dirs}
    for case in recorded:
        folder = folders.get(case.get("data_folder", ""))
        if folder is None:
            return False
        for key in ("image", "label"):
            path = folder / case.get(key, "")
            if not path.is_file() or sha256(path) != case.get(f"{key}_sha256"):
                return False
    return True


def _train_fold(arguments: list[str], folder: Path, log) -> None:
    """Train one stage of one fold into ``folder`` (its output goes to ``folder``.log), unless it is there already."""
    if _same_recipe(folder, arguments):
        log(f"  reusing {folder} (same recipe)")
        return
    if (folder / CARD_FILE).exists():
        raise LiverSegError(f"{folder} holds a model trained with another recipe; remove it or choose another --work")
    resume = (folder / "checkpoints" / "last.ckpt").exists()  # an interrupted fold continues
    command = [sys.executable, "-m", "core", "train", *arguments, *(["--resume"] if resume else [])]
    log(f"  training: {shlex.join(command[1:])}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.log", "a", encoding="utf-8") as output:
        finished = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
    if finished.returncode != 0:
        raise LiverSegError(f"training the fold in {folder} failed (exit {finished.returncode}); see {folder.parent / (folder.name + '.log')}")


def _score(case: Case, folder: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """The fold model's scores on ``case``, and its unthresholded labels and lesion probability (for the threshold)."""
    from core import pipeline
    from core.imageio.nifti import read_scan
    from core.inference.segmenter import Segmenter
    from core.model.registry import load_folder

    network, card, first_stage = load_folder(folder)
    # Segment with every lesion kept, then apply the fold card's own threshold: one inference serves both.
    segmenter = Segmenter.from_network(network, replace(card, lesion_threshold=0.0), first_stage=first_stage)
    result = pipeline.run(read_scan(case.image), segmenter, reference=case.ground_truth(), lesion_threshold=card.lesion_threshold)
    row = {
        "case": case.name,
        "kind": case.kind,
        "trained_on": card.training["split"]["training"],
        **summary(result.metrics),
        "lesion_threshold": card.lesion_threshold,
        "warnings": result.warnings,
        "seconds": round(sum(result.segmentation.seconds.values()), 1),
    }
    return row, result.unfiltered_labels, result.segmentation.lesion_probability.astype(np.float32) / 255.0


def choose_threshold(predictions: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """The lesion-confidence threshold with the best pooled detection F1 over out-of-fold predictions.

    Args:
        predictions: per held-out case with lesion labels: (labels kept at threshold 0,
            lesion probability 0-1, reference labels), all on the case's grid.

    Returns ``{"threshold", "f1", "per_threshold": {t: f1}}``; the lowest threshold wins a tie
    (it keeps the most lesions). ``threshold`` is ``None`` when no case has lesion labels.
    """
    from core.evaluation.metrics import lesion_detection

    if not predictions:
        return {"threshold": None, "f1": None, "per_threshold": {}}
    pooled = {}
    for threshold in THRESHOLDS:
        found = false = missed = 0
        for labels, probability, reference in predictions:
            kept, _ = drop_unconfident_lesions(labels, probability, threshold)
            detection = lesion_detection(kept == LESION, reference == LESION)
            found, false, missed = found + detection["true_positives"], false + detection["false_positives"], missed + detection["missed"]
        errors = 2 * found + false + missed
        pooled[threshold] = 2 * found / errors if errors else 1.0
    best = max(pooled.values())
    threshold = min(t for t, f1 in pooled.items() if f1 == best)
    return {"threshold": threshold, "f1": best, "per_threshold": pooled}


def cross_validate(model_folder: Path, work: Path, data_dirs: list[Path] | None = None, log=print) -> dict:
    """Run the model's recipe once per held-out labelled case; return (and write to ``work``) the results.

    ``data_dirs``: where the recipe's data folders are found by name (see ``recipe``).
    """
    card = ModelCard.load(model_folder)
    stages = recipe(card, data_dirs)
    data = parse(stages[-1]).data
    cases = discover([Path(d) for d in data]).require_cases()
    if len(cases) < 2:
        raise LiverSegError(f"cross-validation needs at least two labelled cases; {data} hold {len(cases)}")
    rows, predictions = [], []
    for case in cases:
        log(f"held out: {case.name}")
        first_stage = None
        for name, arguments in zip(("first_stage", "second_stage") if len(stages) == 2 else ("model",), stages):
            folder = work / case.name / name
            _train_fold(_fold_arguments(arguments, case.name, folder, first_stage), folder, log)
            first_stage = folder
        row, labels, probability = _score(case, first_stage)  # type: ignore[arg-type]
        rows.append(row)
        log("  " + format_row(row))
        if not case.liver_only:
            predictions.append((labels, probability, case.ground_truth().labels))
    results = {
        "recipe": [parse(arguments).command() for arguments in stages],
        "rule": "leave one case out: each held-out case's model was trained without it, with no validation (no epoch "
                "chosen on it), and scored at the card's fixed lesion threshold; the shipped threshold is chosen on "
                "these out-of-fold predictions (pooled lesion-detection F1)",
        "cases": rows,
        "mean": {key: _mean(row[key] for row in rows) for key in ("liver_dice", "liver_hd95_mm", "lesion_dice",
                                                                   "lesion_recall", "lesion_precision")},
        "lesion_threshold": choose_threshold(predictions),
    }
    write_atomically(work / RESULTS_FILE, json.dumps(results, indent=2).encode())
    return results


def _mean(values) -> float | None:
    numbers = [v for v in values if v is not None]
    return float(np.mean(numbers)) if numbers else None


def format_row(row: dict) -> str:
    return (f"{row['case']}: liver Dice {number(row['liver_dice'])}, HD95 {number(row['liver_hd95_mm'], 1)} mm, "
            f"lesion Dice {number(row['lesion_dice'])}, recall {number(row['lesion_recall'], 2)}, "
            f"precision {number(row['lesion_precision'], 2)}")


def markdown_table(results: dict) -> str:
    """The per-case table as Markdown, for the README and the closing note."""
    lines = ["| held-out case | trained on | liver Dice | liver HD95 (mm) | tumour Dice | lesion recall | lesion precision | lesions (ref / found) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in results["cases"]:
        lesions = "n/a (liver-only label)" if row["reference_lesions"] is None else f"{row['reference_lesions']} / {row['predicted_lesions']}"
        lines.append(f"| {row['case']} | {', '.join(row['trained_on'])} | {number(row['liver_dice'])} | "
                     f"{number(row['liver_hd95_mm'], 1)} | {number(row['lesion_dice'])} | {number(row['lesion_recall'], 2)} | "
                     f"{number(row['lesion_precision'], 2)} | {lesions} |")
    return "\n".join(lines)


def record_in_card(model_folder: Path, results: dict) -> ModelCard:
    """Put the table into the model's card as its accuracy claim, and the chosen lesion threshold into effect."""
    card = ModelCard.load(model_folder)
    chosen = results["lesion_threshold"]["threshold"]
    if chosen is not None:
        card.lesion_threshold = chosen
    card.metrics = {
        "measured_on": "leave-one-case-out cross-validation of this model's own recipe (python -m core cross-validate): "
                       "each case scored by a model trained without it",
        "cross_validation": results,
    }
    card.save(model_folder)
    return card
