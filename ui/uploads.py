"""Turning a browser upload into what ``core`` reads: saved privately, read, deleted, fingerprinted."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from core.errors import LiverSegError
from ui.session import upload_session

log = logging.getLogger(__name__)
T = TypeVar("T")


def fingerprint(data: bytes) -> str:
    """A short name for a file's bytes: the same file uploaded twice is recognised."""
    return hashlib.sha256(data).hexdigest()[:16]


def name_stem(name: str) -> str:
    """A file name without ``.nii.gz``, ``.nii`` or ``.zip``, for naming downloads after the scan: lower case,
    letters, digits, ``.``, ``-`` and ``_`` only (spaces and brackets trip up shells and some browsers)."""
    stem = Path(name).stem
    for suffix in (".nii.gz", ".nii", ".zip"):
        if name.lower().endswith(suffix):
            stem = name[: -len(suffix)]
            break
    return re.sub(r"[^a-z0-9._-]+", "_", stem.lower()).strip("._-") or "scan"


def read_upload(uploaded, reader: Callable[[Path], T]) -> tuple[T, str]:
    """Save an upload in the session folder, read it with ``reader(path)``, then delete the copy.

    Returns (result, fingerprint); a ``LiverSegError`` carries the message to show.
    """
    data = uploaded.getvalue()
    path = upload_session().save(uploaded.name, data)
    try:
        return reader(path), fingerprint(data)
    except LiverSegError:
        raise
    except MemoryError:
        raise LiverSegError(f"{path.name} does not fit in the memory the server has free now; try again later") from None
    except Exception as error:  # a file no reader foresaw: say so plainly, keep the details in the server log
        log.exception("reading upload %s failed", uploaded.name)
        raise LiverSegError(f"{path.name} could not be read ({type(error).__name__}); check that it is the file you meant "
                            "and export it again") from None  # the saved name: only letters, digits, '.', '_' and '-'
    finally:
        path.unlink(missing_ok=True)
