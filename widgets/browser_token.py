"""Hands this tab's sign-in token to its browser (``browser_token.js``), to be sent back on the next load of the page.

A reload makes a new Streamlit session; the token lets it take over the sign-in and the last
result (``core.server.sign_ins``, ``ui.sign_ins``). The browser keeps the token in the page's
memory and writes it into a one-minute cookie only as the page goes away; the server reads it
from ``st.context.cookies`` once. The component draws nothing and reports nothing back.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

#: The cookie the next page load sends (browser_token.js writes it under this name).
COOKIE = "liverseg_resume"

_component = st.components.v2.component("liverseg_browser_token",
                                         js=(Path(__file__).parent / "browser_token.js").read_text(encoding="utf-8"))


def browser_token(token: str | None) -> None:
    """Give the browser ``token`` for its next page load (``None``: nothing, and a cookie it came with is deleted)."""
    _component(data={"token": token}, key="browser_token")
