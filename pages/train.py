"""Train: start a training or fine-tuning job in the background and follow it.

The job runs in its own process (``core.jobs``); this page only submits it and
reads its record, so closing the tab or restarting the app loses nothing.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import config
from core.devices import DEVICES
from core.errors import LiverSegError, without_paths
from core.jobs import processes
from core.jobs.records import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, TrainingRequest
from core.jobs.runner import JobRunner
from core.model import registry
from core.training import discovery, progress
from core.training.options import TrainingOption, training_options
from core.training.progress import END, START, STEP, VALIDATION, events
from core.viewing.numbers import MISSING, number
from ui.forms import typed_words
from ui.session import current_user, require_login
from ui.text import plain

require_login("train")

#: How often the job panel refreshes itself while a job is queued or running (s).
REFRESH_S = 2.0
STATE_BADGES = {
    QUEUED: ":gray-badge[:material/schedule: queued]",
    RUNNING: ":blue-badge[:material/play_arrow: running]",
    SUCCEEDED: ":green-badge[:material/check: succeeded]",
    FAILED: ":red-badge[:material/error: failed]",
    CANCELLED: ":orange-badge[:material/block: cancelled]",
}

runner = JobRunner()


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def fraction_done(job: Job, records: list[dict]) -> tuple[float, float | None]:
    """Fraction of the run done and the seconds left."""
    return (1.0, 0.0) if job.state == SUCCEEDED else progress.fraction_done(records)


def latest(records: list[dict], key: str, form: str) -> str:
    """The newest value of ``key`` in the records, formatted, or a dash."""
    for record in reversed(records):
        if isinstance(record.get(key), (int, float)):
            return form.format(record[key])
    return MISSING


def loss_figure(records: list[dict]) -> go.Figure:
    steps = [record for record in events(records, STEP) if isinstance(record.get("loss"), (int, float))]
    figure = go.Figure(go.Scatter(x=[r.get("step") for r in steps], y=[r["loss"] for r in steps], mode="lines+markers",
                                  name="loss", line={"color": "#1f77b4"}))
    figure.update_layout(title="Training loss (Dice + cross-entropy)", xaxis_title="step", yaxis_title="loss",
                         height=300, margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return figure


def dice_figure(records: list[dict]) -> go.Figure:
    validations = events(records, VALIDATION)
    figure = go.Figure()
    for key, name, colour in (("liver_dice", "liver", "#d62728"), ("lesion_dice", "lesion", "#2ca02c")):
        points = [record for record in validations if isinstance(record.get(key), (int, float))]
        # Epochs counted from 1 here as in the Epoch figure above (the records count from 0).
        figure.add_scatter(x=[r.get("epoch", 0) + 1 for r in points], y=[r[key] for r in points], mode="lines+markers", name=name,
                           line={"color": colour})
    last = max([r.get("epoch", 0) + 1 for r in validations] or [1])
    # Whole epochs only: Plotly's own ticks fall on 0.5 for a short run, and there is no half epoch.
    figure.update_xaxes(tick0=1, dtick=max(1, math.ceil(last / 10)), tickformat="d", rangemode="tozero")
    figure.update_layout(title="Validation Dice (held-out cases)", xaxis_title="epoch", yaxis_title="Dice", yaxis_range=[0, 1],
                         height=300, margin={"l": 50, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h", "y": -0.25})
    return figure


@st.cache_data(max_entries=500)
def ended_summary(job_id: str, ended: str) -> dict[str, float]:
    """Best validation Dice of an ended job: its progress no longer changes, so read it once."""
    return progress.best_validation(runner.job(job_id).progress())


def summary(job: Job) -> dict[str, float]:
    return progress.best_validation(job.progress()) if job.active else ended_summary(job.id, job.ended or "")


def job_label(job: Job) -> str:
    # No state here: a selectbox keeps the labels it was first given while its options stay the same.
    return f"{job.name} · submitted {job.created[:19].replace('T', ' ')}"


def jobs_table(all_jobs: list[Job]) -> None:
    rows = []
    for job in all_jobs:
        best = summary(job)
        rows.append({"Model name": job.name, "Started by": job.owner or "", "Status": job.state, "Submitted": job.created[:16].replace("T", " "),
                     "Duration": duration(job.duration_s), "Best liver Dice": best.get("liver_dice"),
                     "Best lesion Dice": best.get("lesion_dice"), "Registered as": job.model or "",
                     "Note": without_paths(job.reason or "")})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "Best liver Dice": st.column_config.NumberColumn(format="%.3f"),
        "Best lesion Dice": st.column_config.NumberColumn(format="%.3f")})


def follow(job: Job) -> None:
    """Status, progress, curves, log and Cancel of one job (Cancel only for whoever started it, or an administrator).

    Every user sees every job, but no server path: logs, reasons and the command are shown with
    each path reduced to its last name (``core.errors.without_paths``).
    """
    records = job.progress()
    user, admin = current_user()
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.subheader(f"{job.name} {STATE_BADGES[job.state]}", anchor=False)
    left.caption(f"Started by {plain(job.owner or 'an unknown user')}")
    if job.active and job.may_cancel(user, admin):
        if right.button("Cancel job", icon=":material/stop_circle:", key=f"cancel-{job.id}", width="stretch"):
            with st.spinner("Stopping the training…"):
                runner.cancel(job.id, by=user, admin=admin)
            st.rerun()
    elif job.active:
        right.caption("Only whoever started this job, or an administrator, can cancel it.")
    if job.state == QUEUED:
        st.info("Waiting for the running job to finish: one job trains at a time on each GPU (one on a CPU-only server).")
    elif job.state == FAILED:
        st.error(f"Failed: {without_paths(job.reason or '')}")
    elif job.state == CANCELLED:
        st.warning(f"Cancelled: {without_paths(job.reason or '')}. No model was registered.")
    elif job.state == SUCCEEDED:
        ending = events(records, END)
        how = f" ({ending[-1]['status']})" if ending and ending[-1].get("status") not in (None, "finished") else ""
        st.success(f"Finished{how}. The model is registered as **{job.model}**: see the Models page to make it the default.")
    started = events(records, START)
    if started:
        first = started[-1]
        st.caption(f"Training on {', '.join(first.get('train_cases') or []) or MISSING} · validating on "
                   f"{', '.join(first.get('val_cases') or []) or 'no held-out case'} · {first.get('accelerator', '?')} "
                   f"× {first.get('devices', '?')} ({first.get('precision', '?')})")
    if not job.started:
        return  # queued, or cancelled before it started: nothing more to show
    done, left_s = fraction_done(job, records)
    if job.active:
        eta = f" · about {duration(left_s)} left" if left_s is not None else ""
        st.progress(done, text=f"{done:.0%} · running for {duration(job.duration_s) or '0 s'}{eta}")
    else:
        st.progress(done, text=f"{done:.0%} · ran for {duration(job.duration_s) or '0 s'}")
    steps, best = events(records, STEP), progress.best_validation(records)
    if steps:
        cells = st.columns(5)
        epochs = events(records, START)[-1].get("max_epochs") if events(records, START) else None
        seen = [r["epoch"] for r in steps + events(records, VALIDATION) if isinstance(r.get("epoch"), int)]
        epoch = f"{max(seen) + 1}" if seen else MISSING  # counted from 1, as on the Dice curve
        cells[0].metric("Epoch", f"{epoch} of {epochs}" if seen and epochs else epoch)
        cells[1].metric("Loss", latest(steps, "loss", "{:.3f}"))
        cells[2].metric("Best liver Dice", number(best.get("liver_dice")))
        cells[3].metric("Best lesion Dice", number(best.get("lesion_dice")))
        cells[4].metric("Patches / s", latest(steps, "patches_per_s", "{:.1f}"))
        curves = st.columns(2)
        curves[0].plotly_chart(loss_figure(records), width="stretch", key=f"loss-{job.id}")
        curves[1].plotly_chart(dice_figure(records), width="stretch", key=f"dice-{job.id}")
    elif job.active:
        st.caption("Reading and preparing the cases: the curves start with the first training steps.")
    log = without_paths(job.log_tail(12))
    if log:
        st.caption("Log (last lines)")
        st.code(log, language=None, wrap_lines=True)


def jobs_panel(polling: bool) -> None:
    all_jobs = runner.jobs()
    if not all_jobs:
        st.info("No training jobs yet. Start one below.")
        return
    by_id = {job.id: job for job in all_jobs}
    if st.session_state.get("follow_next") in by_id:  # a job just submitted (the selectbox's own key is not settable then)
        st.session_state["followed"] = st.session_state.pop("follow_next")
    if st.session_state.get("followed") not in by_id:
        running = [job for job in all_jobs if job.state == RUNNING]
        st.session_state["followed"] = (running or all_jobs)[0].id
    followed = st.selectbox("Job", list(by_id), format_func=lambda job_id: job_label(by_id[job_id]), key="followed")
    with st.container(border=True):
        follow(by_id[followed])
    st.subheader("All jobs")
    jobs_table(all_jobs)
    if polling != any(job.active for job in all_jobs):
        st.rerun()  # a job started or every job ended: rerun the page to switch the self-refresh on or off


#: Labels where the option's name is an abbreviation; the others read well as they are.
LABELS = {"lr": "Learning rate", "val": "Validation cases", "hu_window": "HU window", "num_workers": "Loader processes",
          "val_every": "Validate every (epochs)", "max_minutes": "Time limit (minutes)", "patches_per_epoch": "Patches per epoch",
          "roi_margin": "Margin around the first stage's liver (mm)", "spacing": "Voxel size (mm)"}
#: The option groups in plain words (``core.training.options`` names them for the command line's help).
GROUPS = {"data": "Data", "schedule": "Schedule", "patches and augmentation": "Patches and augmentation",
          "hardware (PyTorch Lightning)": "Hardware", "fine-tuning the pretrained pair": "Fine-tuning the pretrained pair"}
MODEL_GROUP = "Model (for a new model; fine-tuning keeps the model's own)"


def without_flags(words: str) -> str:
    """An option's help without command-line syntax ("--first-stage" reads "first stage")."""
    words = words.replace("as segment --precision: ", "")
    return re.sub(r"--([a-z][a-z-]*)", lambda match: match.group(1).replace("-", " "), words)


