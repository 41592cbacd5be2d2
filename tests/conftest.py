"""Fixtures shared by every test layer: phantoms, the sample, the real data."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from core import config
from core.scan import Scan
from core.segmentation import LESION, LIVER
from tests.helpers.phantom import make_phantom


@pytest.fixture
def phantom() -> tuple[Scan, np.ndarray]:
    """A small RAS phantom scan and its labels."""
    return make_phantom()


@pytest.fixture
def write_nifti(tmp_path: Path):
    """Factory: save an array with an affine as NIfTI under tmp_path and return the path."""

    def write(array: np.ndarray, affine: np.ndarray, name: str = "image.nii.gz") -> Path:
        path = tmp_path / name
        nib.save(nib.Nifti1Image(array, affine), path)
        return path

    return write


@pytest.fixture
def run_page():
    """Function: run ``pages/NAME.py`` once in Streamlit's AppTest, past app.py's login gate, without an exception."""
    from streamlit.testing.v1 import AppTest

    def run(name: str) -> AppTest:
        page = AppTest.from_file(str(config.ROOT / "pages" / f"{name}.py"), default_timeout=180)
        page.session_state["uploads"] = None  # app.py's gate has run (the page keeps no uploads of its own)
        page.run()
        assert not page.exception, page.exception
        return page

    return run


@pytest.fixture(scope="session")
def machine_paths():
    """Function: every absolute path (POSIX, home-relative or Windows) in a JSON-like value, e.g. a model card."""

    def find(value: object) -> list[str]:
        if isinstance(value, dict):
            return [path for item in value.values() for path in find(item)]
        if isinstance(value, list):
            return [path for item in value for path in find(item)]
        if isinstance(value, str):
            return [word for word in re.split(r"[\s'\"=,;()]+", value) if re.match(r"/|~|[A-Za-z]:[\\/]", word)]
        return []

    return find


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a skip that says why."""
    if not (config.SHARED_DATA_DIR / "README.md").exists():
        pytest.skip(f"real CT data not found at {config.SHARED_DATA_DIR} (../shared/data beside the checkout)")
    return config.SHARED_DATA_DIR


@pytest.fixture(scope="session")
def sample_paths() -> tuple[Path, Path]:
    """The built-in LiTS 117 sample (scan, labels), fetched by `make test` before pytest runs."""
    from core.imageio.sample import ensure_sample

    return ensure_sample()


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory) -> Path:
    """Three phantom cases in the NAME.nii.gz + NAME_seg.nii.gz layout, one of them liver-only."""
    folder = tmp_path_factory.mktemp("phantoms")
    for seed in range(3):
        scan, labels = make_phantom(shape=(40, 36, 24), spacing=(6.0, 6.0, 6.0), seed=seed)
        if seed == 2:
            labels[labels == LESION] = LIVER  # a liver-only label
        nib.save(nib.Nifti1Image(scan.voxels, scan.affine), folder / f"case{seed}.nii.gz")
        nib.save(nib.Nifti1Image(labels, scan.affine), folder / f"case{seed}_seg.nii.gz")
    return folder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whole real CT cases take tens of seconds each: every shared-data test is also a slow one."""
    for item in items:
        if item.get_closest_marker("shared_data"):
            item.add_marker(pytest.mark.slow)
