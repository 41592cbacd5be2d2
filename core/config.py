"""Where things live and the limits the engine enforces: configuration in one place.

Every setting can be overridden by an environment variable named here, so a
lab server can be configured without touching the code.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from core.errors import LiverSegError

ROOT = Path(__file__).resolve().parents[1]


def _path(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser().resolve() if value else default


def _number(variable: str, default: float) -> float:
    value = os.environ.get(variable)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise LiverSegError(f"{variable}={value!r} is not a number; set it to a number or unset it") from None


#: Shipped and locally trained models, one folder each (weights + card.json).
TRAINED_DIR = _path("LIVERSEG_TRAINED_DIR", ROOT / "trained")
#: Downloads and conversions made at set-up (the sample scan); git-ignored.
CACHE_DIR = _path("LIVERSEG_CACHE_DIR", ROOT / ".cache")
SAMPLE_DIR = CACHE_DIR / "sample"
SAMPLE_SCAN = SAMPLE_DIR / "lits117_ct.nii.gz"
SAMPLE_LABELS = SAMPLE_DIR / "lits117_labels.nii.gz"
#: Background training jobs, one folder each.
JOBS_DIR = _path("LIVERSEG_JOBS_DIR", ROOT / ".jobs")
#: The real CT cases beside the checkout (read-only), when present.
SHARED_DATA_DIR = _path("LIVERSEG_SHARED_DATA", ROOT.parent / "shared" / "data")


def data_dirs() -> list[Path]:
    """Folders under which training data may be chosen (``LIVERSEG_DATA_DIRS``, ``os.pathsep``-separated)."""
    value = os.environ.get("LIVERSEG_DATA_DIRS")
    if value:
        return [Path(p).expanduser().resolve() for p in value.split(os.pathsep) if p]
    return [d for d in (SHARED_DATA_DIR, SAMPLE_DIR) if d.is_dir()]


#: Per-session upload folders, removed when the session ends or at the latest after the TTL.
UPLOAD_ROOT = _path("LIVERSEG_UPLOAD_DIR", Path(tempfile.gettempdir()) / "liverseg-uploads")
UPLOAD_TTL_HOURS = _number("LIVERSEG_UPLOAD_TTL_HOURS", 12.0)
#: A sign-in kept across reloads of the page ends this long after the user signed in (core.server.sign_ins).
SIGN_IN_HOURS = _number("LIVERSEG_SIGN_IN_HOURS", 12.0)

#: Lesion components smaller than this are dropped as specks (mL).
MIN_LESION_ML = _number("LIVERSEG_MIN_LESION_ML", 0.1)
#: How far lesions may reach beyond the liver mask before they are cut (mm).
LESION_MARGIN_MM = _number("LIVERSEG_LESION_MARGIN_MM", 3.0)

#: Zip uploads are checked against these before anything is extracted.
ZIP_MAX_FILES = int(_number("LIVERSEG_ZIP_MAX_FILES", 5000))
ZIP_MAX_TOTAL_BYTES = int(_number("LIVERSEG_ZIP_MAX_TOTAL_MB", 4096) * 2**20)
ZIP_MAX_FILE_BYTES = int(_number("LIVERSEG_ZIP_MAX_FILE_MB", 512) * 2**20)
ZIP_MAX_RATIO = _number("LIVERSEG_ZIP_MAX_RATIO", 200)


def _upload_limit_mb() -> float:
    """Streamlit's ``server.maxUploadSize`` as shipped in ``.streamlit/config.toml`` (read as text: core never imports Streamlit)."""
    shipped = ROOT / ".streamlit" / "config.toml"
    found = re.search(r"^maxUploadSize\s*=\s*(\d+)", shipped.read_text(encoding="utf-8"), re.MULTILINE) if shipped.is_file() else None
    return float(found.group(1)) if found else 1024.0


def _memory_bytes() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


#: The largest upload the app accepts (MB); the engine's volume limit follows from it.
MAX_UPLOAD_MB = _number("LIVERSEG_MAX_UPLOAD_MB", _upload_limit_mb())
#: The most bytes one volume may take once read (voxels x bytes per voxel, at least float32's 4): the upload limit,
#: and never more than an eighth of the machine's memory, so that a few sessions reading at once cannot exhaust it.
#: Every reader checks the size a header declares against it before decompressing or allocating anything.
MAX_VOLUME_BYTES = int(_number("LIVERSEG_MAX_VOLUME_MB", min(MAX_UPLOAD_MB, _memory_bytes() / 8 / 2**20)) * 2**20)
