"""LiverSeg dashboard: ``streamlit run app.py`` (or ``make run``).

Before any page runs: the login gate when access is restricted (``core.server.access``),
otherwise a notice on every page that the app is open; then each session gets its
private upload folder (``st.session_state["uploads"]``, a ``core.server.uploads.UploadSession``).
``st.navigation`` is called on every path, so Streamlit never falls back to serving
``pages/`` directly, around the gate. A reload of the page takes the tab's sign-in and last
result over from the session before it (``ui.sign_ins``).
"""

import functools

import streamlit as st

from core.errors import LiverSegError
from core.server import access, uploads
from ui import caches, lifecycle, sign_ins
from ui.session import NEXT_PAGE, SHARED_USER, access_policy, upload_session
from ui.text import plain

st.set_page_config(page_title="LiverSeg", page_icon="🩺", layout="wide")

PAGES = [
    st.Page("pages/segment.py", title="Segment", icon=":material/radiology:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/models.py", title="Models", icon=":material/inventory_2:"),
]


def _login(policy: access.AccessPolicy) -> None:
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        _login_form(policy)
    sign_ins.hand_over()  # signed out: the browser forgets any token


def _login_form(policy: access.AccessPolicy) -> None:
    st.title("LiverSeg")
    st.write("This server is private. Log in to continue.")
    # Per session, and per client address when Streamlit knows it (not behind a proxy or on localhost).
    st.session_state.setdefault("login_key", uploads.new_session_id())
    keys = [st.session_state["login_key"]] + ([st.context.ip_address] if st.context.ip_address else [])
    with st.form("login"):
        user = st.text_input("User name", help="Leave empty to use the shared password." if policy.password else None) if policy.users else ""
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    outcome = caches.login_guard().attempt(policy, user, password, keys)
    if isinstance(outcome, access.Refusal):
        st.error(outcome.message, icon=":material/lock_clock:")
    elif outcome:
        st.session_state["user"] = user.strip() or SHARED_USER
        st.session_state["admin"] = user.strip() in policy.admins
        st.rerun()
    else:
        st.error("Wrong user name or password." if policy.users else "Wrong password.")


def _logout() -> None:
    sign_ins.end()
    lifecycle.keeper().sign_out()
    if "uploads" in st.session_state:
        st.session_state["uploads"].close()
    st.session_state.clear()


def _pages() -> list:
    """The pages this session may see: all of them, or only the login form or a configuration error."""
    keeper = lifecycle.keeper()  # from the first session on, uploads need a signed-in session
    try:
        policy = access_policy()
    except LiverSegError as error:
        message = f"Access settings are unusable, so nobody is let in: {error}"  # fail closed, never open
        return [st.Page(lambda: st.error(message), title="LiverSeg", url_path="error")]
    sign_ins.resume(policy)  # a reload of the page: the same user, with their last result
    if policy.open:
        st.caption(":material/lock_open: This app is open to anyone who can reach this address: no password is set. "
                   "See *Running on a lab server* in the README to restrict it.")
    elif "user" not in st.session_state:
        # Every page's address shows the login form (a bookmarked /train is not "Page not found"), and after
        # signing in the same address is that page.
        login = functools.partial(_login, policy)
        return [st.Page(login, title="Log in", url_path="login", default=True),
                *(st.Page(login, title=page.title, url_path=page.url_path) for page in PAGES if page.url_path)]
    else:
        role = " (administrator)" if st.session_state.get("admin") else ""
        st.sidebar.caption(f"Signed in as **{plain(st.session_state['user'])}**{role}")
        st.sidebar.button("Log out", icon=":material/logout:", on_click=_logout)
    try:
        keeper.sign_in(upload_session())
    except LiverSegError as error:
        message = f"The server cannot keep uploads: {error}"  # bound here: the except clause unbinds ``error``
        return [st.Page(lambda: st.error(message), title="LiverSeg", url_path="error")]
    st.sidebar.caption(f"Files you upload are private to this browser tab and deleted when you leave, "
                       f"or at the latest after {uploads.default_store().ttl_hours:g} hours.")
    sign_ins.begin(policy)
    with st.sidebar:
        sign_ins.hand_over()
    caches.load_engine()
    return PAGES


pages = _pages()
# Signed out, the login form stands at every address: no navigation between its copies.
navigation = st.navigation(pages, position="hidden" if pages[0].title == "Log in" else "sidebar")
if pages is PAGES and NEXT_PAGE in st.query_params:  # through the gate from a page served on its own
    wanted = st.query_params.pop(NEXT_PAGE)
    st.switch_page(next((page for page in PAGES if page.url_path == wanted), PAGES[0]))  # a known page, never an address
navigation.run()
