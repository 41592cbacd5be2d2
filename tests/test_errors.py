"""Error messages: one type, and no machine path in what users read (the project's own messages and libraries')."""

from __future__ import annotations

import pickle

import pytest

from core.cli import main
from core.errors import LiverSegError, without_paths
from core.reasons import reason


@pytest.mark.parametrize("text, shortened", [
    ("/srv/data/lits/volume-3.nii does not exist", "volume-3.nii does not exist"),
    ("cannot read '/home/ana/scan.nii.gz' (truncated)", "cannot read 'scan.nii.gz' (truncated)"),
    ("folders (/work/shared/data, /tmp/x/sample)", "folders (data, sample)"),
    ("../shared/data and .cache/sample are relative", "../shared/data and .cache/sample are relative"),
    ("labels 0/1/2 at 1.5/2 mm", "labels 0/1/2 at 1.5/2 mm"),
])
def test_absolute_paths_are_shortened_to_their_names(text, shortened):
    assert without_paths(text) == shortened


def test_the_projects_messages_and_the_libraries_pass_the_same_rule():
    message = "no model card at /opt/liverseg/trained/m; restore it"
    assert str(LiverSegError(message)) == reason(OSError(message)) == "no model card at m; restore it"
    copy = pickle.loads(pickle.dumps(LiverSegError(message)))  # job runners hand errors between processes
    assert str(copy) == str(LiverSegError(message))


def test_the_cli_names_a_missing_input_by_its_file_name(tmp_path, capsys):
    assert main(["segment", str(tmp_path / "nowhere" / "scan.nii.gz"), "-o", str(tmp_path / "out.nii.gz")]) == 2
    printed = capsys.readouterr().err
    assert "scan.nii.gz does not exist" in printed and str(tmp_path) not in printed and printed.count("\n") == 1
