"""The slice viewer: a small Streamlit component that scrolls a plane's slices in the browser.

Why a component and not a Plotly figure with frames: Plotly's animation slider steps
through frames, but it knows neither the mouse wheel (its wheel zooms) nor the arrow
keys over the picture, and each frame carries a whole figure. Here the browser gets
the plane once (``core.viewing.slice_stack``: one JPEG per slice and a coarse hover grid) and
a hundred lines of JavaScript (``slice_viewer.js``, shipped in this repository: no CDN)
move the slice on slider, step buttons, arrow keys and wheel, and read HU, position and
label under the mouse. Streamlit's ``st.components.v2`` mounts it straight into the page
(no iframe), so it takes the keyboard focus and the theme's colours like any widget.

The component reports nothing back: a slice move never reaches the server, so it cannot
rerun the page, and no move can be lost to a rerun. The server chooses the slice only
when it has a reason to (a new result, a lesion picked in the table): ``jump`` changes.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

_HERE = Path(__file__).parent
_HTML = """<div class="lsv" tabindex="0" role="group" aria-label="Slice viewer: mouse wheel or arrow keys change the slice">
  <div class="lsv-stage">
    <div class="lsv-frame"><canvas aria-label="CT slice"></canvas>
      <span class="lsv-edge"></span><span class="lsv-edge"></span><span class="lsv-edge"></span><span class="lsv-edge"></span>
    </div>
    <div class="lsv-readout" role="status" hidden></div>
  </div>
  <div class="lsv-bar">
    <button type="button" class="lsv-back" title="Previous slice (arrow left or down)">&#8249; Back</button>
    <input type="range" class="lsv-slider" min="1" max="1" step="1" aria-label="Slice">
    <button type="button" class="lsv-next" title="Next slice (arrow right or up)">Next &#8250;</button>
  </div>
  <div class="lsv-caption" aria-live="polite"></div>
</div>"""

_component = st.components.v2.component(
    "liverseg_slice_viewer",
    html=_HTML,
    css=(_HERE / "slice_viewer.css").read_text(encoding="utf-8"),
    js=(_HERE / "slice_viewer.js").read_text(encoding="utf-8"),
    isolate_styles=False,  # class names are prefixed lsv-; the page's tests and benchmark reach the canvas directly
)


def slice_viewer(payload: dict, *, stack_id: str, title: str, start: int, jump: str) -> None:
    """Mount the viewer on a stack's ``payload`` (``SliceStack.payload()``).

    Args:
        stack_id: names this stack; the browser decodes a stack once per id.
        title: the plane in words, for the caption under the slider.
        start: the slice (from 0) to show after a jump.
        jump: a token; when it changes the viewer goes to ``start``, otherwise it stays where the user scrolled.
    """
    _component(data={**payload, "id": stack_id, "title": title, "slice": start, "jump": jump}, key="slice_viewer")