def option_widget(option: TrainingOption, disabled: bool):
    label = LABELS.get(option.name, option.name.replace("_", " ").capitalize())
    key = f"option-{option.name}"
    help_ = without_flags(option.help)
    if option.kind == "choice":
        return st.selectbox(label, option.choices, index=option.choices.index(option.default), help=help_, key=key,
                            disabled=disabled)
    if option.kind == "flag":
        return st.checkbox(label, value=bool(option.default), help=help_, key=key, disabled=disabled)
    if option.count == 1 and option.kind in ("int", "float"):
        if option.kind == "int":
            return st.number_input(label, value=option.default, step=1, help=help_, key=key, disabled=disabled)
        step = 10 ** math.floor(math.log10(abs(option.default))) if option.default else 1.0
        return st.number_input(label, value=option.default, step=float(step), format="%g", help=help_, key=key,
                               disabled=disabled)
    default = " ".join(map(str, option.default)) if isinstance(option.default, list) else str(option.default or "")
    text = st.text_input(label, value=default, help=f"{help_} (values separated by spaces)" if option.count != 1 else help_,
                         key=key, disabled=disabled)
    return typed_words(option, text) if option.count != 1 else text


def changed(option: TrainingOption, value) -> bool:
    """Whether a widget's value differs from the CLI default (only those go on the command line)."""
    if value is None or value == "":
        return option.default is not None and option.kind == "text"
    if isinstance(value, list):
        return value != list(option.default or [])
    return value != option.default and str(value) != str(option.default)


