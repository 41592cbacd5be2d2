"""``Segmentation``: a label map on the grid of the ``Scan`` it was made from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the label vocabulary stays light (numpy only): core.model.card reads it
    from core.scan import Scan

BACKGROUND, LIVER, LESION = 0, 1, 2
LABEL_NAMES = {BACKGROUND: "background", LIVER: "liver", LESION: "lesion"}
#: Lesions are 26-connected components: voxels that share a face, an edge or a corner belong
#: together. The loosest 3-D connectivity, so a lesion that a thin or oblique neck joins across
#: a voxel corner is counted, measured and cleaned as one lesion, not as several specks; every
#: module that labels components (metrics, post-processing, the lesion table, the viewer's
#: focus) uses this one, so they all count the same lesions.
LESION_CONNECTIVITY = np.ones((3, 3, 3), bool)
#: ``progress(stage, fraction)``: how segmenting a scan reports its stages, each from 0 to 1.
Progress = Callable[[str, float], None]


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Labels 0 background, 1 liver, 2 lesion, voxel for voxel on ``scan``'s grid.

    Attributes:
        labels: uint8 array with exactly ``scan.shape``.
        scan: the scan the labels belong to (and whose affine they are written with).
        model: name of the model that produced it.
        model_version: that model's version (its card's ``created`` time), which a DICOM SEG
            records beside the name; empty for label maps read from disk.
        device: where inference ran (``"cuda"``, ``"cpu"``), after any fallback.
        seconds: wall time per stage (read, preprocess, infer, post-process, ...).
        notes: what the user should know (a CPU fallback, a dropped component).
        warnings: reasons to doubt the result (``core.postprocessing.anatomy``: an implausible liver volume
            or position), shown prominently, never silently.
        lesion_probability: the model's lesion probability on the scan's grid, 0-255 for
            0-1 (uint8 keeps a 512x512x500 scan at 131 MB), where the lesion confidences
            in ``core.evaluation.lesions`` come from; ``None`` for label maps read from disk.
    """

    labels: np.ndarray
    scan: Scan
    model: str = ""
    model_version: str = ""
    device: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lesion_probability: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.labels.shape != self.scan.voxels.shape:
            raise ValueError(f"labels {self.labels.shape} do not match scan {self.scan.voxels.shape}")
        if self.lesion_probability is not None and self.lesion_probability.shape != self.labels.shape:
            raise ValueError(f"lesion probabilities {self.lesion_probability.shape} do not match labels {self.labels.shape}")
