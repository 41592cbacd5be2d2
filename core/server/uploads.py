"""Uploaded files: one private temporary folder per browser session, and nowhere else.

Layout: ``ROOT/<session id>/<sanitised file name>``, where ``ROOT`` is
``LIVERSEG_UPLOAD_DIR`` (default ``<system temp>/liverseg-uploads``) and the
session id is 128 random bits that only that session holds. Folders are ``0700``
and files ``0600``, so other accounts on the server cannot read them, and nothing
here is ever served over HTTP.

Streamlit says nothing reliable when a session ends, so a folder goes away by
whichever comes first:

- its session's ``UploadSession`` object is garbage-collected (Streamlit drops a
  closed tab's session state a few minutes after the tab goes), or the server
  process exits;
- it has not been touched for ``LIVERSEG_UPLOAD_TTL_HOURS`` (default 12): every
  new session sweeps such folders, which also cleans up after a crash or kill.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import secrets
import shutil
import stat
import time
import unicodedata
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from core import config
from core.atomic import atomic_path
from core.errors import LiverSegError

UPLOAD_ROOT, UPLOAD_TTL_HOURS = config.UPLOAD_ROOT, config.UPLOAD_TTL_HOURS

_SESSION_ID = re.compile(r"[0-9a-f]{32}")
_MAX_NAME = 120


def new_session_id() -> str:
    """A fresh unguessable session id (32 hex digits)."""
    return secrets.token_hex(16)


def sanitise_filename(name: str) -> str:
    """A safe file name that keeps what the user will recognise: ``../../etc/passwd`` -> ``passwd``.

    Drops any folder part (``/`` or ``\\``), leading dots (no hidden files, no ``..``)
    and every character outside letters, digits, ``.``, ``_`` and ``-``; keeps the
    suffixes (``.nii.gz``) when shortening a long name. Never empty.
    """
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = re.split(r"[/\\]", name)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")
    if len(name) > _MAX_NAME:
        stem, dot, suffixes = name.partition(".")
        suffixes = (dot + suffixes)[-20:]
        name = stem[: _MAX_NAME - len(suffixes)] + suffixes
    return name or "upload"


class UploadStore:
    """Per-session upload folders under ``root``.

    Args:
        root: the folder that holds the session folders; created ``0700`` if missing and
            refused if it is a link or belongs to another account.
        ttl_hours: how long an untouched session folder is kept.
    """

    def __init__(self, root: Path = UPLOAD_ROOT, ttl_hours: float = UPLOAD_TTL_HOURS) -> None:
        self.root = Path(root)
        self.ttl_hours = ttl_hours
        self._check_root()

    def _check_root(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.root.lstat()
        except OSError as error:
            raise LiverSegError(f"cannot create the upload folder {self.root} ({error.strerror}); set LIVERSEG_UPLOAD_DIR to a writable folder") from None
        # In a shared /tmp another account could have made this path first, to read or swap what is uploaded.
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise LiverSegError(f"the upload folder {self.root} is not a folder owned by this account; remove it or set LIVERSEG_UPLOAD_DIR")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.root, 0o700)

    def _path(self, session_id: str) -> Path:
        # The id names a folder: anything but our own format could climb out of root.
        if not _SESSION_ID.fullmatch(session_id):
            raise ValueError(f"not an upload session id: {session_id!r}")
        return self.root / session_id

    def session_dir(self, session_id: str) -> Path:
        """The session's folder (created ``0700`` if needed); marks the session as active."""
        folder = self._path(session_id)
        folder.mkdir(mode=0o700, exist_ok=True)
        os.utime(folder)  # the expiry clock runs from the last use, not from the first upload
        return folder

    def save(self, session_id: str, name: str, data: bytes | BinaryIO) -> Path:
        """Write an upload into the session's folder under its sanitised name; returns the path.

        The write is atomic: an interrupted upload or a full disk leaves no partial
        file, and an earlier upload of the same name stays intact until replaced.
        """
        path = self.session_dir(session_id) / sanitise_filename(name)
        try:
            with atomic_path(path) as temporary:
                with open(temporary, "wb") as stream:
                    if isinstance(data, (bytes, bytearray, memoryview)):
                        stream.write(data)
                    else:
                        data.seek(0)
                        shutil.copyfileobj(data, stream, 2**22)
                os.chmod(temporary, 0o600)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise LiverSegError(f"the server's disk is full; the upload {path.name!r} was not kept. Ask the server's administrator to free space") from None
            raise
        return path

    def remove(self, session_id: str) -> None:
        """Delete the session's folder and everything in it (no error if already gone)."""
        shutil.rmtree(self._path(session_id), ignore_errors=True)

    def sessions(self) -> Iterable[str]:
        return [entry.name for entry in self.root.iterdir() if _SESSION_ID.fullmatch(entry.name)]

    def purge_expired(self, now: float | None = None) -> list[str]:
        """Remove session folders untouched for longer than the TTL; returns their ids."""
        cutoff = (time.time() if now is None else now) - self.ttl_hours * 3600
        expired = []
        for session_id in self.sessions():
            try:
                if (self.root / session_id).lstat().st_mtime < cutoff:
                    self.remove(session_id)
                    expired.append(session_id)
            except FileNotFoundError:  # another process swept it first
                continue
        return expired

    def open_session(self) -> UploadSession:
        """Sweep expired folders, then start a session with a fresh id."""
        self.purge_expired()
        return UploadSession(self, new_session_id())


class UploadSession:
    """One browser session's uploads; its folder is removed when this object is collected or the process exits.

    Keep it in the session's state (``st.session_state``) so that it lives exactly as
    long as the session does.
    """

    def __init__(self, store: UploadStore, session_id: str) -> None:
        self.store = store
        self.id = session_id
        self._finalizer = weakref.finalize(self, store.remove, session_id)  # also runs at interpreter exit

    @property
    def folder(self) -> Path:
        return self.store.session_dir(self.id)

    def save(self, name: str, data: bytes | BinaryIO) -> Path:
        return self.store.save(self.id, name, data)

    def close(self) -> None:
        """Remove the folder now (log-out, or the user discards the scan)."""
        self._finalizer()


@functools.cache
def default_store() -> UploadStore:
    """The server process's store under ``UPLOAD_ROOT`` (one per process, shared by every session)."""
    return UploadStore()
