"""Results in words: the metric explanations, the lesion table's headings, and the one-page HTML report.

The page and the report share these so that a number is named and explained
the same way everywhere. The report is one self-contained HTML file (key slices
embedded as PNG), readable offline and printable to one page.
"""

from __future__ import annotations

import base64
import datetime
import html
import math

import numpy as np

from core.evaluation.lesions import LesionReport
from core.evaluation.metrics import DETECTION_KEYS, STRUCTURE_KEYS
from core.segmentation import Segmentation
from core.viewing.numbers import MISSING, cell
from core.viewing.slices import PLANES, DisplayVolume, SliceImage, View, legend, render

#: The longer side of the report's slice pictures (pixels): shown 320 px high, so that a lesion of a few mm is still seen.
REPORT_PIXELS = 512
#: ... and at least this many, however small the scan.
MIN_REPORT_PIXELS = 256
#: The report lists the largest lesions only, so that it stays one page.
MAX_REPORT_LESIONS = 15
NOT_FOR_CLINICAL_USE = "Research tool, not for clinical use: these results have not been checked by a clinician."

#: Metric key -> (name, what it means in plain words).
METRIC_WORDS = {
    "dice": ("Dice", "Overlap of the model's and the reference's region, from 0 (none) to 1 (identical)."),
    "jaccard": ("Jaccard", "Shared volume divided by the combined volume, from 0 to 1; stricter than Dice."),
    "sensitivity": ("Sensitivity", "Share of the reference region that the model found (1 = nothing missed)."),
    "specificity": ("Specificity", "Share of everything outside the reference that the model left out (1 = no false alarms)."),
    "precision": ("Precision", "Share of the model's region that is really there in the reference (1 = no false alarms)."),
    "hd_mm": ("Hausdorff distance (mm)", "The largest gap between the two outlines: the single worst boundary error."),
    "hd95_mm": ("95% Hausdorff distance (mm)", "The boundary gap that 95% of the outline stays within; ignores a few stray points."),
    "assd_mm": ("Average surface distance (mm)", "How far the model's outline is from the reference's, on average."),
    "volume_diff_ml": ("Volume difference (mL)", "Model's volume minus the reference's: positive means the model found more."),
    "volume_diff_pct": ("Volume difference (%)", "The same difference as a percentage of the reference volume."),
}
DETECTION_WORDS = {
    "reference_lesions": ("Lesions in the reference", "Separate lesions drawn in the reference."),
    "predicted_lesions": ("Lesions found by the model", "Separate lesions the model marked: the page's and the table's count."),
    "true_positives": ("Reference lesions found", "Counted on the reference: its lesions that a model lesion touches at least in part."),
    "confirmed": ("Model lesions confirmed", "Counted on the model: its lesions that touch a reference lesion."),
    "false_positives": ("False alarms", "Counted on the model: its lesions that touch no reference lesion."),
    "missed": ("Missed", "Counted on the reference: its lesions that no model lesion touches."),
    "recall": ("Detection rate", "Reference lesions found divided by the lesions in the reference (both counted on the reference)."),
    "precision": ("Detection precision", "Model lesions confirmed divided by the lesions the model found (both counted on the model)."),
    "f1": ("Detection F1", "The harmonic mean of detection rate and precision, from 0 (none right) to 1 (all right)."),
}
#: ``LesionReport.rows()`` key -> heading shown to people.
LESION_HEADINGS = {
    "id": "Lesion",
    "volume_ml": "Volume (mL)",
    "longest_axial_diameter_mm": "Longest diameter (mm)",
    "mean_hu": "Mean density (HU)",
    "confidence": "Confidence",
    "slices": "Axial slices",
}


def lesion_table(report: LesionReport) -> list[dict]:
    """The lesion table for people: ``LESION_HEADINGS`` columns, slices numbered from 1 as in the viewer."""
    return [
        {
            LESION_HEADINGS["id"]: row["id"],
            LESION_HEADINGS["volume_ml"]: row["volume_ml"],
            LESION_HEADINGS["longest_axial_diameter_mm"]: row["longest_axial_diameter_mm"],
            LESION_HEADINGS["mean_hu"]: row["mean_hu"],
            LESION_HEADINGS["confidence"]: MISSING if row["confidence"] is None else row["confidence"],
            LESION_HEADINGS["slices"]: f"{row['first_slice'] + 1}–{row['last_slice'] + 1}",
        }
        for row in report.rows()
    ]


def metrics_table(metrics: dict) -> list[dict]:
    """``core.evaluation.metrics.evaluate``'s result as rows: measure, liver, lesions, what it means."""
    return [
        {
            "Measure": METRIC_WORDS[key][0],
            "Liver": metrics["liver"][key],
            "Lesions": metrics["lesion"][key],
            "What it means": METRIC_WORDS[key][1],
        }
        for key in STRUCTURE_KEYS
    ]


def detection_table(metrics: dict) -> list[dict]:
    """Lesion-wise detection counts and rates as rows: measure, value, what it means."""
    return [
        {"Measure": DETECTION_WORDS[key][0], "Value": metrics["lesion_detection"][key], "What it means": DETECTION_WORDS[key][1]}
        for key in DETECTION_KEYS
    ]


