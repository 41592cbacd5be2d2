"""Segmentation metrics: overlap, surface distance, volume and lesion-wise detection.

One function per metric, each on two boolean masks of the same shape plus the
voxel size in mm along each array axis, in the manner of MONAI's metric
functions; ``evaluate`` scores a label map against a reference in the JSON
contract of the command line (``python -m core evaluate --json``).

Definitions (MedPy's, which the LiTS challenge scored with):

- *Surface*: the mask voxels that touch the background by a face, i.e. the mask
  minus its erosion with the 6-connected structuring element. Voxels on the edge
  of the array count as surface (the outside is background).
- *Directed surface distances* from A to B: for each surface voxel of A, the
  Euclidean distance in mm (voxel centre to voxel centre) to the nearest surface
  voxel of B.
- *Hausdorff distance* (``hausdorff_mm``): the largest directed distance, both ways.
- *HD95* (``hausdorff95_mm``): the 95th percentile (linear interpolation, numpy's
  default) of both directed distance sets pooled together.
- *ASSD* (``assd_mm``): the mean of the two directed mean distances.

Edge cases (one rule for every metric): a metric is ``None`` (JSON ``null``)
exactly when its formula is undefined, i.e. it divides by an empty count or
measures the distance to an empty surface; the one exception is that two empty
masks agree perfectly, so Dice and Jaccard are 1.0 and the surface distances
0.0 (the LiTS per-case convention for Dice). In full:

================  ===============  ===============  ===============
metric            empty pred only  empty ref only   both empty
================  ===============  ===============  ===============
dice, jaccard     0.0              0.0              1.0
sensitivity       0.0              None             None
precision         None             0.0              None
specificity       from TN, FP      from TN, FP      1.0
distances (mm)    None             None             0.0
volume_diff_ml    -ref volume      +pred volume     0.0
volume_diff_pct   -100.0           None             None
================  ===============  ===============  ===============

(The LiTS evaluation script reported ASSD 0 when one mask is empty; that hides
a complete miss, so here it is ``None``. Specificity is ``None`` only when the
reference fills the whole array.)

Distances assume the array axes are orthogonal (any scanner grid that is not
sheared); ``spacing`` is the voxel size along each array axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from core.affine import MM3_PER_ML
from core.segmentation import BACKGROUND, LESION, LESION_CONNECTIVITY

Spacing = tuple[float, float, float]

#: Keys of every structure's entry in ``evaluate``'s result, in table order.
STRUCTURE_KEYS = (
    "dice",
    "jaccard",
    "sensitivity",
    "specificity",
    "precision",
    "hd_mm",
    "hd95_mm",
    "assd_mm",
    "volume_diff_ml",
    "volume_diff_pct",
)
#: Keys of ``evaluate``'s lesion-wise detection entry.
DETECTION_KEYS = ("reference_lesions", "predicted_lesions", "true_positives", "confirmed", "false_positives", "missed", "recall",
                  "precision", "f1")
#: Face (6-) connectivity, which defines the surface.
_FACE = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class _Counts:
    """Voxel confusion counts of a prediction against a reference."""

    tp: int
    fp: int
    fn: int
    tn: int


def _counts(prediction: np.ndarray, reference: np.ndarray) -> _Counts:
    _check_pair(prediction, reference)
    tp = int(np.count_nonzero(prediction & reference))
    predicted, actual = int(np.count_nonzero(prediction)), int(np.count_nonzero(reference))
    fp, fn = predicted - tp, actual - tp
    return _Counts(tp, fp, fn, prediction.size - tp - fp - fn)


def _check_pair(prediction: np.ndarray, reference: np.ndarray) -> None:
    if prediction.shape != reference.shape:
        raise ValueError(f"prediction {prediction.shape} and reference {reference.shape} must share one grid")
    if prediction.dtype != bool or reference.dtype != bool:
        raise TypeError("metrics take boolean masks; compare labels first (labels == value)")


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _voxel_scores(c: _Counts, spacing: Spacing) -> dict[str, float | None]:
    """The metrics that need only the confusion counts: one formula each, shared by the functions below."""
    disagreement = c.fp + c.fn
    return {
        # Two empty masks agree perfectly (the module's one exception to "undefined is None").
        "dice": 2 * c.tp / (2 * c.tp + disagreement) if c.tp + disagreement else 1.0,
        "jaccard": c.tp / (c.tp + disagreement) if c.tp + disagreement else 1.0,
        "sensitivity": _ratio(c.tp, c.tp + c.fn),
        "specificity": _ratio(c.tn, c.tn + c.fp),
        "precision": _ratio(c.tp, c.tp + c.fp),
        "volume_diff_ml": (c.fp - c.fn) * float(np.prod(spacing)) / MM3_PER_ML,
        "volume_diff_pct": _ratio(100 * (c.fp - c.fn), c.tp + c.fn),
    }


def _score(prediction: np.ndarray, reference: np.ndarray, key: str, spacing: Spacing = (1.0, 1.0, 1.0)) -> float | None:
    return _voxel_scores(_counts(prediction, reference), spacing)[key]


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice similarity coefficient 2|P∩R| / (|P|+|R|), unitless in [0, 1]; 1.0 when both masks are empty."""
    return _score(prediction, reference, "dice")


