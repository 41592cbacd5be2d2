"""Faults that are not the user's input: a full disk while writing a checkpoint or an export.

Each must end with one clear line and exit 2, leave the earlier files intact, and leave
no partial file behind.
"""

from __future__ import annotations

import errno

import nibabel as nib
import numpy as np
import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from core.cli import main
from core.imageio import nifti as io
from tests.helpers.fake_training import TINY


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_at_a_checkpoint_keeps_the_earlier_checkpoint_and_writes_no_model(phantoms, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    saves = []
    original = TorchCheckpointIO.save_checkpoint

    def fill_up_after_first_epoch(self, checkpoint, path, storage_options=None):
        saves.append(checkpoint["epoch"])
        if checkpoint["epoch"] >= 1:
            disk_full()
        original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", fill_up_after_first_epoch)
    code = main(["train", "--data", str(phantoms), "--out", str(out), "--val", "case0", "--epochs", "3",
                 "--cache-dir", str(tmp_path / "cache"), *TINY])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines[-1].startswith("error: No space left on device")
    assert "Traceback" not in "\n".join(lines)
    assert not (out / "model.pt").exists() and not (out / "card.json").exists()
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints == ["best.ckpt", "last.ckpt"]  # no .part files left
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")["epoch"] == 0


@pytest.mark.slow  # segments with the shipped model
def test_full_disk_at_export_keeps_the_earlier_label_map(phantom, write_nifti, tmp_path, monkeypatch, capsys):
    scan, _ = phantom
    scan_path = write_nifti(scan.voxels, scan.affine, "scan.nii.gz")
    earlier = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.full(scan.shape, 7, np.uint8), scan.affine), earlier)
    before = earlier.read_bytes()

    def half_written_then_full(image, path):
        path.write_bytes(b"\x1f\x8b half a file")
        disk_full()

    monkeypatch.setattr(io.nib, "save", half_written_then_full)
    code = main(["segment", str(scan_path), "-o", str(earlier)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: No space left on device") and len(err.splitlines()) == 1
    assert earlier.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz", "scan.nii.gz"]
