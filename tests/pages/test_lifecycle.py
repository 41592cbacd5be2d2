"""ui/lifecycle.py with a stand-in Streamlit runtime: the upload gate and the sweep of closed sessions (issue 22, 3 and 5).

tests/e2e/test_sessions.py checks the same against the real Streamlit server.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.server.uploads import UploadStore
from ui import lifecycle


class Expiring:
    """Streamlit's store of disconnected sessions: ``expire()`` hands back those past their timeout."""

    def __init__(self) -> None:
        self.expired: list = []

    def expire(self) -> list:
        expired, self.expired = self.expired, []
        return expired


@pytest.fixture
def runtime():
    live: set[str] = set()
    files: dict[str, dict] = {}
    storage = Expiring()
    manager = SimpleNamespace(_session_storage=SimpleNamespace(_cache=storage),
                              get_session_info=lambda sid: object() if sid in live else None)
    uploaded = SimpleNamespace(file_storage=files, remove_session_files=lambda sid: files.pop(sid, None))
    return SimpleNamespace(is_active_session=lambda sid: sid in live, uploaded_file_mgr=uploaded, _session_mgr=manager,
                           live=live, storage=storage)


def test_only_signed_in_sessions_with_few_files_may_upload(runtime, monkeypatch, tmp_path):
    keeper = lifecycle.SessionKeeper(runtime)
    keeper.install()
    runtime.live.update({"a", "b"})
    assert not runtime.is_active_session("a")  # on the login page: refused
    monkeypatch.setattr(lifecycle, "session_id", lambda: "a")
    keeper.sign_in(UploadStore(tmp_path).open_session())
    assert runtime.is_active_session("a") and not runtime.is_active_session("b")
    runtime.uploaded_file_mgr.file_storage["a"] = {n: None for n in range(lifecycle.MAX_FILES_PER_SESSION)}
    assert not runtime.is_active_session("a")  # enough files held already
    keeper.sign_out()
    runtime.uploaded_file_mgr.file_storage["a"] = {}
    assert not runtime.is_active_session("a")


def test_a_closed_session_is_shut_down_and_its_files_and_folder_released(runtime, monkeypatch, tmp_path):
    keeper = lifecycle.SessionKeeper(runtime)
    runtime.live.add("a")
    monkeypatch.setattr(lifecycle, "session_id", lambda: "a")
    upload = UploadStore(tmp_path).open_session()
    upload.save("scan.nii.gz", b"data")
    keeper.sign_in(upload)
    kept = keeper.sign_ins.issue("alice", "tag", session="a")  # what a reload of the tab would take over
    runtime.uploaded_file_mgr.file_storage["a"] = {"f": b"data"}
    assert keeper.sweep() == 0 and upload.folder.exists() and len(keeper.sign_ins) == 1  # still open (or within its timeout)

    shut = []
    runtime.live.discard("a")  # the tab closed and its timeout passed
    runtime.storage.expired = [("a", SimpleNamespace(session=SimpleNamespace(shutdown=lambda: shut.append("a"))))]
    assert keeper.sweep() == 1
    assert shut == ["a"] and "a" not in keeper.signed_in and "a" not in runtime.uploaded_file_mgr.file_storage
    assert keeper.sign_ins.claim(kept, "b") is None and len(keeper.sign_ins) == 0  # no reload came: its result goes too
    assert list(tmp_path.iterdir()) == []
