"""core.server.uploads: private per-session folders, sanitised names, expiry and clean-up."""

import gc
import io
import os
import stat
import time

import pytest

from core.errors import LiverSegError
from core.server.uploads import UploadStore, new_session_id, sanitise_filename


@pytest.fixture
def store(tmp_path) -> UploadStore:
    return UploadStore(tmp_path / "uploads", ttl_hours=1.0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("scan.nii.gz", "scan.nii.gz"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\ct 01.zip", "ct_01.zip"),
        ("..", "upload"),
        (".hidden.nii", "hidden.nii"),
        ("", "upload"),
        ("Hépatique é.nii.gz", "Hepatique_e.nii.gz"),
        ("a/b\x00c;rm -rf.nii", "b_c_rm_-rf.nii"),
    ],
)
def test_sanitise_filename(name, expected):
    assert sanitise_filename(name) == expected


def test_long_names_keep_their_suffixes():
    name = sanitise_filename("x" * 500 + ".nii.gz")
    assert len(name) <= 120 and name.endswith(".nii.gz")


def test_save_writes_only_inside_the_private_session_folder(store):
    session = new_session_id()
    path = store.save(session, "../../escape.nii.gz", b"data")
    assert path == store.root / session / "escape.nii.gz"
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in store.root.rglob("*")) == sorted([session, "escape.nii.gz"])


def test_save_accepts_a_file_object_and_replaces_atomically(store):
    session = new_session_id()
    store.save(session, "scan.nii", b"old")
    stream = io.BytesIO(b"new contents")
    stream.read(3)  # Streamlit hands over a stream that may have been read already
    assert store.save(session, "scan.nii", stream).read_bytes() == b"new contents"
    assert [p.name for p in store.session_dir(session).iterdir()] == ["scan.nii"]


def test_sessions_do_not_see_each_other(store):
    first, second = new_session_id(), new_session_id()
    assert first != second
    store.save(first, "scan.nii", b"patient A")
    assert list(store.session_dir(second).iterdir()) == []


@pytest.mark.parametrize("bad_id", ["..", "../other", "/tmp", "ABC", new_session_id() + "/..", ""])
def test_session_ids_cannot_name_other_folders(store, bad_id):
    with pytest.raises(ValueError):
        store.session_dir(bad_id)
    with pytest.raises(ValueError):
        store.remove(bad_id)


def test_remove_deletes_the_folder(store):
    session = new_session_id()
    store.save(session, "scan.nii", b"x")
    store.remove(session)
    store.remove(session)  # twice is fine
    assert not (store.root / session).exists()


def test_purge_removes_only_folders_untouched_for_longer_than_the_ttl(store):
    old, fresh = new_session_id(), new_session_id()
    store.save(old, "a.nii", b"x")
    store.save(fresh, "b.nii", b"y")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(store.root / old, (two_hours_ago, two_hours_ago))
    (store.root / "not-a-session").mkdir()  # not ours to delete
    assert store.purge_expired() == [old]
    assert sorted(p.name for p in store.root.iterdir()) == sorted([fresh, "not-a-session"])


def test_using_a_session_restarts_its_clock(store):
    session = new_session_id()
    store.save(session, "a.nii", b"x")
    long_ago = time.time() - 5 * 3600
    os.utime(store.root / session, (long_ago, long_ago))
    store.session_dir(session)
    assert store.purge_expired() == []


def test_open_session_sweeps_and_its_folder_goes_with_it(store):
    stale = new_session_id()
    store.save(stale, "a.nii", b"x")
    os.utime(store.root / stale, (0, 0))
    session = store.open_session()
    assert not (store.root / stale).exists()
    folder = session.save("scan.nii", b"x").parent
    del session
    gc.collect()
    assert not folder.exists()


def test_close_removes_at_once(store):
    session = store.open_session()
    folder = session.save("scan.nii", b"x").parent
    session.close()
    assert not folder.exists()


def test_full_disk_gives_a_clear_message_and_no_partial_file(store, monkeypatch):
    session = new_session_id()
    store.save(session, "scan.nii", b"earlier")

    class FullDisk(io.BytesIO):
        def read(self, *args):
            raise OSError(28, "No space left on device")

    with pytest.raises(LiverSegError, match="disk is full"):
        store.save(session, "scan.nii", FullDisk(b"x"))
    assert [p.name for p in store.session_dir(session).iterdir()] == ["scan.nii"]
    assert (store.root / session / "scan.nii").read_bytes() == b"earlier"


def test_root_owned_elsewhere_or_a_link_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(LiverSegError, match="LIVERSEG_UPLOAD_DIR"):
        UploadStore(tmp_path / "link")


def test_loose_root_permissions_are_tightened(tmp_path):
    root = tmp_path / "uploads"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)
    UploadStore(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
