"""The slice viewer: a small Streamlit component that draws the scan and its labels in the browser.

Why a component and not a Plotly figure or server-drawn pictures: every display change
(plane, window, overlay, opacity, zoom, slice) must answer at once, and a server round
trip (a Streamlit rerun, new pictures) took 4-5 s on a 512 x 512 x 129 scan. Here the
browser gets the CT and the labels once as raw voxels (``core.viewing.viewer_volume``),
and ``slice_viewer.js`` (shipped in this repository: no CDN) cuts the planes, windows
and colours them, zooms, pans, links the planes by a crosshair, measures distances and
reads HU, position and label under the mouse. Streamlit's ``st.components.v2`` mounts it
straight into the page (no iframe), so it takes the keyboard focus and the theme's colours
like any widget.

Each pack travels as its own element (``slice_viewer_pack.js`` keeps its voxels for the
viewer): Streamlit's message cache then sends an unchanged pack once, and a jump to a
lesion resends a few bytes, not the scan.

The component reports nothing back: no display change reaches the server, so none can
rerun the page. The server chooses the point shown only when it has a reason to (a new
result, a lesion picked in the table): ``jump`` changes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import streamlit as st

from core.viewing import slices

_HERE = Path(__file__).parent
_PANE = """<div class="lsv-pane" data-plane="{plane}"><div class="lsv-stage"><canvas aria-label="CT, {plane}"></canvas>
  <span class="lsv-edge"></span><span class="lsv-edge"></span><span class="lsv-edge"></span><span class="lsv-edge"></span>
  <div class="lsv-readout" role="status" hidden></div></div></div>"""
_HTML = f"""<div class="lsv" tabindex="0" role="group"
  aria-label="Slice viewer: mouse wheel or arrow keys change the slice; Ctrl+wheel zooms; drag pans; right- or Shift-drag sets the window">
  <div class="lsv-tools">
    <span class="lsv-planes" role="radiogroup" aria-label="View">
      <button type="button" role="radio" data-plane="axial">Axial</button><button type="button" role="radio"
        data-plane="coronal">Coronal</button><button type="button" role="radio" data-plane="sagittal">Sagittal</button>
    </span>
    <label class="lsv-three" title="All three planes side by side (on a wide screen)"><input type="checkbox"> Three planes</label>
    <label>Window <select class="lsv-window" title="Which CT values (HU) span black to white; or right-drag on the picture"></select></label>
    <button type="button" class="lsv-measure" aria-pressed="false" title="Drag on the picture to measure a distance">Measure</button>
    <button type="button" class="lsv-reset" title="Back to the whole picture and the first window">Reset view</button>
  </div>
  <div class="lsv-panes">{"".join(_PANE.format(plane=plane) for plane in slices.PLANES)}</div>
  <div class="lsv-bar">
    <button type="button" class="lsv-back" title="Previous slice (arrow left or down)">&#8249; Back</button>
    <input type="range" class="lsv-slider" min="1" max="1" step="1" aria-label="Slice">
    <button type="button" class="lsv-next" title="Next slice (arrow right or up)">Next &#8250;</button>
  </div>
  <div class="lsv-caption" aria-live="polite"></div>
  <div class="lsv-layers">
    <span class="lsv-wl" title="The window: width and level in HU"></span>
    <label class="lsv-toggle-liver"><input type="checkbox"> Liver</label>
    <label class="lsv-toggle-lesions"><input type="checkbox"> Lesions</label>
    <label class="lsv-toggle-reference"><input type="checkbox"> Reference outlines</label>
    <label class="lsv-compare">Colours <select>
      <option value="result">The model's result</option><option value="liver">Agreement: liver</option>
      <option value="lesion">Agreement: lesions</option></select></label>
    <label>Opacity <input type="range" class="lsv-opacity" min="0" max="1" step="0.05" aria-label="Colour opacity"></label>
    <span class="lsv-distance" role="status"></span>
  </div>
  <div class="lsv-legend"></div>
  <div class="lsv-note"></div>
  <div class="lsv-help">Wheel or arrow keys: slices · Ctrl+wheel or pinch: zoom · drag: move · right- or Shift-drag: window
    · click: all planes to that point · hover: HU and label. The patient's right is on the picture's left.</div>
</div>"""

_viewer = st.components.v2.component(
    "liverseg_slice_viewer",
    html=_HTML,
    css=(_HERE / "slice_viewer.css").read_text(encoding="utf-8"),
    js=(_HERE / "slice_viewer.js").read_text(encoding="utf-8"),
    isolate_styles=False,  # class names are prefixed lsv-; the page's tests and benchmark reach the canvas directly
)
_pack = st.components.v2.component("liverseg_slice_viewer_pack", js=(_HERE / "slice_viewer_pack.js").read_text(encoding="utf-8"))

PLANE_TITLES = {"axial": "Axial (from the feet)", "coronal": "Coronal (from the front)", "sagittal": "Sagittal (from the side)"}


def _legend(**layers) -> list:
    return [[list(rgb), words, outline] for rgb, words, outline in slices.legend(slices.View(**layers), True)]


#: What the colours mean in each mode and layer (``core.viewing.slices.legend``'s words), for the browser's legend.
LEGEND = {
    "liver": _legend(liver=True, lesions=False, reference=False),
    "lesions": _legend(liver=False, lesions=True, reference=False),
    "reference": _legend(liver=False, lesions=False, reference=True),
    "agreement_liver": _legend(compare="liver"),
    "agreement_lesion": _legend(compare="lesion"),
}
COLOURS = {"liver": slices.LIVER_RGB, "lesion": slices.LESION_RGB, "referenceLiver": slices.REFERENCE_LIVER_RGB,
           "referenceLesion": slices.REFERENCE_LESION_RGB, "agree": slices.AGREE_RGB, "modelOnly": slices.MODEL_ONLY_RGB,
           "missed": slices.MISSED_RGB}


def _pack_id(pack: bytes) -> str:
    (length,) = struct.unpack_from("<I", pack)
    return json.loads(pack[4:4 + length])["id"]


def slice_viewer(ct: bytes, labels: bytes, *, focus: tuple[int, int, int], jump: str, has_reference: bool) -> None:
    """Mount the viewer on a CT pack and a label pack (``core.viewing.viewer_volume``).

    Args:
        focus: the canonical voxel (on the packs' grid) every plane goes to on a jump.
        jump: a token; when it changes the viewer goes to ``focus``, otherwise it stays where the user left it.
        has_reference: whether the label pack carries a reference (its outlines and the agreement colours).
    """
    _viewer(data={
        "ct": _pack_id(ct), "labels": _pack_id(labels), "focus": [int(n) for n in focus], "jump": jump,
        "hasReference": has_reference, "presets": slices.WINDOW_PRESETS, "preset": "Abdomen", "opacity": 0.4,
        "titles": PLANE_TITLES, "letters": slices.EDGE_LETTERS, "colours": COLOURS, "legend": LEGEND,
    }, key="slice_viewer")
    _pack(data=ct, key="slice_viewer_ct")
    _pack(data=labels, key="slice_viewer_labels")