def measured_rate() -> float | None:
    """Training patches per second of this server's most recent job that reported it (its last report)."""
    for job in runner.jobs():  # newest first
        rates = [r["patches_per_s"] for r in events(job.progress(), STEP) if isinstance(r.get("patches_per_s"), (int, float))]
        if rates:
            return float(rates[-1])
    return None


def estimate(epochs, patches_per_epoch) -> str:
    """The run's length before Start, from this server's measured throughput: at most, as early stopping may end it sooner."""
    rate = measured_rate()
    if not (isinstance(epochs, int) and isinstance(patches_per_epoch, int)) or epochs < 1 or patches_per_epoch < 1:
        return ""
    if rate is None:
        return (f":material/schedule: {epochs} epochs of {patches_per_epoch} patches: no estimate of the time yet, as no "
                "training has run on this server; the first job's progress shows its own.")
    return (f":material/schedule: {epochs} epochs of {patches_per_epoch} patches: about {duration(epochs * patches_per_epoch / rate)} "
            f"at most on this server (its last training ran {rate:.1f} patches per second; validation adds a little, "
            "early stopping may end it sooner).")


@st.cache_data(ttl=300, show_spinner="Looking for labelled cases in the data folders…")
def choices(data_dirs: tuple[str, ...]) -> list[discovery.DataChoice]:
    """The data choices under ``data_dirs`` (the configured folders, as the cache key)."""
    return discovery.data_choices()


