"""The shared login guard and what one browser session keeps (``st.session_state``)."""

from __future__ import annotations

import streamlit as st

from core.server import access, uploads


def require_login(page: str) -> None:
    """Send a visitor who came straight to ``page`` (its address, e.g. ``"models"``) through
    ``app.py``'s login gate first, and back to that page after it (``app.py`` reads ``next``).

    Streamlit serves pages/ by itself on a fresh server's very first run, before app.py has
    called st.navigation once: without this, that first visitor would skip the gate.
    """
    if "uploads" not in st.session_state:
        st.switch_page("app.py", query_params={NEXT_PAGE: page})


#: The query parameter that names the page to open once the gate is passed.
NEXT_PAGE = "next"


#: Who everyone is when no login is configured: one user, so anyone may cancel any job.
OPEN_USER = "anyone (no login)"
#: Who signed in with the shared password (no user name).
SHARED_USER = "shared password"


def current_user() -> tuple[str, bool]:
    """The signed-in user's name and whether they are an administrator (app.py records both at sign-in)."""
    return st.session_state.get("user", OPEN_USER), bool(st.session_state.get("admin"))


def auth_secrets() -> dict:
    """The ``[auth]`` table of Streamlit secrets (``{}`` without a secrets file)."""
    try:
        return st.secrets.to_dict().get("auth", {})
    except FileNotFoundError:  # no secrets.toml: settings come from the environment only
        return {}


def access_policy() -> access.AccessPolicy:
    """Who may use the app, read afresh (environment and secrets); ``LiverSegError`` when the settings are unusable."""
    return access.policy_from(auth_secrets=auth_secrets())


def upload_session() -> uploads.UploadSession:
    """This session's private upload folder (app.py opens it; a page run on its own opens one here)."""
    if "uploads" not in st.session_state:
        st.session_state["uploads"] = uploads.default_store().open_session()
    return st.session_state["uploads"]