def jaccard(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Jaccard index (IoU) |P∩R| / |P∪R|, unitless in [0, 1]; 1.0 when both masks are empty."""
    return _score(prediction, reference, "jaccard")


def sensitivity(prediction: np.ndarray, reference: np.ndarray) -> float | None:
    """Sensitivity (recall) TP / (TP + FN), in [0, 1]; ``None`` when the reference is empty."""
    return _score(prediction, reference, "sensitivity")


def specificity(prediction: np.ndarray, reference: np.ndarray) -> float | None:
    """Specificity TN / (TN + FP), in [0, 1]; ``None`` when the reference fills the array."""
    return _score(prediction, reference, "specificity")


def precision(prediction: np.ndarray, reference: np.ndarray) -> float | None:
    """Precision (positive predictive value) TP / (TP + FP), in [0, 1]; ``None`` when the prediction is empty."""
    return _score(prediction, reference, "precision")


def volume_difference_ml(prediction: np.ndarray, reference: np.ndarray, spacing: Spacing) -> float:
    """Signed volume difference prediction − reference in mL (positive: over-segmentation). Always defined."""
    return _score(prediction, reference, "volume_diff_ml", spacing)


def volume_difference_pct(prediction: np.ndarray, reference: np.ndarray) -> float | None:
    """Signed relative volume difference 100 (|P| − |R|) / |R| in %; ``None`` when the reference is empty."""
    return _score(prediction, reference, "volume_diff_pct")


def _crop_to_union(prediction: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union (views; unchanged when both are empty)."""
    boxes = ndimage.find_objects((prediction | reference).view(np.uint8))
    return (prediction[boxes[0]], reference[boxes[0]]) if boxes else (prediction, reference)


def surface_distances(prediction: np.ndarray, reference: np.ndarray, spacing: Spacing) -> tuple[np.ndarray, np.ndarray] | None:
    """Directed surface distances in mm: (prediction → reference, reference → prediction).

    ``None`` when exactly one mask is empty (the distance to nothing is undefined);
    two empty arrays when both are. Works on the bounding box of both masks, which
    gives the same surfaces and distances as the whole array (every surface voxel
    lies in the box) at a fraction of the cost.
    """
    _check_pair(prediction, reference)
    spacing = tuple(float(s) for s in spacing)
    prediction, reference = _crop_to_union(prediction, reference)
    if not prediction.any() and not reference.any():
        return np.zeros(0), np.zeros(0)
    if not prediction.any() or not reference.any():
        return None
    # Erosion takes the outside of the array as background, so voxels on the edge of
    # the array (and of the box, where only the array's edge can cut a mask) are surface, as in MedPy.
    prediction_surface, reference_surface = (mask & ~ndimage.binary_erosion(mask, _FACE) for mask in (prediction, reference))
    to_reference = ndimage.distance_transform_edt(~reference_surface, sampling=spacing)[prediction_surface]
    to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=spacing)[reference_surface]
    return to_reference, to_prediction


