"""A training run's progress file: its name, its writer, its reader and what is read from it.

Torch-free: the job runner (``core.jobs``) and the Train page read progress while
the training runs in another process.

The output folder (``--out``) holds ``progress.jsonl`` (one JSON object per line,
appended as training goes) and ``train.log`` (the same events as plain text, also
printed on stdout). Every record has ``event``, ``time`` (Unix seconds), ``epoch``
(0-based) and ``step`` (optimiser steps done):

- ``"start"``: ``max_epochs``, ``steps_per_epoch``, ``total_steps``, ``max_minutes``
  (or null), ``train_cases`` and ``val_cases`` (names), ``accelerator``, ``devices``,
  ``precision``, ``resumed`` (bool).
- ``"step"``: ``loss``, ``dice_loss``, ``ce_loss`` (means since the previous record),
  ``lr``, ``patches_per_s`` (training patches per second over all devices, loading and
  augmentation included, validation excluded), ``patches_per_cpu_s`` (the same per second of
  this process's CPU time, which a machine busy with other work does not distort), ``elapsed_s``,
  ``progress`` (0-1), ``eta_s`` (seconds to the epoch or time limit, whichever comes first).
- ``"validation"``: ``liver_dice``, ``lesion_dice`` (means over held-out cases; lesion
  Dice only over cases with 0/1/2 labels, null when there are none), ``score`` (what
  "best" means: the mean of the case means), ``best`` (bool), ``seconds``, and
  ``cases``: ``{name: {"liver_dice": float, "lesion_dice": float | null}}``.
- ``"end"``: ``status`` (``"finished"``, ``"stopped early"``, ``"time limit"`` or
  ``"failed"``), ``elapsed_s``, ``best_score``, ``best_epoch``, ``model`` (the folder,
  or null when failed), ``error`` (the message when failed).

A line still being written may be incomplete: readers skip a last line that is not JSON.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

PROGRESS_FILE, LOG_FILE = "progress.jsonl", "train.log"
START, STEP, VALIDATION, END = "start", "step", "validation", "end"


class ProgressLog:
    """Append-only ``progress.jsonl`` and ``train.log`` in the output folder.

    Args:
        folder: the run's output folder (created).
        fresh: start both files empty (a new run) rather than appending (a resumed one).
        enabled: write at all; in a multi-process run only rank 0 writes.
    """

    def __init__(self, folder: Path, fresh: bool, enabled: bool = True) -> None:
        self.progress, self.log_file = folder / PROGRESS_FILE, folder / LOG_FILE
        self.enabled = enabled
        if self.enabled:
            folder.mkdir(parents=True, exist_ok=True)
            if fresh:
                self.progress.write_text("", encoding="utf-8")
                self.log_file.write_text("", encoding="utf-8")

    def record(self, event: str, **fields) -> None:
        """Append one record of ``event`` with ``fields``."""
        if self.enabled:
            line = json.dumps({"event": event, "time": round(time.time(), 3), **fields})
            with open(self.progress, "a", encoding="utf-8") as stream:  # one write per line: readers see whole lines
                stream.write(line + "\n")

    def say(self, text: str) -> None:
        """Print ``text`` with a time stamp on each line and append it to the log."""
        if self.enabled:
            stamped = "\n".join(f"{datetime.now():%H:%M:%S} {line}" for line in text.splitlines())
            print(stamped, flush=True)
            with open(self.log_file, "a", encoding="utf-8") as stream:
                stream.write(stamped + "\n")


def read_progress(folder: Path) -> list[dict]:
    """The progress records in output folder ``folder``, oldest first (a line still being written is skipped)."""
    try:
        text = (Path(folder) / PROGRESS_FILE).read_text(errors="replace")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def events(records: list[dict], event: str) -> list[dict]:
    """The records of one kind (``START``, ``STEP``, ``VALIDATION``, ``END``)."""
    return [record for record in records if record.get("event") == event]


def best_validation(records: list[dict]) -> dict[str, float]:
    """Best validation Dice per structure over the run's validation records (``{"liver_dice": 0.91, ...}``)."""
    best: dict[str, float] = {}
    for record in events(records, VALIDATION):
        for key in ("liver_dice", "lesion_dice"):
            value = record.get(key)
            if isinstance(value, (int, float)) and value == value:  # null and NaN never count as best
                best[key] = max(best.get(key, value), value)
    return best


def fraction_done(records: list[dict], now: float | None = None) -> tuple[float, float | None]:
    """Fraction of the run done and the seconds left (``None``: not known yet), from the latest step record.

    The ETA was right when written; the time since then is counted off it.
    """
    steps = events(records, STEP)
    if not steps:
        return 0.0, None
    latest = steps[-1]
    now = time.time() if now is None else now
    eta = latest.get("eta_s")
    left = max(0.0, eta - (now - latest.get("time", now))) if isinstance(eta, (int, float)) else None
    return min(1.0, max(0.0, float(latest.get("progress") or 0.0))), left
