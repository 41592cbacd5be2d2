import numpy as np
import pytest

from core import config
from core.postprocessing.cleanup import postprocess


def liver_box(shape=(30, 30, 20)):
    labels = np.zeros(shape, np.uint8)
    labels[5:20, 5:20, 5:15] = 1
    return labels


def test_clean_labels_pass_unchanged():
    labels = liver_box()
    labels[8:12, 8:12, 8:12] = 2
    cleaned, notes = postprocess(labels, (2.0, 2.0, 2.0))
    np.testing.assert_array_equal(cleaned, labels)
    assert notes == [] and cleaned.dtype == np.uint8


def test_only_the_largest_liver_component_is_kept_with_its_lesions():
    labels = liver_box()
    labels[25:28, 25:28, 2:4] = 1  # a fragment in the spleen, say
    labels[24:27, 2:5, 16:19] = 2  # a "lesion" far from the liver
    labels[8:12, 8:12, 8:12] = 2
    cleaned, notes = postprocess(labels, (2.0, 2.0, 2.0))
    expected = liver_box()
    expected[8:12, 8:12, 8:12] = 2
    np.testing.assert_array_equal(cleaned, expected)
    assert notes == ["removed 2 region(s) apart from the liver (0.4 mL)"]  # 18 + 27 voxels of 8 mm3


@pytest.mark.parametrize("spacing, kept", [((1.0, 1.0, 1.0), True), ((5.0, 1.0, 1.0), False)])
def test_lesions_just_outside_the_liver_are_kept_within_the_margin_in_mm(spacing, kept, monkeypatch):
    monkeypatch.setattr(config, "LESION_MARGIN_MM", 3.0)
    monkeypatch.setattr(config, "MIN_LESION_ML", 0.0)
    labels = liver_box()
    labels[21:23, 10:13, 8:11] = 2  # the liver ends at 19: voxels 2 and 3 steps away, 2-3 mm or 10-15 mm
    cleaned, notes = postprocess(labels, spacing)
    assert bool(np.all(cleaned[21:23, 10:13, 8:11] == 2)) is kept
    assert not cleaned[20].any()
    assert (notes == ["removed 1 region(s) apart from the liver (0.1 mL)"]) is not kept  # 18 voxels of 5 mm3


@pytest.mark.parametrize("spacing, kept", [((2.0, 2.0, 2.0), False), ((3.0, 3.0, 3.0), True)])
def test_lesion_specks_below_the_minimum_volume_become_liver(spacing, kept, monkeypatch):
    monkeypatch.setattr(config, "MIN_LESION_ML", 0.1)
    labels = liver_box()
    labels[8:10, 8:10, 8:10] = 2  # 8 voxels: 0.064 mL at 2 mm, 0.216 mL at 3 mm
    cleaned, notes = postprocess(labels, spacing)
    assert np.all(cleaned[8:10, 8:10, 8:10] == (2 if kept else 1))
    assert (notes == ["dropped 1 lesion speck(s) smaller than 0.1 mL"]) is not kept


def test_no_liver_gives_an_empty_map_and_says_so():
    labels = np.zeros((10, 10, 10), np.uint8)
    cleaned, notes = postprocess(labels, (1.0, 1.0, 1.0))
    assert not cleaned.any() and notes == ["no liver was found in this scan"]


def test_lesions_below_the_confidence_threshold_become_liver():
    from core.postprocessing.cleanup import drop_unconfident_lesions, lesion_confidences

    labels = liver_box()
    labels[6:9, 6:9, 6:9] = 2  # a confident lesion
    labels[14:17, 14:17, 10:13] = 2  # an unsure one
    probability = np.zeros(labels.shape, np.float32)
    probability[6:9, 6:9, 6:9] = 0.9
    probability[14:17, 14:17, 10:13] = 0.45
    probability[14, 14, 10] = 0.9  # one sure voxel does not make the lesion sure: the mean counts
    _, confidences = lesion_confidences(labels, probability)
    assert sorted(np.round(confidences, 3)) == [round((26 * 0.45 + 0.9) / 27, 3), 0.9]
    cleaned, notes = drop_unconfident_lesions(labels, probability, threshold=0.5)
    assert (cleaned[6:9, 6:9, 6:9] == 2).all() and (cleaned[14:17, 14:17, 10:13] == 1).all()
    assert notes == ["dropped 1 lesion(s) with confidence below 0.50 (the model card's threshold)"]
    unchanged, notes = drop_unconfident_lesions(labels, probability, threshold=0.4)
    np.testing.assert_array_equal(unchanged, labels)
    assert notes == []