def _distance_summary(distances: tuple[np.ndarray, np.ndarray] | None) -> dict[str, float | None]:
    if distances is None:
        return {"hd_mm": None, "hd95_mm": None, "assd_mm": None}
    to_reference, to_prediction = distances
    if not to_reference.size:  # both masks empty: they agree perfectly
        return {"hd_mm": 0.0, "hd95_mm": 0.0, "assd_mm": 0.0}
    pooled = np.concatenate([to_reference, to_prediction])
    return {
        "hd_mm": float(pooled.max()),
        "hd95_mm": float(np.percentile(pooled, 95)),
        "assd_mm": float((to_reference.mean() + to_prediction.mean()) / 2),
    }


def hausdorff_mm(prediction: np.ndarray, reference: np.ndarray, spacing: Spacing) -> float | None:
    """Symmetric Hausdorff distance between the surfaces, in mm (see the module's edge-case table)."""
    return _distance_summary(surface_distances(prediction, reference, spacing))["hd_mm"]


def hausdorff95_mm(prediction: np.ndarray, reference: np.ndarray, spacing: Spacing) -> float | None:
    """95th percentile of both directed surface-distance sets pooled (MedPy's ``hd95``), in mm."""
    return _distance_summary(surface_distances(prediction, reference, spacing))["hd95_mm"]


def assd_mm(prediction: np.ndarray, reference: np.ndarray, spacing: Spacing) -> float | None:
    """Average symmetric surface distance: the mean of the two directed mean distances (MedPy's ``assd``), in mm."""
    return _distance_summary(surface_distances(prediction, reference, spacing))["assd_mm"]


def structure_metrics(prediction: np.ndarray, reference: np.ndarray, spacing: Spacing) -> dict[str, float | None]:
    """Every metric of one structure, keyed and ordered as ``STRUCTURE_KEYS``, counting and measuring once."""
    scores = _voxel_scores(_counts(prediction, reference), spacing)
    scores.update(_distance_summary(surface_distances(prediction, reference, spacing)))
    return {key: scores[key] for key in STRUCTURE_KEYS}


def lesion_detection(prediction: np.ndarray, reference: np.ndarray,
                     prediction_components: tuple[np.ndarray, int] | None = None) -> dict[str, float | int | None]:
    """Lesion-wise detection: lesions are 26-connected components of each mask.

    Rule: a reference lesion is *detected* (a true positive, counted on the reference)
    when at least one predicted lesion voxel overlaps it, and *missed* otherwise; a
    predicted lesion is *confirmed* (counted on the model) when it overlaps a reference
    lesion voxel, and a *false positive* otherwise. So a lesion found in two pieces
    counts once on the reference and twice on the model, and one predicted blob that
    covers two reference lesions detects both. Each rate keeps to one side: recall =
    TP / reference lesions, precision = confirmed / predicted lesions (so it matches
    "the model's lesions that are real"), F1 = their harmonic mean. Recall is ``None``
    without reference lesions, precision ``None`` without predicted lesions, and F1
    1.0 when neither mask has a lesion, 0.0 when only one has.

    ``prediction_components``: ``prediction``'s components as ``ndimage.label`` gives them, when
    they are labelled already (``core.evaluation.lesions.LesionReport.components``).
    """
    _check_pair(prediction, reference)
    if prediction_components is None:
        prediction, reference = _crop_to_union(prediction, reference)  # components lie inside the box: same counts, less work
        prediction_components = ndimage.label(prediction, LESION_CONNECTIVITY)
    components, prediction_count = prediction_components
    reference_components, reference_count = ndimage.label(reference, LESION_CONNECTIVITY)
    both = prediction & reference
    true_positives = len(np.unique(reference_components[both]))
    false_positives = prediction_count - len(np.unique(components[both]))
    missed = reference_count - true_positives
    recall, precision = _ratio(true_positives, reference_count), _ratio(prediction_count - false_positives, prediction_count)
    if recall is None and precision is None:
        f1 = 1.0
    elif not recall or not precision:
        f1 = 0.0
    else:
        f1 = 2 * recall * precision / (recall + precision)
    return {
        "reference_lesions": reference_count,
        "predicted_lesions": prediction_count,
        "true_positives": true_positives,
        "confirmed": prediction_count - false_positives,
        "false_positives": false_positives,
        "missed": missed,
        "recall": recall,
        "precision": precision,
        "f1": f1,
    }