def _picture(image: SliceImage) -> bytes:
    """PNG bytes at least ``MIN_REPORT_PIXELS`` on the longer side: a small scan's slices are enlarged (voxels kept sharp)."""
    height, width = image.rgb.shape[:2]
    factor = math.ceil(MIN_REPORT_PIXELS / max(height, width))
    if factor > 1:
        image = SliceImage(np.repeat(np.repeat(image.rgb, factor, axis=0), factor, axis=1), image.pixel_mm / factor)
    return image.png()


def _table(rows: list[dict], cell=cell) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(str(key))}</th>" for key in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row.values()) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(
    segmentation: Segmentation,
    lesions: LesionReport,
    volume: DisplayVolume,
    metrics: dict | None = None,
    notes: list[str] | None = None,
) -> str:
    """A one-page, self-contained HTML report of one segmentation.

    Args:
        segmentation: the result (its scan, model, device and timings are reported).
        lesions: ``core.evaluation.lesions.analyse_lesions`` of it.
        volume: the same scan and labels for display (with the reference, if any, outlined).
        metrics: ``core.evaluation.metrics.evaluate`` against a reference, if there is one.
        notes: what the reader must know (e.g. an assumed voxel size), shown under the volumes.
    """
    scan = segmentation.scan
    view = View(opacity=0.35)
    focus = volume.focus()
    images = "".join(
        f'<figure><img alt="{plane} slice" src="data:image/png;base64,'
        f'{base64.b64encode(_picture(render(volume, plane, volume.slice_through(plane, focus), view, max_pixels=REPORT_PIXELS))).decode()}">'
        f"<figcaption>{plane.capitalize()}, slice {volume.slice_through(plane, focus) + 1} of {volume.slice_count(plane)}</figcaption></figure>"
        for plane in PLANES
    )
    key = "".join(
        f'<span class="swatch" style="{"border:3px solid " if outline else "background:"}rgb{colour}"></span>{html.escape(words)} '
        for colour, words, outline in legend(view, volume.reference is not None)
    )
    rows = lesion_table(lesions)
    more = len(rows) - MAX_REPORT_LESIONS
    burden = MISSING if lesions.burden_pct is None else f"{lesions.burden_pct:.1f} %"
    seconds = sum(segmentation.seconds.values())
    facts = [
        ("Scan", scan.source or "uploaded scan"),
        ("Grid", f"{' × '.join(map(str, scan.shape))} voxels of {' × '.join(f'{s:.2f}' for s in scan.spacing)} mm"),
        ("Model", segmentation.model or MISSING),
        ("Run", f"{segmentation.device.upper() or MISSING}, {seconds:.1f} s"),
        ("Report made", datetime.datetime.now().strftime("%Y-%m-%d %H:%M")),
    ]
    sections = [
        f"<h1>Liver segmentation report</h1><p class=warning>{html.escape(NOT_FOR_CLINICAL_USE)}</p>",
        "".join(f"<p class=warning>{html.escape(warning)}</p>" for warning in segmentation.warnings),
        "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts) + "</dl>",
        f'<div class="numbers"><div><b>{lesions.liver_ml:,.0f} mL</b>liver volume</div>'
        f"<div><b>{len(lesions.lesions)}</b>lesions</div><div><b>{lesions.lesion_ml:.1f} mL</b>lesion volume</div>"
        f"<div><b>{burden}</b>tumour burden (lesion share of the liver)</div></div>",
        "".join(f"<p class=note>{html.escape(note)}</p>" for note in (notes or []) + list(segmentation.notes)),
        f'<div class="slices">{images}</div><p class=legend>{key}</p>',
        "<h2>Lesions</h2>" + _table(rows[:MAX_REPORT_LESIONS], cell=str)
        + (f"<p class=note>… and {more} smaller lesions: the lesion table (CSV) lists them all.</p>" if more > 0 else ""),
    ]
    if metrics is not None:
        sections.append("<h2>Agreement with the reference</h2>" + _table(metrics_table(metrics)))
        sections.append(_table(detection_table(metrics)))
        sections += [f"<p class=note>{html.escape(note)}</p>" for note in metrics.get("notes", [])]
    return _PAGE.format(title=html.escape(f"LiverSeg report: {scan.source or 'scan'}"), body="\n".join(sections))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 13px/1.4 system-ui, sans-serif; color: #1b2631; max-width: 1100px; margin: 16px auto; padding: 0 16px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 16px; margin: 14px 0 4px; }}
.warning {{ background: #fdecea; border-left: 4px solid #c0392b; padding: 6px 10px; font-weight: 600; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 2px 12px; margin: 8px 0; }} dt {{ color: #566573; }} dd {{ margin: 0; }}
.numbers {{ display: flex; gap: 24px; margin: 8px 0; }} .numbers b {{ display: block; font-size: 20px; }}
.note {{ color: #566573; font-style: italic; margin: 2px 0; }}
.slices {{ display: flex; gap: 8px; align-items: flex-end; }} figure {{ margin: 0; }} img {{ max-width: 100%; height: 320px; object-fit: contain; background: #000; }}
figcaption {{ text-align: center; color: #566573; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; box-sizing: border-box; }}
table {{ border-collapse: collapse; margin: 4px 0; }} th, td {{ border: 1px solid #d5dbdb; padding: 2px 8px; text-align: left; }} th {{ background: #f2f5f7; }}
@media print {{ body {{ margin: 0; }} }}
</style></head>
<body>
{body}
</body></html>
"""