def new_job_form() -> None:
    try:
        found = choices(tuple(map(str, config.data_dirs())))
    except LiverSegError as error:
        st.error(str(error))
        return
    usable = [choice for choice in found if choice.cases]
    top = st.columns([4, 1], vertical_alignment="bottom")
    if top[1].button("Rescan data folders", icon=":material/refresh:", width="stretch"):
        choices.clear()
        st.rerun()
    if not usable:
        top[0].warning("No labelled cases in the data folders. Ask the administrator to add data (LIVERSEG_DATA_DIRS).")
        return
    labels = {choice.label: choice for choice in usable}
    chosen = top[0].multiselect(
        "Training data", list(labels), default=list(labels),
        format_func=lambda label: f"{label} ({len(labels[label].cases)} labelled case{'s' if len(labels[label].cases) != 1 else ''})",
        help="Folders inside the configured data folders. Cases are found by layout (LiTS, MSD, NAME + NAME_seg, images/ + labels/).")
    selected = [labels[label] for label in chosen]
    cases = [case for choice in selected for case in choice.cases]
    if cases:
        liver_only = sum(case.liver_only for case in cases)
        st.caption(f"{len(cases)} labelled cases: {len(cases) - liver_only} with liver and lesion labels, {liver_only} liver-only "
                   "(these teach the liver; their lesion channel is ignored).")
        st.dataframe(pd.DataFrame([{"Case": case.name, "Labels": case.kind, "Layout": case.layout, "Image": case.image.name}
                                   for case in cases]), hide_index=True, width="stretch")
    problems = [(choice.label, f"image without a label, not used: {path.name}") for choice in found for path in choice.unlabelled]
    problems += [(choice.label, f"refused: {reason}") for choice in found for reason in choice.refused]
    if problems:
        with st.expander(f"{len(problems)} file(s) that will not be used", icon=":material/warning:"):
            st.dataframe(pd.DataFrame(problems, columns=["Folder", "Problem"]), hide_index=True, width="stretch")

    cards = registry.list_cards()
    columns = st.columns(3)
    st.session_state.setdefault("model_name", f"liver-{datetime.now():%Y%m%d-%H%M}")
    name = columns[0].text_input("Model name", key="model_name",
                                 help="Letters, digits, '.', '_' or '-'; not the name of a model or of a job already there.")
    start = columns[1].radio("Start from", ["scratch", "fine-tune"], horizontal=True, disabled=not cards,
                             format_func={"scratch": "Scratch (new model)", "fine-tune": "Fine-tune a model"}.get,
                             help="Fine-tuning starts from an existing model's weights and keeps its spacing, window and size.")
    init = None
    if start == "fine-tune":
        init = columns[1].selectbox("Model to fine-tune", [card.name for card in cards])
    single_stage = [card.name for card in cards if card.cascade is None]
    first_stage = columns[1].selectbox(
        "First stage (cascade)", [None, *single_stage], format_func=lambda name: "none: one stage" if name is None else name,
        disabled=init is not None or not single_stage,
        help="A model trained at a coarse spacing (e.g. 5 mm) on whole scans. It finds the liver's region; the model "
             "trained here then segments only within it, so neighbouring organs are not taken for liver.")
    gpus = processes.gpu_count()
    device = columns[2].radio("Device", list(DEVICES), horizontal=True, help="auto takes a GPU when there is one.")
    columns[2].caption(f"{gpus} GPU(s) found: each runs one job at a time." if gpus else "No GPU found: training runs on the CPU.")

    values = []
    groups: dict[str, list[TrainingOption]] = {}
    for option in training_options():
        groups.setdefault(option.group, []).append(option)
    for group, options in groups.items():
        from_card = init is not None and group.startswith("model")
        with st.expander(MODEL_GROUP if group.startswith("model") else GROUPS.get(group, group.capitalize()),
                         expanded=group == "schedule"):
            if from_card:
                st.caption(f"Taken from {init}'s card when fine-tuning.")
            cells = st.columns(3)
            for position, option in enumerate(options):
                with cells[position % 3]:
                    values.append((option, option_widget(option, disabled=from_card)))

    problem = None
    taken = {card.name for card in cards} | {job.name for job in runner.jobs() if job.state in (QUEUED, RUNNING, SUCCEEDED)}
    if not cases:
        problem = "Choose at least one folder with labelled cases."
    elif device == "cuda" and not gpus:
        problem = "There is no GPU on this server: choose auto or cpu."
    elif name.strip() in taken:
        problem = f"The name {name.strip()} is already used by a model or a training job: choose another."
    if problem:
        st.warning(problem)
    chosen_values = {option.name: value for option, value in values}
    st.caption(estimate(chosen_values.get("epochs"), chosen_values.get("patches_per_epoch")))
    if st.button("Start training", type="primary", icon=":material/play_arrow:", disabled=problem is not None):
        options = {option.name: value for option, value in values
                   if changed(option, value) and not (init and option.group.startswith("model"))}
        try:
            job = runner.submit(TrainingRequest(name=name.strip(), data=[str(choice.folder) for choice in selected],
                                                     init=init, device=device, options=options,
                                                     first_stage=None if init else first_stage), owner=current_user()[0])
        except LiverSegError as error:
            st.error(str(error))
            return
        st.session_state["follow_next"] = job.id
        st.rerun()


st.title("Train")
st.caption("Train a new model on labelled CT, or fine-tune an existing one. Jobs run in the background on the server: "
           "you can close this tab and come back later.")

polling = any(job.active for job in runner.jobs())
st.fragment(jobs_panel, run_every=REFRESH_S if polling else None)(polling)
with st.expander("Start a new training job", expanded=not runner.jobs(), icon=":material/add_circle:"):
    new_job_form()
