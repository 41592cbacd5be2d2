import pytest

from core.atomic import atomic_path, write_atomically


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old", encoding="utf-8")
    write_atomically(target, b"new")
    assert target.read_text(encoding="utf-8") == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_failure_keeps_the_old_file_and_removes_the_partial_one(tmp_path):
    target = tmp_path / "labels.nii.gz"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(OSError):
        with atomic_path(target) as temporary:
            assert temporary.name.endswith(".nii.gz")
            temporary.write_text("half", encoding="utf-8")
            raise OSError(28, "No space left on device")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]
