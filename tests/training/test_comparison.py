"""``compare-models``: every labelled case, each model scored only where it never saw the case."""

from __future__ import annotations

from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from core.inference.segmenter import Segmenter
from core.training import comparison
from core.training.comparison import CROSS_VALIDATED, SEEN, ZERO_SHOT, compare, markdown
from core.training.discovery import sha256
from tests.inference.test_segmenter import CARD, NearestIntensity, class_scan


@pytest.fixture
def data(tmp_path):
    """Two labelled phantom cases, NAME.nii.gz beside NAME_seg.nii.gz."""
    folder = tmp_path / "data"
    folder.mkdir()
    for seed, name in ((1, "alpha"), (2, "beta")):
        scan, labels = class_scan("RAS", seed=seed)
        hu = np.full(scan.shape, -1000.0, np.float32)  # air around the body, as in a CT
        hu[8:-8, 8:-8, :] = scan.voxels[8:-8, 8:-8, :]
        labels[hu == -1000] = 0
        nib.save(nib.Nifti1Image(hu, scan.affine), folder / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(labels.astype(np.uint8), scan.affine), folder / f"{name}_seg.nii.gz")
    return folder


def _use(monkeypatch, card):
    monkeypatch.setattr(comparison, "_segmenter", lambda model, device: Segmenter.from_network(NearestIntensity(card), card))


def test_a_case_the_model_trained_on_is_not_scored_as_if_unseen(data, monkeypatch):
    trained_on_alpha = replace(CARD, training={"data": [{"case": "alpha", "role": "training",
                                                         "image_sha256": sha256(data / "alpha.nii.gz")}]})
    _use(monkeypatch, trained_on_alpha)
    rows = {row["case"]: row for row in compare(["m"], [data], log=lambda line: None)}
    assert rows["alpha"]["measured"] == SEEN and "liver_dice" not in rows["alpha"]
    assert rows["beta"]["measured"] == ZERO_SHOT and rows["beta"]["liver_dice"] > 0.9
    table = markdown(list(rows.values()))
    assert "| alpha | m | trained on it | - |" in table and "| beta | m | never seen | 1.000 |" in table


def test_a_seen_case_takes_the_models_own_fold(data, monkeypatch):
    fold = {"case": "alpha", "liver_dice": 0.5, "liver_hd95_mm": 9.0, "lesion_dice": 0.25, "lesion_recall": 1.0,
            "lesion_precision": 0.5, "seconds": 3.0}
    card = replace(CARD, training={"data": [{"case": "alpha", "role": "training", "image_sha256": sha256(data / "alpha.nii.gz")}]},
                   metrics={"cross_validation": {"cases": [fold]}})
    _use(monkeypatch, card)
    rows = {row["case"]: row for row in compare(["m"], [data], log=lambda line: None)}
    assert rows["alpha"]["measured"] == CROSS_VALIDATED and rows["alpha"]["liver_dice"] == 0.5
