"""The shared login guard and what one browser session keeps (``st.session_state``)."""

from __future__ import annotations

import streamlit as st

from core.server import uploads


def require_login() -> None:
    """Send a visitor who came straight to a page through ``app.py``'s login gate first.

    Streamlit serves pages/ by itself on a fresh server's very first run, before app.py has
    called st.navigation once: without this, that first visitor would skip the gate.
    """
    if "uploads" not in st.session_state:
        st.switch_page("app.py")


def upload_session() -> uploads.UploadSession:
    """This session's private upload folder (app.py opens it; a page run on its own opens one here)."""
    if "uploads" not in st.session_state:
        st.session_state["uploads"] = uploads.default_store().open_session()
    return st.session_state["uploads"]
