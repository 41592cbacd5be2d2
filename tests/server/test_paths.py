"""core.server.paths: user-named training data must stay inside the configured data folders."""

import pytest

from core.errors import LiverSegError
from core.server.paths import files_inside, inside_data_dirs


@pytest.fixture
def layout(tmp_path):
    """data/ (the one data folder) with a case, a link out, and a secret beside it."""
    data = tmp_path / "data"
    (data / "lits").mkdir(parents=True)
    (data / "lits" / "volume-0.nii").write_bytes(b"ct")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd").write_text("root", encoding="utf-8")
    (data / "lits" / "leak.nii").symlink_to(secret / "passwd")
    (data / "outside").symlink_to(secret)
    (data / "lits" / "alias.nii").symlink_to(data / "lits" / "volume-0.nii")
    return data


def test_relative_and_absolute_paths_inside_are_accepted(layout):
    assert inside_data_dirs("lits", [layout]) == layout / "lits"
    assert inside_data_dirs(layout / "lits", [layout]) == layout / "lits"
    assert inside_data_dirs(".", [layout]) == layout


@pytest.mark.parametrize("path", ["..", "../secret", "lits/../../secret", "outside", "/etc", "/"])
def test_paths_that_lead_out_are_refused(layout, path):
    with pytest.raises(LiverSegError, match="not inside the data folders"):
        inside_data_dirs(path, [layout])


def test_missing_path_inside_says_so(layout):
    with pytest.raises(LiverSegError, match="does not exist"):
        inside_data_dirs("nope", [layout])


def test_no_data_folders_configured(layout):
    with pytest.raises(LiverSegError, match="LIVERSEG_DATA_DIRS"):
        inside_data_dirs("lits", [])


def test_default_roots_come_from_the_configuration(layout, monkeypatch):
    monkeypatch.setenv("LIVERSEG_DATA_DIRS", str(layout))
    assert inside_data_dirs("lits") == layout / "lits"
    with pytest.raises(LiverSegError):
        inside_data_dirs("..")


def test_listing_skips_links_that_point_out(layout):
    names = [path.name for path in files_inside(layout, [layout])]
    assert names == ["alias.nii", "volume-0.nii"]  # leak.nii and the linked folder are left out
