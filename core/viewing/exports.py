"""What the Segment page offers for download, as bytes: label map, metrics tables.

The lesion table comes from ``core.evaluation.lesions.LesionReport.to_csv`` and the report
from ``core.viewing.report.html_report``; this module adds the files that need a format
of their own.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from core.evaluation.metrics import DETECTION_KEYS, STRUCTURE_KEYS
from core.imageio.nifti import write_labels
from core.segmentation import Segmentation


def label_map_nifti(segmentation: Segmentation, folder: Path) -> bytes:
    """The label map as ``.nii.gz`` bytes, on the scan's own grid and affine.

    Written through ``core.imageio.nifti.write_labels`` (the same file the command line writes)
    in a private temporary folder inside ``folder`` (the session's upload folder, so
    nothing derived from a user's scan lands anywhere else), then read back and removed.
    """
    with tempfile.TemporaryDirectory(dir=folder) as temporary:
        path = Path(temporary) / "labels.nii.gz"
        write_labels(segmentation.labels, segmentation.scan, path)
        return path.read_bytes()


def metrics_csv(metrics: dict) -> str:
    """``core.evaluation.metrics.evaluate``'s result as long CSV: ``structure,metric,value`` (empty where undefined)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["structure", "metric", "value"])
    for structure in ("liver", "lesion"):
        writer.writerows([structure, key, _cell(metrics[structure][key])] for key in STRUCTURE_KEYS)
    writer.writerows(["lesion_detection", key, _cell(metrics["lesion_detection"][key])] for key in DETECTION_KEYS)
    return buffer.getvalue()


def metrics_json(metrics: dict) -> str:
    """The metrics in the command line's JSON contract (``python -m core evaluate --json``)."""
    return json.dumps(metrics, indent=2, allow_nan=False)


def _cell(value) -> str:
    return "" if value is None else str(value)
