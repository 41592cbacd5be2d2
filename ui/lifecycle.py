"""A browser session outside its script runs: who may upload, and what is released when a tab is closed.

Streamlit accepts a file on ``PUT /_stcore/upload_file/<session id>/<file id>`` for any live
session, before any script of ours runs: a visitor on the login page could fill the
server's memory. Its upload route asks ``Runtime.is_active_session`` first, before reading
the body; ``SessionKeeper.install`` wraps that one method so that it also requires the
session to be signed in (when a login is configured) and to hold fewer than
``MAX_FILES_PER_SESSION`` files. A refused upload gets 400 and nothing of it is read.

A closed tab's session is kept ``server.disconnectedSessionTTL`` seconds for a reconnect,
then only marked expired: Streamlit never shuts it down, so its state, its uploaded files
and our upload folder stay in memory and on disk until something else happens to evict
it. A sweeper thread (every ``SWEEP_S``) shuts such sessions down, drops what they left
(uploaded files, upload folders, sign-ins, and the sign-ins kept for a reload that no
reload has claimed: ``core.server.sign_ins``), and returns the freed memory to the system.

This reaches into Streamlit 1.67's session manager (``_session_mgr._session_storage``),
which has no public hook for it; ``tests/e2e/test_sessions.py`` fails if that changes.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import threading
import time

from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.server.sign_ins import SignInStore
from core.server.uploads import UploadSession

log = logging.getLogger(__name__)

#: Files one session may hold in Streamlit's memory at once (the Segment page has two uploaders).
MAX_FILES_PER_SESSION = 4
#: How often closed sessions are looked for (s); the README promises release within the session TTL plus a minute.
SWEEP_S = float(os.environ.get("LIVERSEG_SESSION_SWEEP_S", 30))


def session_id() -> str:
    """The Streamlit id of the session whose script is running."""
    return get_script_run_ctx().session_id


class SessionKeeper:
    """The server's sessions as this app sees them: which are signed in, which upload folder each has, which sign-ins
    a reload may take over (``sign_ins``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.signed_in: set[str] = set()
        self.uploads: dict[str, UploadSession] = {}
        self.sign_ins = SignInStore()
        self._lock = threading.Lock()

    def install(self) -> None:
        """Gate the upload route and start the sweeper (once per server process)."""
        is_active = self.runtime.is_active_session

        def may_upload(session_id: str) -> bool:
            files = getattr(self.runtime.uploaded_file_mgr, "file_storage", {}).get(session_id, {})
            return is_active(session_id) and session_id in self.signed_in and len(files) < MAX_FILES_PER_SESSION

        self.runtime.is_active_session = may_upload  # only the upload route calls it (Streamlit 1.67)
        threading.Thread(target=self._sweep_forever, name="liverseg-session-sweeper", daemon=True).start()

    def sign_in(self, upload_session: UploadSession) -> None:
        """The running session may upload (signed in, or the app is open); ``upload_session`` is its folder."""
        with self._lock:
            self.signed_in.add(session_id())
            self.uploads[session_id()] = upload_session

    def sign_out(self) -> None:
        with self._lock:
            self.signed_in.discard(session_id())
            self.uploads.pop(session_id(), None)

    def _sweep_forever(self) -> None:
        while True:
            time.sleep(SWEEP_S)
            try:
                self.sweep()
            except Exception:  # never let the sweeper die: the next round may succeed
                log.exception("sweeping closed sessions failed")

    def sweep(self) -> int:
        """Shut down expired sessions, drop what closed sessions left, give memory back; returns how many were released."""
        manager = self.runtime._session_mgr
        storage = getattr(getattr(manager, "_session_storage", None), "_cache", None)
        for _, info in storage.expire() if hasattr(storage, "expire") else ():
            info.session.shutdown()  # what Streamlit skips for an expired session: its uploaded files, caches, script thread
        with self._lock:
            gone = [sid for sid in self.signed_in | set(self.uploads) if manager.get_session_info(sid) is None]
            for sid in gone:
                self.signed_in.discard(sid)
                upload = self.uploads.pop(sid, None)
                if upload is not None:
                    upload.close()
        files = getattr(self.runtime.uploaded_file_mgr, "file_storage", {})
        for sid in [sid for sid in list(files) if manager.get_session_info(sid) is None]:
            self.runtime.uploaded_file_mgr.remove_session_files(sid)
        self.sign_ins.release_ended(lambda sid: manager.get_session_info(sid) is not None)
        release_memory()
        return len(gone)


def release_memory() -> None:
    """Collect cycles and hand freed heap pages back to the system (glibc keeps them otherwise, and RSS stays high)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory is still reused by this process
        pass


_keeper: SessionKeeper | None = None
_keeper_lock = threading.Lock()


def keeper() -> SessionKeeper:
    """The one keeper of this server process, installed on first use.

    A module-level singleton, not ``st.cache_resource``: clearing the caches must never
    install a second gate around the first (whose sign-ins the new keeper would not know).
    """
    global _keeper
    with _keeper_lock:
        if _keeper is None:
            _keeper = SessionKeeper(Runtime.instance())
            _keeper.install()
    return _keeper
