"""Models: every model in trained/ with its card; choose the default, download, remove."""

from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from core.errors import LiverSegError
from core.jobs.runner import JobRunner
from core.model import registry
from core.model.archive import model_archive, model_size_bytes
from core.viewing.numbers import cell
from ui.models import default_model_refusal, set_default_model
from ui.session import require_login
from ui.text import plain

require_login("models")


def scalar(value) -> bool:
    """A value that reads well in one table cell: a number, a string, or a list of those."""
    if isinstance(value, list):
        return all(not isinstance(item, (dict, list)) for item in value)
    return not isinstance(value, dict)


def facts_table(mapping: dict) -> None:
    """A card section as tables: its plain values in one table; each list of records or nested mapping below it."""
    plain = {key: value for key, value in mapping.items() if scalar(value) and key != "command"}
    if plain:
        st.dataframe(pd.DataFrame({"": [key.replace("_", " ") for key in plain],
                                   "value": [", ".join(map(cell, v)) if isinstance(v, list) else cell(v) for v in plain.values()]}),
                     hide_index=True, width="stretch")
    for key, value in mapping.items():
        if scalar(value) or not value:
            continue
        st.caption(key.replace("_", " ").capitalize())
        if isinstance(value, list):
            st.dataframe(pd.DataFrame(value), hide_index=True, width="stretch")
        elif all(isinstance(item, dict) and all(map(scalar, item.values())) for item in value.values()):
            st.dataframe(pd.DataFrame.from_dict(value, orient="index"), width="stretch")  # per case, say
        else:
            facts_table(value)
    if mapping.get("command"):
        st.caption("Command to reproduce")
        st.code(mapping["command"], language="bash", wrap_lines=True)


def metric_label(key: str) -> str:
    """``"liver_dice"`` -> ``"Liver Dice"``, ``"liver_hd95_mm"`` -> ``"Liver HD95 (mm)"``."""
    words = key.removesuffix("_mm").replace("_", " ").split()
    words = [word.capitalize() if index == 0 or word == "dice" else word.upper() if word.startswith("hd") else word
             for index, word in enumerate(words)]
    return " ".join(words) + (" (mm)" if key.endswith("_mm") else "")


def metric_value(key: str, value) -> str:
    """Scores to 3 decimals; distances to 0.1 mm, with the unit (the voxels are coarser than that)."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.1f} mm" if key.endswith("_mm") else f"{value:.3f}"


def size_text(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


def make_default(name: str) -> None:
    try:
        set_default_model(name)
    except LiverSegError as error:
        st.session_state["models_error"] = str(error)
    else:
        st.toast(f"{name} is now the default model for the Segment page.", icon=":material/check_circle:")


def model_panel(card, default: str, needed_by: list[str], refusal: str | None) -> None:
    with st.container(border=True):
        badges = [":green-badge[:material/star: default]"] if card.name == default else []
        badges.append(":blue-badge[shipped]" if card.shipped else ":violet-badge[trained here]")
        header, actions = st.columns([1, 1], vertical_alignment="center")
        header.subheader(f"{card.name} {' '.join(badges)}", anchor=False)
        buttons = actions.columns(3)
        if card.name == default:
            buttons[0].button("Default", key=f"is-default-{card.name}", disabled=True, icon=":material/star:", width="stretch")
        elif refusal:
            buttons[0].button("Make default", key=f"default-{card.name}", disabled=True, icon=":material/star:", width="stretch",
                              help=plain(refusal))
        else:
            # Confirmed first: the default is every user's model on the Segment page.
            with buttons[0].popover("Make default", icon=":material/star:", width="stretch"):
                st.write(f"Make **{card.name}** the model the Segment page uses, for every user of this server?")
                st.button(f"Yes, make {card.name} the default", type="primary", key=f"default-{card.name}", on_click=make_default,
                          args=(card.name,))
        buttons[1].download_button("Download", data=functools.partial(model_archive, card.name), file_name=f"{card.name}.zip",
                                   mime="application/zip", key=f"download-{card.name}", icon=":material/download:",
                                   on_click="ignore", width="stretch", help="A zip of the model's files (its weights and card.json); unzip it into "
                                   "another installation's trained/ folder to use the model there.")
        with buttons[2]:
            if card.shipped:
                st.caption("Shipped models are protected.")
            elif needed_by:
                st.caption(f"Needed by job(s) {', '.join(needed_by)} (fine-tuning from it).")
            else:
                with st.popover("Remove", icon=":material/delete:", width="stretch"):
                    st.write(f"Delete **{card.name}** from `trained/`? This cannot be undone.")
                    if st.button(f"Remove {card.name}", type="primary", key=f"remove-{card.name}"):
                        try:
                            registry.remove_model(card.name)
                        except LiverSegError as error:
                            st.session_state["models_error"] = str(error)
                        st.rerun()

        if card.purpose:
            st.write(card.purpose)
        facts = [f"created {card.created[:16].replace('T', ' ')}" if card.created else None,
                 size_text(model_size_bytes(card.name)),
                 card.cases_text(),
                 "two-stage cascade" if card.cascade else None,
                 card.grid_text(),
                 f"HU window {card.hu_window[0]:g} to {card.hu_window[1]:g}"]
        st.caption(" · ".join(fact for fact in facts if fact))
        headline = card.headline_metrics()
        if headline:
            # Each card scores itself on its own cases: numbers of two cards are on the same footing only when both
            # were cross-validated on the same cases.
            st.caption(":material/info: " + ("Cross-validated: each case scored by a model trained without it."
                                             if card.cross_validated else
                                             "Scored on this model's own held-out cases: not comparable with another "
                                             "model's numbers unless it was scored on the same cases."))
            numbers = st.columns(6)
            for cell, (key, value) in zip(numbers, headline.items()):
                cell.metric(metric_label(key), metric_value(key, value), help=card.headline_rule())
        with st.expander("Model card"):
            left, right = st.columns(2)
            with left:
                st.markdown("**Training**" + (" of the second stage" if card.cascade else ""))
                facts_table(card.training or {})
                if card.cascade:
                    st.markdown("**Training of the first stage**")
                    facts_table(card.first_stage.training or {})
                if card.pretrained:
                    st.markdown("**Pretrained networks: source, licence, what they were trained on**")
                    facts_table(card.pretrained)
            with right:
                st.markdown("**Metrics**")
                facts_table(card.metrics or {})
                st.markdown("**Architecture**")
                if card.cascade:
                    st.write(f"First stage, on the whole scan: {card.first_stage.architecture_text()}. It finds the liver; the second "
                             f"stage looks only within {card.roi_margin_mm:g} mm of what it found.")
                st.write(f"{'Second stage: ' if card.cascade else ''}{card.architecture_text()}; "
                         f"labels {', '.join(f'{k} {v}' for k, v in card.labels.items())}")


st.title("Models")
st.caption("Every model in `trained/`, with its card: what it was trained on and how well it did on cases it never saw. "
           "The default model is the one the Segment page uses.")
if message := st.session_state.pop("models_error", None):
    st.error(message)

cards = registry.list_cards()
if not cards:
    st.info("No models yet. Train one on the Train page.")
    st.stop()
default = registry.default_model(cards)
st.markdown(f"The Segment page uses **{default}**.")
refusal = default_model_refusal()
if refusal:
    st.info(plain(refusal), icon=":material/admin_panel_settings:")
needed = JobRunner().models_in_use()
for card in cards:
    model_panel(card, default, needed.get(card.name, []), refusal)
