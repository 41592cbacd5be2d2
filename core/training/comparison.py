"""``compare``: models measured side by side on every labelled case, each only where it never saw the case.

For each labelled case found in the data folders (``core.training.discovery``) and each
model: if the model was trained on that case (its card lists the case's image by sha256),
the case is scored by the model's own leave-one-case-out fold when its card holds one
(``core.training.cross_validation``), else marked as seen and not scored; otherwise the
model segments the case through ``core.pipeline`` and is scored against the case's label,
with its time. So every number in the table is measured on a case the model did not learn from.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core import pipeline
from core.evaluation.metrics import summary
from core.imageio.nifti import read_scan
from core.inference.segmenter import Segmenter
from core.model.card import CARD_FILE, ModelCard
from core.model.registry import load_folder, model_dir
from core.training.discovery import Case, discover, sha256

#: The columns of the table, as ``metrics.summary`` names them.
COLUMNS = ("liver_dice", "liver_hd95_mm", "lesion_dice", "lesion_recall", "lesion_precision")
ZERO_SHOT, CROSS_VALIDATED, SEEN = "never seen", "leave-one-case-out fold", "trained on it"


def _trained_images(card: ModelCard) -> set[str]:
    cards = [card] + ([card.first_stage] if card.first_stage is not None else [])
    return {row["image_sha256"] for each in cards for row in each.training.get("data", []) if row.get("role") == "training"}


def _fold_row(card: ModelCard, case: Case) -> dict | None:
    for row in card.metrics.get("cross_validation", {}).get("cases", []):
        if row["case"] == case.name:
            return row
    return None


def _folder(model: str) -> Path:
    """A model's folder: ``model`` itself when it is one (a fold, a training output), else the registry's."""
    return Path(model) if (Path(model) / CARD_FILE).is_file() else model_dir(model)


def _segmenter(model: str, device: str) -> Segmenter:
    if (Path(model) / CARD_FILE).is_file():
        network, card, first_stage = load_folder(Path(model))
        return Segmenter.from_network(network, card, device=device, first_stage=first_stage)
    return Segmenter(model, device=device)


def compare(models: list[str], data_dirs: list[Path], device: str = "auto", log=print) -> list[dict]:
    """One row per (case, model; a name in trained/ or a model folder): how it was measured (``ZERO_SHOT``, ``CROSS_VALIDATED``, ``SEEN``),
    ``COLUMNS``, the reference's lesion count and the seconds the segmentation took."""
    cases = discover(data_dirs).require_cases()
    segmenters = {name: _segmenter(name, device) for name in models}
    seen = {name: _trained_images(segmenter.card) for name, segmenter in segmenters.items()}
    rows: dict[tuple[str, str], dict] = {}
    for case in cases:  # each scan, its label and its checksum read once, whatever the number of models
        digest, scan, reference = sha256(case.image), None, None
        for name, segmenter in segmenters.items():
            row = rows[name, case.name] = {"case": case.name, "kind": case.kind, "model": name}
            if digest in seen[name]:
                fold = _fold_row(segmenter.card, case)
                row.update({"measured": CROSS_VALIDATED, **{key: fold.get(key) for key in COLUMNS},
                            "seconds": fold.get("seconds")} if fold else {"measured": SEEN})
                continue
            if scan is None:
                scan, reference = read_scan(case.image), case.ground_truth()
            log(f"{name} on {case.name}...")
            start = time.perf_counter()
            result = pipeline.run(scan, segmenter, reference=reference)
            scores = summary(result.metrics)
            row.update({"measured": ZERO_SHOT, **{key: scores[key] for key in COLUMNS},
                        "seconds": round(time.perf_counter() - start, 1), "warnings": result.warnings})
    return [rows[name, case.name] for name in models for case in cases]


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table (``n/a`` where a measure is undefined, ``-`` where not measured)."""
    def cell(row: dict, key: str) -> str:
        if row["measured"] == SEEN:
            return "-"
        value = row.get(key)
        if value is None:
            return "n/a"
        return f"{value:.1f}" if key.endswith(("_mm", "seconds")) else f"{value:.3f}"

    header = ["case", "model", "measured on", "liver Dice", "liver HD95 (mm)", "tumour Dice", "lesion recall",
              "lesion precision", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [row["case"], row["model"], row["measured"], *(cell(row, key) for key in (*COLUMNS, "seconds"))]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def record_in_cards(rows: list[dict]) -> list[str]:
    """Write each model's rows into its card (``metrics.comparison``, with the mean over the cases it was
    measured on); a model whose card has no cross-validation gets that mean as its headline ``summary``.
    Returns the models written."""
    written = []
    for name in dict.fromkeys(row["model"] for row in rows):
        mine = [row for row in rows if row["model"] == name]
        measured = [row for row in mine if row["measured"] != SEEN]
        mean = {key: float(np.mean(values)) if (values := [row[key] for row in measured if row.get(key) is not None]) else None
                for key in COLUMNS}
        folder = _folder(name)
        card = ModelCard.load(folder)
        card.metrics["comparison"] = {
            "rule": "python -m core compare-models: each labelled case scored where the model never saw it (or by its "
                    "leave-one-case-out fold), through core.pipeline, against the case's label",
            "measured": datetime.now(UTC).isoformat(timespec="seconds"),
            "cases": mine,
            "mean": mean,
        }
        if not card.cross_validated:
            card.metrics["summary"] = {key: value for key, value in mean.items() if value is not None}
            card.metrics["measured_on"] = ("cases it never saw: " + ", ".join(row["case"] for row in measured)
                                           if measured else "nothing yet")
        card.save(folder)
        written.append(name)
    return written
