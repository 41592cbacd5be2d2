"""Paths a user names (training data from the browser) must stay inside the configured data folders.

The Train page lets anyone who is logged in point the trainer at a folder; without
this check ``..``, an absolute path or a link could make the server read (and
train on, or list) any file its account can reach.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from core import config
from core.errors import LiverSegError


def inside_data_dirs(path: str | Path, roots: Sequence[Path] | None = None) -> Path:
    """The real path of ``path`` if it lies inside one of ``roots`` (default ``config.data_dirs()``).

    A relative ``path`` is taken relative to each root in turn. ``..`` components
    and symbolic links are resolved first, so a link inside a data folder that
    points outside it is refused like any other outside path.

    Raises:
        LiverSegError: the path is outside every data folder, or there are none.
    """
    roots = _roots(roots)
    path = Path(path)
    candidates = [path] if path.is_absolute() else [root / path for root in roots]
    inside = [real for real in (candidate.resolve() for candidate in candidates) if any(real.is_relative_to(root) for root in roots)]
    for real in inside:
        if real.exists():
            return real
    if inside:
        raise LiverSegError(f"{str(path)!r} does not exist in the data folders; check the name")
    listed = ", ".join(str(root) for root in roots)
    raise LiverSegError(f"{str(path)!r} is not inside the data folders ({listed}); choose data there, "
                        "or ask the administrator to add its folder to LIVERSEG_DATA_DIRS")


def _roots(roots: Sequence[Path] | None) -> list[Path]:
    roots = [Path(root).resolve() for root in (config.data_dirs() if roots is None else roots)]
    if not roots:
        raise LiverSegError("no data folders are configured; set LIVERSEG_DATA_DIRS to the folders that hold training data")
    return roots


def files_inside(folder: Path, roots: Sequence[Path] | None = None) -> Iterator[Path]:
    """Every regular file under ``folder`` (itself checked), skipping links that lead out of the data folders.

    For dataset discovery: a case file that is a link to ``/etc/shadow`` is never opened.
    Hidden files and folders (``.name``) are skipped; folders are visited in name order.
    """
    roots = _roots(roots)
    folder = inside_data_dirs(folder, roots)
    for parent, folders, names in os.walk(folder):  # os.walk does not follow links to folders
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(names):
            real = (Path(parent) / name).resolve()
            if not name.startswith(".") and real.is_file() and any(real.is_relative_to(root) for root in roots):
                yield Path(parent) / name
