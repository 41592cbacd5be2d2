"""Finding 2 of issue 22: a decompression bomb is refused from its header, at once, in every reader and the CLI."""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile

import pytest

from core import config
from core.errors import LiverSegError
from core.imageio.ground_truth import LabelGrid, load_ground_truth
from core.imageio.limits import check_declared
from core.imageio.nifti import read_label_map, read_scan
from tests.helpers.bombs import header_only, nifti_bomb
from tests.helpers.dicom_factory import write_dicom_series
from tests.helpers.phantom import make_phantom


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return nifti_bomb(tmp_path_factory.mktemp("bomb") / "bomb.nii.gz")


def test_the_limit_follows_the_upload_limit_and_the_memory():
    assert 0 < config.MAX_VOLUME_BYTES <= config.MAX_UPLOAD_MB * 2**20
    check_declared((512, 512, 1000), 2, "a long CT")  # a real abdominal CT at full resolution still fits
    with pytest.raises(LiverSegError, match=r"1024x1024x512 voxels \(2.0 GB once read\)"):
        check_declared((1024, 1024, 512), 2, "bomb")


@pytest.mark.parametrize("reader", [read_scan, read_label_map, lambda path: load_ground_truth(path, LabelGrid((8, 8, 8), __import__("numpy").eye(4)))])
def test_every_nifti_reader_refuses_a_bomb_from_its_header(reader, bomb):
    started = time.perf_counter()
    with pytest.raises(LiverSegError, match="declares 1024x1024x512 voxels"):
        reader(bomb)
    assert time.perf_counter() - started < 1.0


def test_a_dicom_series_declaring_too_much_is_refused_before_it_is_read(tmp_path, monkeypatch):
    scan, _ = make_phantom((16, 16, 8), spacing=(4.0, 4.0, 5.0))
    files = write_dicom_series(scan, tmp_path / "dicom")
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as archive:
        for file in files:
            archive.write(file, file.name)
    monkeypatch.setattr(config, "MAX_VOLUME_BYTES", 16 * 16 * 8 * 4 - 1)  # one byte less than the series takes
    for source in (tmp_path / "dicom", tmp_path / "series.zip"):
        with pytest.raises(LiverSegError, match="declares 16x16x8 voxels"):
            read_scan(source)


@pytest.mark.parametrize("make", [nifti_bomb, header_only], ids=["nii.gz bomb", "header of 4000^3"])
def test_the_cli_refuses_a_bomb_in_one_line_exit_2_under_1_s_and_little_memory(make, tmp_path):
    path = make(tmp_path / ("bomb.nii.gz" if make is nifti_bomb else "bomb.nii"))
    started = time.perf_counter()
    peak = tmp_path / "peak_kb"
    run = subprocess.run(["/usr/bin/time", "-o", str(peak), "-f", "%M", sys.executable, "-m", "core", "segment", str(path), "-o", str(tmp_path / "out.nii.gz")],
                         capture_output=True, text=True, cwd=config.ROOT, timeout=60)
    seconds = time.perf_counter() - started
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: bomb.nii") and "declares" in lines[0], run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out.nii.gz").exists()
    assert seconds < 2.0, seconds  # the header shows it: refused before torch is imported
    assert int(peak.read_text().split()[-1]) < 500 * 1024


def test_a_memory_error_is_one_clear_line(tmp_path, monkeypatch, capsys):
    from core import cli

    def no_memory(args):
        raise MemoryError
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["segment"].set_defaults(run=no_memory)
    assert cli.main(["segment", str(tmp_path / "x.nii.gz"), "-o", str(tmp_path / "y.nii.gz")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("shape, message", [((64, 64, 1), "is a 2D image"), ((16, 16, 8, 3), "is a 4D series"),
                                            ((1024, 1024, 512), "declares 1024x1024x512")])
def test_the_cli_refuses_what_a_header_shows_before_importing_torch(shape, message, tmp_path):
    """Issue 22, finding 9: a bad file took 4-14 s and 380 MB to be refused, because torch was imported first."""
    path = header_only(tmp_path / "bad.nii", shape)
    # CPU seconds of the whole process, interpreter start included: wall time on a loaded shared machine says little.
    script = ("import resource, sys; from core.cli import main; "
              f"code = main(['segment', {str(path)!r}, '-o', {str(tmp_path / 'out.nii.gz')!r}]); "
              "usage = resource.getrusage(resource.RUSAGE_SELF); print(code, 'torch' in sys.modules, usage.ru_utime + usage.ru_stime)")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=config.ROOT, timeout=60)
    code, torch_imported, seconds = run.stdout.split()
    assert code == "2" and torch_imported == "False" and float(seconds) < 1.0, run.stdout
    assert run.stderr.startswith("error: bad.nii") and message in run.stderr and run.stderr.count("\n") == 1
