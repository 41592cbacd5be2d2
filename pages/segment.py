"""Segment: choose a scan, find the liver and its lesions, look, measure, take the results away.

Widgets and layout only; reading, segmenting, measuring, drawing and exporting
are ``core``'s, and what the session keeps is ``ui.state``'s.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import streamlit as st

from core import config, pipeline
from core.devices import DEVICES
from core.errors import LiverSegError
from core.imageio import dicom_seg
from core.imageio.ground_truth import load_ground_truth
from core.imageio.nifti import read_scan
from core.imageio.sample import SPACING_NOTE
from core.model import registry
from core.viewing import exports
from core.viewing.figures import surface_figure
from core.viewing.numbers import MISSING, cell
from core.viewing.report import DETECTION_WORDS, NOT_FOR_CLINICAL_USE, detection_table, html_report, lesion_table, metrics_table
from core.viewing.slices import DisplayVolume
from ui import caches
from ui.progress import RunProgress
from ui.session import require_login, upload_session
from ui.state import (
    Loaded,
    Reference,
    Shown,
    has_result,
    jump,
    keep_result,
    latest_model,
    prepare_display,
    reset_viewer,
    set_reference,
    set_scan,
    shown_result,
)
from ui.text import plain
from ui.uploads import fingerprint, name_stem, read_upload
from widgets.slice_viewer import slice_viewer

require_login("segment")



def _choose_scan() -> None:
    """The input section: sample button, upload, and what was loaded (or why not)."""
    sample_column, upload_column = st.columns([1, 2], vertical_alignment="center")
    with sample_column:
        st.markdown("**New here?** Use a real CT scan from a public dataset.")
        use_sample = st.button("Try the sample scan", type="primary", icon=":material/science:")
    with upload_column:
        uploaded = st.file_uploader(
            "Or upload a CT scan of the abdomen", key="scan_upload",
            help="A NIfTI file (.nii or .nii.gz), or a DICOM series packed in a .zip. It stays private to this browser tab.",
        )
    try:
        if use_sample:
            if not config.SAMPLE_SCAN.exists():
                raise LiverSegError("the sample scan is not installed on this server; run `make sample` (or `python -m core sample`) once")
            with st.spinner("Reading the sample scan…"):
                data = config.SAMPLE_SCAN.read_bytes()
                set_scan(Loaded(fingerprint(data), read_scan(config.SAMPLE_SCAN), "LiTS case 117 (sample)", sample=True))
        elif uploaded is not None and uploaded.file_id != st.session_state.get("scan_upload_id"):
            st.session_state["scan_upload_id"] = uploaded.file_id
            with st.spinner(f"Reading {plain(uploaded.name)}…"):
                scan, key = read_upload(uploaded, read_scan)
            set_scan(Loaded(key, scan, uploaded.name, sample=False))
    except LiverSegError as error:
        st.session_state["scan_error"] = str(error)
    if st.session_state.get("scan_error"):
        st.error(st.session_state["scan_error"], icon=":material/error:")


def _describe(loaded: Loaded) -> None:
    scan = loaded.scan
    st.markdown(f"**Scan:** {plain(loaded.name)} · {' × '.join(map(str, scan.shape))} voxels of "
                f"{' × '.join(f'{s:.2f}' for s in scan.spacing)} mm")
    if loaded.sample:
        st.caption(f":material/info: {SPACING_NOTE}: volumes and distances are estimates.")


def _choose_reference(loaded: Loaded) -> None:
    """Optional ground truth for the current scan."""
    reference = st.session_state.get("reference")
    with st.expander("Compare with a reference segmentation (optional)", expanded=reference is not None):
        st.caption("A label map drawn by an expert for this scan (NIfTI; 0 background, 1 liver, 2 lesion, or a liver-only mask). "
                   "The page then shows how well the model agrees with it.")
        uploaded = st.file_uploader("Reference label map", key="reference_upload")
        use_sample_labels = loaded.sample and st.button("Use the sample's expert labels", icon=":material/fact_check:")
        try:
            if use_sample_labels:
                data = config.SAMPLE_LABELS.read_bytes()
                set_reference(Reference(loaded.key, fingerprint(data), "LiTS 117 expert labels",
                                         load_ground_truth(config.SAMPLE_LABELS, loaded.scan)))
            elif uploaded is not None and uploaded.file_id != st.session_state.get("reference_upload_id"):
                st.session_state["reference_upload_id"] = uploaded.file_id
                with st.spinner(f"Reading {plain(uploaded.name)}…"):
                    truth, key = read_upload(uploaded, lambda path: load_ground_truth(path, loaded.scan))
                set_reference(Reference(loaded.key, key, uploaded.name, truth))
        except LiverSegError as error:
            st.session_state["reference_error"] = str(error)
        if st.session_state.get("reference_error"):
            st.error(st.session_state["reference_error"], icon=":material/error:")
        reference = st.session_state.get("reference")
        if reference is not None:
            st.success(f"Reference: {plain(reference.name)}", icon=":material/check_circle:")
            for warning in reference.truth.warnings:
                st.warning(plain(warning))  # they name the file


def _model_settings(loaded: Loaded) -> tuple[str | None, str]:
    """The model and device (expert settings: the default model, or the one of the scan's latest result)."""
    cards = registry.list_cards()
    if not cards:
        st.error("No trained model is installed, so nothing can be segmented. Restore the shipped model "
                 "(`git checkout trained/`) or train one on the Train page.", icon=":material/error:")
        return None, "auto"
    names = [card.name for card in cards]
    try:
        default = registry.default_model(cards)
    except LiverSegError:
        default = names[0]
    chosen = latest_model(loaded.key) or default
    with st.expander("Expert settings"):
        model = st.selectbox("Model", names, index=names.index(chosen) if chosen in names else 0,
                             format_func=lambda name: f"{name} (default)" if name == default else name,
                             help="The Models page describes each model and sets the default.")
        device = st.selectbox("Run on", DEVICES,
                              format_func={"auto": "Automatic (GPU if available)", "cpu": "CPU", "cuda": "GPU (CUDA)"}.get)
    return model, device


def _segment(loaded: Loaded, model: str, device: str) -> Shown | None:
    """Run the model with a progress bar in plain words; the result, or ``None`` after showing why not."""
    bar = st.progress(0.0, text="Starting…")
    voxels = loaded.scan.voxels.size / 1e6
    rate = caches.run_rates().get((model, device))
    progress = RunProgress(lambda share, text: bar.progress(share, text=text), None if rate is None else rate * voxels)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The scan's display copy and its viewer pack need no labels: made while the model runs (3 s at 512²).
            display = pool.submit(prepare_display, loaded.scan)
            outcome = pipeline.run(loaded.scan, caches.segmenter(model, device), progress=progress)
            volume, ct_pack = display.result()
        result = Shown(outcome, volume.with_labels(outcome.labels), ct_pack=ct_pack)
    except LiverSegError as error:
        st.error(str(error), icon=":material/error:")
        return None
    finally:
        bar.empty()
    caches.run_rates()[(model, device)] = progress.elapsed() / voxels  # the next run's estimate on this server
    keep_result(loaded.key, model, result)
    return result


def _headline(loaded: Loaded, result: Shown) -> None:
    """The numbers beside the picture; what the engine did folded into one "Details"."""
    segmentation, lesions = result.segmentation, result.lesions
    st.metric("Liver volume", f"{lesions.liver_ml:,.0f} mL", help="Liver including its lesions.", border=True)
    st.metric("Tumour burden", MISSING if lesions.burden_pct is None else f"{lesions.burden_pct:.1f} %",
              help="Volume of all lesions as a share of the liver volume.", border=True)
    st.metric("Lesions found", len(lesions.lesions), help="Separate lesions (possible tumours) in the liver.", border=True)
    for warning in segmentation.warnings:  # an implausible liver: never silent
        st.warning(warning, icon=":material/warning:")
    device = {"cuda": "GPU"}.get(segmentation.device, segmentation.device.upper() or "?")
    with st.expander("Details"):
        st.caption(f"Done in {sum(segmentation.seconds.values()):.1f} s on the {device} with model *{segmentation.model}*.")
        if loaded.sample:
            st.caption(f"{SPACING_NOTE}: volumes and distances are estimates.")
        for note in segmentation.notes:  # what the engine did (a CPU fallback, specks removed), for the curious
            st.caption(f"{note[:1].upper()}{note[1:]}.")


def _viewer(result: Shown, volume: DisplayVolume, reference_key: str | None) -> None:
    """The slice viewer: the browser gets the scan and its labels once and draws every picture itself,
    so no display change (plane, window, layers, zoom, slice) reruns the page."""
    if not result.has_packs(reference_key):  # a spinner only when there is work: it would shift the page's elements
        with st.spinner("Sending the scan to your browser…"):
            result.packs(volume, reference_key)
    packs = result.packs(volume, reference_key)
    slice_viewer(*packs, focus=st.session_state["viewer_focus"], jump=str(st.session_state["viewer_jump"]),
                 has_reference=volume.reference is not None)


def _lesion_table(loaded: Loaded, result: Shown) -> None:
    rows = lesion_table(result.lesions)
    if not rows:
        st.info("The model found no lesions in this scan.", icon=":material/info:")
        return
    st.markdown("**Lesions found** — click a row to show that lesion in every plane of the viewer.")
    decimals = {heading: st.column_config.NumberColumn(format=f"%.{places}f")
                for heading, places in (("Volume (mL)", 2), ("Longest diameter (mm)", 1), ("Mean density (HU)", 0))}
    decimals["Confidence"] = st.column_config.NumberColumn(
        format="%.2f", help="The model's mean lesion probability over the lesion (0-1). Lesions below the model's "
                            "threshold (chosen on held-out scans; see its card on the Models page) are not shown.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, on_select=lambda: _lesion_chosen(result), selection_mode="single-cell",
                 key="lesion_table", width="stretch", column_config=decimals)
    if loaded.sample:
        st.caption(f"{SPACING_NOTE}: volumes and diameters are estimates.")


def _lesion_chosen(result: Shown) -> None:
    # A cell, not a row, is what a click anywhere on a row selects (a row selection takes its small checkbox).
    chosen = st.session_state["lesion_table"].selection.cells
    if chosen:
        lesion = result.lesions.lesions[chosen[0][0]]
        jump(result.volume, result.volume.canonical_index(lesion.centroid_voxel))


def _comparison(result: Shown, reference: Reference) -> None:
    if reference.key not in result.metrics:
        with st.spinner("Comparing with the reference…"):
            result.metrics[reference.key] = result.result.score(reference.truth)
    metrics = result.metrics[reference.key]
    detection = metrics["lesion_detection"]
    st.markdown(f"**Compared with:** {plain(reference.name)}")
    if detection["reference_lesions"] is not None:
        # Each count on one side: the model's lesions are the headline's "Lesions found"; the reference's, its own.
        found, confirmed, alarms, missed = st.columns(4)
        found.metric("Reference lesions found", f"{detection['true_positives']} of {detection['reference_lesions']}", border=True,
                     help=DETECTION_WORDS["true_positives"][1])
        confirmed.metric("Model lesions confirmed", f"{detection['confirmed']} of {detection['predicted_lesions']}", border=True,
                         help=DETECTION_WORDS["confirmed"][1])
        alarms.metric("False alarms", detection["false_positives"], border=True, help=DETECTION_WORDS["false_positives"][1])
        missed.metric("Missed lesions", detection["missed"], border=True, help=DETECTION_WORDS["missed"][1])
    st.caption("In the Slices tab, choose *Colours: Agreement* to see where the model and the reference agree (green), "
               "where only the model marked tissue (orange) and what it missed (magenta).")
    st.table(_words_table(metrics_table(metrics)))
    if detection["reference_lesions"] is not None:
        st.table(_words_table(detection_table(metrics)))
    for note in metrics.get("notes", []):
        st.info(note, icon=":material/info:")


def _words_table(rows: list[dict]) -> pd.DataFrame:
    """Rows of numbers and explanations as text (st.table wraps the explanations), indexed by the measure's name."""
    return pd.DataFrame([{key: value if key in ("Measure", "What it means") else cell(value) for key, value in row.items()}
                         for row in rows]).set_index("Measure")


def _three_d(result: Shown) -> None:
    st.caption("The liver (blue, see-through) and its lesions (orange), seen from the front. Drag to turn, scroll to zoom.")
    if st.toggle("Show the 3D view", key="show_3d"):
        if result.surface is None:
            with st.spinner("Building the surfaces…"):
                result.surface = surface_figure(result.volume)
        st.plotly_chart(result.surface, config={"displaylogo": False}, theme=None, key="surface_view")


def _downloads(loaded: Loaded, result: Shown, reference: Reference | None) -> None:
    # The sample's files are named as in its dataset (lits117_labels.nii.gz), an upload's after its file.
    stem = name_stem(config.SAMPLE_SCAN.name).removesuffix("_ct") if loaded.sample else name_stem(loaded.name)
    segmentation = result.segmentation
    folder = upload_session().folder
    metrics = result.metrics.get(reference.key) if reference else None
    notes = [f"{SPACING_NOTE}: volumes and distances are estimates."] if loaded.sample else []
    volume = result.volume if reference is None else result.volume.with_reference(reference.canonical)
    st.caption("Each file is made when you click it.")
    first, second = st.columns(2)
    with first:
        st.download_button("Label map (NIfTI)", data=lambda: exports.label_map_nifti(segmentation, folder),
                           file_name=f"{stem}_labels.nii.gz", mime="application/gzip", on_click="ignore", icon=":material/download:",
                           help="0 background, 1 liver, 2 lesion, on the scan's own grid: opens over the scan in 3D Slicer or ITK-SNAP.")
        seg_unavailable = dicom_seg.unavailable_reason(loaded.scan)
        if seg_unavailable is None:
            st.download_button("Segmentation (DICOM SEG)", data=lambda: dicom_seg.dicom_seg_bytes(segmentation),
                               file_name=f"{stem}_seg.dcm", mime="application/dicom", on_click="ignore", icon=":material/download:",
                               help="Liver and lesion segments referencing the uploaded series, for a PACS or a DICOM viewer "
                                    "(OHIF, 3D Slicer). It carries the patient's name and ID from the series, as DICOM needs.")
        else:
            st.caption(f"DICOM SEG: not available, {seg_unavailable}.")
        st.download_button("Lesion table (CSV)", data=result.lesions.to_csv, file_name=f"{stem}_lesions.csv", mime="text/csv",
                           on_click="ignore", icon=":material/download:")
        st.download_button("Report (HTML)", data=lambda: html_report(segmentation, result.lesions, volume, metrics, notes),
                           file_name=f"{stem}_report.html", mime="text/html", on_click="ignore", icon=":material/download:",
                           help="One page with key slices, volumes and the lesion table; print it from the browser for a PDF.")
    with second:
        if metrics is not None:
            st.download_button("Metrics (CSV)", data=exports.metrics_csv(metrics), file_name=f"{stem}_metrics.csv", mime="text/csv",
                               on_click="ignore", icon=":material/download:")
            st.download_button("Metrics (JSON)", data=exports.metrics_json(metrics), file_name=f"{stem}_metrics.json",
                               mime="application/json", on_click="ignore", icon=":material/download:")
        else:
            st.caption("Upload a reference segmentation to also download the agreement metrics.")


def main() -> None:
    # Less blank space above the title (Streamlit leaves 6 rem): the picture must fit a 720-pixel-high screen.
    st.html("<style>[data-testid=stMainBlockContainer] { padding-top: 2.5rem; }</style>")
    st.title("Segment")
    loaded: Loaded | None = st.session_state.get("scan")
    # Once this scan has a result (or is being segmented), its choices fold away so that the picture is on screen
    # without scrolling.
    folded = loaded is not None and (has_result(loaded.key) or st.session_state.get("start", False))
    if not folded:
        st.markdown("Find the **liver** and **liver lesions** (possible tumours) in a CT scan of the abdomen.")
    st.caption(f":material/warning: {NOT_FOR_CLINICAL_USE}")
    inputs = st.expander(f"Scan: {loaded.name} · change it, compare with a reference, settings") if folded else st.container()
    with inputs:
        _choose_scan()
        loaded = st.session_state.get("scan")
        if loaded is None:
            return
        _describe(loaded)
        _choose_reference(loaded)
        model, device = _model_settings(loaded)
    if model is None:
        return
    result = shown_result(loaded.key, model)
    if result is None:
        start = st.empty()
        if not start.button("Find the liver and lesions", type="primary", icon=":material/play_arrow:", key="start"):
            return
        # Disabled while the model runs: a second click would rerun the page and start the wait again.
        start.button("Finding the liver and lesions…", type="primary", icon=":material/hourglass_top:", disabled=True)
        result = _segment(loaded, model, device)
        start.empty()
        if result is None:
            return
    reference = st.session_state.get("reference")
    if reference is not None and reference.canonical is None:
        reference.canonical = result.volume.canonical(reference.truth.labels)
    volume = result.volume if reference is None else result.volume.with_reference(reference.canonical)
    reset_viewer(result, volume, f"{loaded.key}:{model}")
    picture, numbers = st.columns([3, 1])
    with numbers:
        _headline(loaded, result)
    with picture:
        names = ["Slices", "3D view"] + (["Compare with reference"] if reference else []) + ["Downloads"]
        tabs = dict(zip(names, st.tabs(names)))
        with tabs["Slices"]:
            _viewer(result, volume, reference.key if reference else None)
            _lesion_table(loaded, result)
        with tabs["3D view"]:
            _three_d(result)
        if reference is not None:
            with tabs["Compare with reference"]:
                _comparison(result, reference)
        with tabs["Downloads"]:
            _downloads(loaded, result, reference)


main()
