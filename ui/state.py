"""What the Segment page keeps between reruns (``st.session_state``), and the rules for keeping it.

- ``scan``: the scan being looked at (``Loaded``);
- ``results``: ``(scan fingerprint, model) -> Shown``, a few at most, so that any view change,
  and going back to an earlier scan, never runs the model again;
- ``reference``: the ground truth uploaded for the current scan (``Reference``);
- ``viewer_for``, ``viewer_focus``, ``viewer_jump``: the point every plane of the viewer goes to (the slice
  the browser shows is the browser's own; the page sets it only on a jump).

Whenever one of these changes, ``remember`` keeps the latest result, the scan, the reference and the
viewer's point for this session's next reload of the page (``ui.sign_ins``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import pipeline
from core.evaluation.lesions import LesionReport
from core.imageio.ground_truth import GroundTruth
from core.scan import Scan
from core.segmentation import Segmentation
from core.viewing import viewer_volume
from core.viewing.slices import DisplayVolume
from ui import sign_ins

MAX_RESULTS = 3  # each holds a label map and a display copy of its scan
#: What a reload of the page keeps (besides the latest result).
KEPT_ON_RELOAD = ("scan", "reference", "viewer_for", "viewer_focus", "viewer_jump")


@dataclass(frozen=True, eq=False)
class Loaded:
    """The scan on the page: ``key`` fingerprints its file's bytes."""

    key: str
    scan: Scan
    name: str
    sample: bool


@dataclass(eq=False)
class Shown:
    """One pipeline result and what the page derives from it for showing, each made once."""

    result: pipeline.Result
    volume: DisplayVolume
    metrics: dict[str, dict] = field(default_factory=dict)  # reference key -> pipeline.Result.score()
    surface: go.Figure | None = None
    ct_pack: bytes | None = None  # the CT for the browser's viewer (core.viewing.viewer_volume), up to about 35 MB
    label_packs: dict[str | None, bytes] = field(default_factory=dict)  # reference key (None: none) -> label pack

    @property
    def segmentation(self) -> Segmentation:
        return self.result.segmentation

    @property
    def lesions(self) -> LesionReport:
        return self.result.lesions

    def has_packs(self, reference_key: str | None) -> bool:
        return self.ct_pack is not None and reference_key in self.label_packs

    def packs(self, volume: DisplayVolume, reference_key: str | None) -> tuple[bytes, bytes]:
        """The viewer's CT and label packs for ``volume`` (with the reference ``reference_key``), each made once."""
        if self.ct_pack is None:
            self.ct_pack = viewer_volume.ct_pack(volume)
        if reference_key not in self.label_packs:
            self.label_packs = {None: self.label_packs.get(None) or viewer_volume.label_pack(self.volume)}
            self.label_packs[reference_key] = viewer_volume.label_pack(volume)  # only the latest reference's is kept
        return self.ct_pack, self.label_packs[reference_key]


@dataclass(eq=False)
class Reference:
    """Ground truth for the scan ``scan_key``, in file order and (once a result exists) canonical order."""

    scan_key: str
    key: str
    name: str
    truth: GroundTruth
    canonical: np.ndarray | None = None


def prepare_display(scan: Scan) -> tuple[DisplayVolume, bytes]:
    """The scan's display copy (no labels yet) and the viewer's CT pack: what showing a result needs of the scan alone."""
    volume = DisplayVolume.from_scan(scan, np.zeros(scan.shape, np.uint8))
    return volume, viewer_volume.ct_pack(volume)


def remember() -> None:
    """Keep the latest result, the scan, the reference and the viewer's point for this session's next reload."""
    kept = {key: st.session_state[key] for key in KEPT_ON_RELOAD if key in st.session_state}
    results = st.session_state.get("results")
    if results:
        latest = next(reversed(results))
        kept["results"] = {latest: results[latest]}  # one result: the reload keeps what was on screen, no more
    sign_ins.remember(kept)


def set_scan(loaded: Loaded) -> None:
    st.session_state["scan"] = loaded
    st.session_state.pop("scan_error", None)
    if st.session_state.get("reference") and st.session_state["reference"].scan_key != loaded.key:
        del st.session_state["reference"]  # a reference belongs to one scan
    remember()


def set_reference(reference: Reference) -> None:
    st.session_state["reference"] = reference
    st.session_state.pop("reference_error", None)
    remember()


def shown_result(scan_key: str, model: str) -> Shown | None:
    """The result already made for this scan and model in this session, if it is still kept."""
    return st.session_state.get("results", {}).get((scan_key, model))


def latest_model(scan_key: str) -> str | None:
    """The model of this session's latest result for this scan, if any (after a reload, the one on screen)."""
    models = [model for key, model in st.session_state.get("results", {}) if key == scan_key]
    return models[-1] if models else None


def has_result(scan_key: str) -> bool:
    """Whether this session has a result for this scan (with any model)."""
    return latest_model(scan_key) is not None


def keep_result(scan_key: str, model: str, shown: Shown) -> None:
    """Keep ``shown`` for this scan and model; the oldest go beyond ``MAX_RESULTS``."""
    results = st.session_state.setdefault("results", {})
    results[(scan_key, model)] = shown
    while len(results) > MAX_RESULTS:
        del results[next(iter(results))]
    remember()


def reset_viewer(result: Shown, volume: DisplayVolume, result_id: str) -> None:
    """Point every plane at the largest lesion (or the liver) when a new result is shown."""
    if st.session_state.get("viewer_for") == result_id:
        return
    st.session_state["viewer_for"] = result_id
    lesions = result.lesions.lesions  # largest first, measured already: no second labelling of the volume (1.5 s at 512²)
    jump(volume, volume.canonical_index(lesions[0].centroid_voxel) if lesions else volume.focus())


def jump(volume: DisplayVolume, canonical_voxel) -> None:
    """Show the slices through a voxel in every plane (the viewer follows a new ``viewer_jump``)."""
    st.session_state["viewer_focus"] = viewer_volume.pack_voxel(volume, canonical_voxel)
    st.session_state["viewer_jump"] = st.session_state.get("viewer_jump", 0) + 1
    remember()
