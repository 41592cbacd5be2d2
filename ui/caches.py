"""What the whole server process shares between sessions (``st.cache_resource``): loaded models, the login throttle."""

from __future__ import annotations

import streamlit as st

from core.server import access


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def segmenter(model: str, device: str):
    """One Segmenter per model and device for the whole server process, shared by every session."""
    from core.inference.segmenter import Segmenter  # torch: imported when the first scan is segmented, not on page load

    return Segmenter(model, device)


@st.cache_resource
def login_guard() -> access.LoginGuard:
    """One sign-in throttle for the whole server process: per tab and address, per account, overall."""
    return access.LoginGuard()


@st.cache_resource(show_spinner="Loading the engine...")
def load_engine() -> None:
    """Import torch and the engine once per server, before any page does.

    Two sessions' scripts importing torch at the same moment can see it half initialised
    (an ImportError on the page); ``st.cache_resource`` makes the first one import it while
    the others wait.
    """
    import core.inference.segmenter  # noqa: F401


@st.cache_resource
def run_rates() -> dict[tuple[str, str], float]:
    """Seconds per million voxels of the last finished segmentation, per model and device, on this server."""
    return {}
