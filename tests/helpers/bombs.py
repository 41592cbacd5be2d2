"""Small files that declare huge volumes ("decompression bombs"), for the readers' size checks and benchmarks/bomb.py."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

#: The issue's bomb: about 1 MB of gzip declaring 1024x1024x512 int16 (2 GB as float32).
BOMB_SHAPE = (1024, 1024, 512)


def nifti_bomb(path: Path, shape: tuple[int, int, int] = BOMB_SHAPE, data_mb: int = 1024) -> Path:
    """A ``.nii.gz`` declaring ``shape`` int16 voxels, holding ``data_mb`` MB of zeros (compressed about 1000:1)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    zeros = bytes(2**24)
    with gzip.open(path, "wb", compresslevel=9) as stream:
        stream.write(header.binaryblock + b"\0" * 4)  # 348-byte header and the 4-byte extension flag
        for _ in range(data_mb // 16):
            stream.write(zeros)
    return path


def header_only(path: Path, shape: tuple[int, int, int] = (4000, 4000, 4000)) -> Path:
    """A header-only ``.nii`` (a few hundred bytes) declaring ``shape`` int16 voxels."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    path.write_bytes(header.binaryblock + b"\0" * 4)
    return path
