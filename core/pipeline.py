"""The one path a scan takes: segment -> measure -> (score), returning one ``Result``.

The command line, the Segment page, training's held-out evaluation and cross-validation all
call ``run`` (``measure`` and ``score`` for labels that exist already: ``python -m core lesions``
and ``evaluate``); none of them strings the stages together itself, so a change to the path
is made here once. Reading the scan (``core.imageio``) comes before, writing and
drawing (``core.imageio``, ``core.viewing``) after::

    Scan ──► segmenter.segment ──► Segmentation (labels on the scan's grid, warnings, notes)
         ──► evaluation.lesions ──► LesionReport (components labelled once, liver volume once)
         ──► evaluation.metrics  ──► metrics, when a reference is given

The segmenter is anything with ``segment(scan, progress) -> Segmentation``
(``core.inference.segmenter.Segmenter``), so another kind of model needs no change here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from core import allocator
from core.evaluation.lesions import LesionReport, analyse_lesions
from core.evaluation.metrics import evaluate
from core.imageio.ground_truth import GroundTruth
from core.postprocessing.cleanup import drop_unconfident_lesions
from core.scan import Scan
from core.segmentation import Progress, Segmentation


class Segments(Protocol):
    """The inference stage the pipeline calls: a scan in, labels on its grid out."""

    def segment(self, scan: Scan, progress: Progress | None = None) -> Segmentation: ...


@dataclass(eq=False)
class Result:
    """One segmentation and what is measured on it, each computed once.

    Attributes:
        segmentation: the labels with the ``Scan`` they belong to, the model, device, warnings and notes.
        lesions: the lesion table, liver volume and tumour burden.
        metrics: ``core.evaluation.metrics.evaluate``'s scores against the reference given to ``run``
            (``None`` without one).
        seconds: wall time per stage, the segmenter's and the pipeline's own.
        unfiltered_labels: the labels before ``run``'s own ``lesion_threshold`` dropped unconfident
            lesions (only when it was given one), for trying other thresholds on the same inference.
    """

    segmentation: Segmentation
    lesions: LesionReport
    metrics: dict | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    unfiltered_labels: np.ndarray | None = None

    @property
    def scan(self) -> Scan:
        return self.segmentation.scan

    @property
    def labels(self) -> np.ndarray:
        return self.segmentation.labels

    @property
    def warnings(self) -> list[str]:
        return self.segmentation.warnings

    @property
    def notes(self) -> list[str]:
        return self.segmentation.notes

    def score(self, reference: GroundTruth) -> dict:
        """Metrics of this result against ``reference`` (on the scan's grid), with the lesions already counted."""
        return score(self.labels, self.scan.spacing, reference, self.lesions)


def score(labels: np.ndarray, spacing: tuple[float, float, float], reference: GroundTruth,
          lesions: LesionReport | None = None) -> dict:
    """Metrics of ``labels`` against ``reference`` on the same grid (``python -m core evaluate`` has no scan).

    ``lesions``: the labels' lesion table when measured already, whose components are then not labelled again.
    A reference that covers part of the scan (``GroundTruth.covered``) is scored on that part only: the labels
    outside it are left out, and the metrics' notes say so.
    """
    if reference.covered is None:
        return evaluate(labels, reference.labels, spacing, liver_only=reference.liver_only,
                        prediction_components=None if lesions is None else lesions.components)
    result = evaluate(np.where(reference.covered, labels, 0), reference.labels, spacing, liver_only=reference.liver_only)
    result["notes"].insert(0, f"measured on the {reference.covered_share:.0%} of the scan that the reference covers, not on the whole scan")
    return result


def run(scan: Scan, segmenter: Segments, reference: GroundTruth | None = None, progress: Progress | None = None,
        lesion_threshold: float | None = None) -> Result:
    """Segment ``scan``, measure its lesions and, given a ``reference`` on its grid, score it.

    Args:
        progress: ``progress(stage, fraction)`` as the segmenter's stages advance, then ``"lesions"``
            and (with a reference) ``"metrics"``.
        lesion_threshold: drop lesions whose confidence is below this, after segmenting, instead of
            leaving it to the segmenter's card: cross-validation segments once with every lesion
            kept and scores at the card's threshold (``Result.unfiltered_labels`` keeps the rest).
    """
    try:
        segmentation = segmenter.segment(scan, progress)
    finally:
        allocator.release()  # what the segmentation's temporaries took goes back to the system (core.allocator)
    unfiltered = None
    if lesion_threshold is not None and segmentation.lesion_probability is not None:
        unfiltered = segmentation.labels
        probability = segmentation.lesion_probability.astype(np.float32) / 255.0
        labels, notes = drop_unconfident_lesions(unfiltered, probability, lesion_threshold)
        segmentation = replace(segmentation, labels=labels, notes=segmentation.notes + notes)
    result = measure(segmentation, reference, progress)
    result.seconds = {**segmentation.seconds, **result.seconds}
    result.unfiltered_labels = unfiltered
    return result


def measure(segmentation: Segmentation, reference: GroundTruth | None = None, progress: Progress | None = None) -> Result:
    """The measuring half of ``run``, for labels that exist already (``python -m core lesions``)."""
    report = progress or (lambda stage, fraction: None)
    seconds = {}
    start = time.perf_counter()
    report("lesions", 0.0)
    lesions = analyse_lesions(segmentation.labels, segmentation.scan, segmentation.lesion_probability)
    seconds["lesions"] = time.perf_counter() - start
    result = Result(segmentation, lesions, seconds=seconds)
    if reference is not None:
        start = time.perf_counter()
        report("metrics", 0.0)
        result.metrics = result.score(reference)
        seconds["metrics"] = time.perf_counter() - start
    return result

