"""core.pipeline: one path from a scan to a result, each measure computed once."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from core import pipeline
from core.evaluation.lesions import analyse_lesions
from core.evaluation.metrics import evaluate
from core.imageio.ground_truth import GroundTruth
from core.scan import Scan
from core.segmentation import LESION, LIVER, Segmentation
from tests.helpers.phantom import make_phantom


class Known:
    """A segmenter that returns fixed labels (and a lesion probability): the pipeline needs only ``segment``."""

    def __init__(self, labels: np.ndarray, probability: np.ndarray | None = None) -> None:
        self.labels, self.probability = labels, probability

    def segment(self, scan: Scan, progress=None) -> Segmentation:
        if progress:
            progress("infer", 1.0)
        return Segmentation(self.labels.copy(), scan, model="known", seconds={"infer": 0.5}, warnings=["odd liver"],
                            notes=["a note"], lesion_probability=self.probability)


@pytest.fixture(scope="module")
def case() -> tuple[Scan, np.ndarray]:
    return make_phantom(shape=(48, 40, 32), lesions=3)


def test_a_result_holds_labels_lesions_warnings_notes_and_seconds(case):
    scan, labels = case
    stages = []
    result = pipeline.run(scan, Known(labels), progress=lambda stage, fraction: stages.append(stage))
    assert result.scan is scan and np.array_equal(result.labels, labels)
    assert result.metrics is None
    assert result.warnings == ["odd liver"] and result.notes == ["a note"]
    expected = analyse_lesions(labels, scan)
    assert [lesion.volume_ml for lesion in result.lesions.lesions] == [lesion.volume_ml for lesion in expected.lesions]
    assert result.lesions.liver_ml == pytest.approx(np.count_nonzero(labels) * scan.voxel_volume_ml)
    assert set(result.seconds) == {"infer", "lesions"} and result.seconds["infer"] == 0.5
    assert stages == ["infer", "lesions"]


def test_with_a_reference_the_metrics_are_those_of_evaluate_and_lesions_are_labelled_once(case, monkeypatch):
    scan, labels = case
    reference = np.roll(labels, 2, axis=0)
    expected = evaluate(labels, reference, scan.spacing)
    calls = []
    label = ndimage.label
    monkeypatch.setattr(ndimage, "label", lambda *args, **kwargs: calls.append(1) or label(*args, **kwargs))
    result = pipeline.run(scan, Known(labels), reference=GroundTruth(reference, liver_only=False))
    assert result.metrics == expected
    assert len(calls) == 2  # the prediction's lesions once (table and detection share them), the reference's once
    assert "metrics" in result.seconds


def test_a_liver_only_reference_gives_no_lesion_scores(case):
    scan, labels = case
    liver_only = np.where(labels == LESION, LIVER, labels).astype(np.uint8)
    result = pipeline.run(scan, Known(labels), reference=GroundTruth(liver_only, liver_only=True))
    assert result.metrics["lesion"]["dice"] is None and result.metrics["liver"]["dice"] == pytest.approx(1.0)


def test_a_lesion_threshold_of_its_own_keeps_the_unfiltered_labels(case):
    scan, labels = case
    probability = np.where(labels == LESION, 80, 0).astype(np.uint8)  # every lesion at confidence 80/255 = 0.31
    kept = pipeline.run(scan, Known(labels, probability), lesion_threshold=0.3)
    assert np.array_equal(kept.labels, labels) and np.array_equal(kept.unfiltered_labels, labels)
    dropped = pipeline.run(scan, Known(labels, probability), lesion_threshold=0.5)
    assert not np.any(dropped.labels == LESION) and dropped.lesions.lesions == []
    assert np.array_equal(dropped.unfiltered_labels, labels)
    count = len(analyse_lesions(labels, scan).lesions)
    assert any(f"dropped {count} lesion(s)" in note for note in dropped.notes)
    assert pipeline.run(scan, Known(labels, probability)).unfiltered_labels is None


def test_measure_labels_that_exist_already(case):
    scan, labels = case
    result = pipeline.measure(Segmentation(labels, scan))
    assert len(result.lesions.lesions) == len(analyse_lesions(labels, scan).lesions) and result.metrics is None


def test_the_memory_a_segmentation_kept_is_released_even_when_it_fails(case, monkeypatch):
    scan, labels = case
    released = []
    monkeypatch.setattr(pipeline.allocator, "release", lambda: released.append(True))
    pipeline.run(scan, Known(labels))

    class Failing(Known):
        def segment(self, scan, progress=None):
            raise MemoryError

    with pytest.raises(MemoryError):
        pipeline.run(scan, Failing(labels))
    assert released == [True, True]
