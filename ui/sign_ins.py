"""A reload of the page keeps the signed-in user and their last result (``core.server.sign_ins``).

app.py calls ``resume`` for a session that is not signed in (the token its browser sent), ``begin``
at sign-in (or on an open app's first run), ``hand_over`` on every run (the browser gets the token)
and ``end`` at sign-out; ``ui.state`` calls ``remember`` whenever what the Segment page keeps changes.
"""

from __future__ import annotations

import streamlit as st

from core.server import access
from core.server.sign_ins import SignInStore
from ui.lifecycle import keeper, session_id
from ui.session import OPEN_USER, SHARED_USER
from widgets.browser_token import COOKIE, browser_token

#: Where this session's token is kept (its browser holds the same).
TOKEN = "sign_in_token"


def store() -> SignInStore:
    """The server process's one store, the session keeper's: its sweeper drops the sign-ins of ended sessions."""
    return keeper().sign_ins


def _account(user: str) -> str:
    """The name ``AccessPolicy`` knows the user by (``""``: the shared password)."""
    return "" if user == SHARED_USER else user


def resume(policy: access.AccessPolicy) -> bool:
    """Take over the sign-in the browser's token names, with what its page kept; whether there was one to take.

    Refused (and ended) when the credential it was made with has changed since: a new password, a removed user,
    a login added to an open app. Whether the user is an administrator is read from the settings as they are now.
    """
    token = st.context.cookies.get(COOKIE)
    if not token or TOKEN in st.session_state:
        return False
    claimed = store().claim(token, session_id())
    if claimed is None:
        return False
    token, entry = claimed
    if policy.credential_tag(_account(entry.user)) != entry.credential:
        store().revoke(token)
        return False
    st.session_state.update(entry.kept)
    if entry.user != OPEN_USER:
        st.session_state["user"], st.session_state["admin"] = entry.user, entry.user in policy.admins
    st.session_state[TOKEN] = token
    return True


def begin(policy: access.AccessPolicy) -> None:
    """A new kept sign-in for this session's user (at sign-in, or the open app's first run), unless it has one."""
    if TOKEN not in st.session_state:
        user = st.session_state.get("user", OPEN_USER)
        st.session_state[TOKEN] = store().issue(user, policy.credential_tag(_account(user)), session_id())


def remember(kept: dict) -> None:
    """What the Segment page keeps now, for this session's next reload."""
    if TOKEN in st.session_state:
        store().keep(st.session_state[TOKEN], kept)


def end() -> None:
    """Sign-out: the kept sign-in ends here, and the browser forgets its token on the next run."""
    if TOKEN in st.session_state:
        store().revoke(st.session_state.pop(TOKEN))


def hand_over() -> None:
    """Give the browser this session's token (none when signed out) for the next load of the page."""
    browser_token(st.session_state.get(TOKEN))