def evaluate(
    prediction_labels: np.ndarray,
    reference_labels: np.ndarray,
    spacing: Spacing,
    liver_only: bool = False,
    prediction_components: tuple[np.ndarray, int] | None = None,
) -> dict:
    """Score a label map (0 background, 1 liver, 2 lesion) against a reference on the same grid.

    Args:
        prediction_labels: predicted labels.
        reference_labels: reference labels; 0/1/2, or a binary liver mask.
        spacing: voxel size in mm along each array axis.
        liver_only: ``True`` when the reference is a liver-only mask:
            lesion and detection values are then ``None`` and a note says why.
        prediction_components: the predicted lesions' components, when labelled already
            (``lesion_detection``).

    Returns:
        ``{"liver": {...}, "lesion": {...}, "lesion_detection": {...}, "notes": [...]}``.
        Liver is labels 1 and 2 together (as LiTS scores it), lesion is label 2;
        each has the keys ``STRUCTURE_KEYS``, detection the keys ``DETECTION_KEYS``,
        ``None`` where undefined (see the module docstring). ``notes`` lists what
        the reader should know (empty when nothing).
    """
    notes: list[str] = []
    result = {"liver": structure_metrics(prediction_labels > BACKGROUND, reference_labels > BACKGROUND, spacing)}
    if not liver_only:
        prediction_lesions, reference_lesions = prediction_labels == LESION, reference_labels == LESION
        result["lesion"] = structure_metrics(prediction_lesions, reference_lesions, spacing)
        result["lesion_detection"] = lesion_detection(prediction_lesions, reference_lesions, prediction_components)
    else:
        result["lesion"] = dict.fromkeys(STRUCTURE_KEYS)
        result["lesion_detection"] = dict.fromkeys(DETECTION_KEYS)
        notes.append("lesion metrics not available: the reference is a liver-only mask (no lesion label)")
    result["notes"] = notes
    return result


#: The headline scores of a held-out case, as a model card and a cross-validation report list them.
SUMMARY_KEYS = ("liver_dice", "liver_hd95_mm", "liver_volume_diff_pct", "lesion_dice", "lesion_hd95_mm",
                "lesion_volume_diff_pct", "lesion_recall", "lesion_precision", "reference_lesions", "predicted_lesions")


def summary(result: dict) -> dict[str, float | int | None]:
    """``evaluate``'s result flattened to ``SUMMARY_KEYS`` (``liver_dice`` is ``result["liver"]["dice"]``, ...)."""
    detection = result["lesion_detection"]
    return {
        **{f"{structure}_{key}": result[structure][key] for structure in ("liver", "lesion")
           for key in ("dice", "hd95_mm", "volume_diff_pct")},
        "lesion_recall": detection["recall"], "lesion_precision": detection["precision"],
        "reference_lesions": detection["reference_lesions"], "predicted_lesions": detection["predicted_lesions"],
    }


def format_evaluation(result: dict) -> str:
    """``evaluate``'s result as a plain-text table for the terminal (``n/a`` where undefined)."""

    def shown(key: str, value: float | None) -> str:
        if value is None:
            return "n/a"
        return f"{value:.2f}" if key.endswith(("_mm", "_ml", "_pct")) else f"{value:.4f}"

    lines = [f"{'':16}{'liver':>10}{'lesion':>10}"]
    lines += [f"{key:16}{shown(key, result['liver'][key]):>10}{shown(key, result['lesion'][key]):>10}" for key in STRUCTURE_KEYS]
    detection = result["lesion_detection"]
    if detection["reference_lesions"] is not None:
        lines.append(
            f"lesion detection: {detection['true_positives']} of {detection['reference_lesions']} reference lesions found, "
            f"{detection['missed']} missed, {detection['false_positives']} false positive(s) "
            f"(of {detection['predicted_lesions']} predicted); recall {shown('', detection['recall'])}, "
            f"precision {shown('', detection['precision'])}, F1 {shown('', detection['f1'])}"
        )
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)
