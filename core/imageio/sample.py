"""The built-in real sample: LiTS case 117, fetched once at set-up and kept as NIfTI.

The PyPI wheel ``liver-ct-segmentation-package==1.6.0`` ships a 128^3 crop of
LiTS volume 117 around the liver (float32 HU) and its labels (0/1/2) in MRC
format. Only the wheel is downloaded (``pip download --no-deps``), never its
pinned dependencies; the MRC arrays are converted to NIfTI with the geometry
below and the wheel stays in the cache, so later runs are offline.

Geometry (an assumption, stated wherever volumes are shown): the MRC header
records no voxel size; from the liver's size the voxels are about 1.5 mm, taken
as 1.5 mm isotropic. The orientation was read off the anatomy: array axis 0
runs anterior to posterior (the spine is at its end), axis 1 from the patient's
right to left (the liver comes first, the spine is medial), axis 2 from inferior
to superior (the kidney lies below the liver).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np

from core import config
from core.atomic import atomic_path
from core.imageio.wheels import fetch_wheel

PACKAGE = "liver-ct-segmentation-package==1.6.0"
WHEEL_NAME = "liver_ct_segmentation_package-1.6.0-py2.py3-none-any.whl"
SPACING_MM = 1.5
SPACING_NOTE = "LiTS 117 sample: voxel size not recorded in the source; 1.5 mm isotropic assumed"
# Columns: where array axes 0, 1, 2 point in RAS+ (posterior, left, superior).
AFFINE = np.array(
    [
        [0.0, -SPACING_MM, 0.0, 96.0],
        [-SPACING_MM, 0.0, 0.0, 96.0],
        [0.0, 0.0, SPACING_MM, -96.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def ensure_sample(cache_dir: Path = config.CACHE_DIR) -> tuple[Path, Path]:
    """Fetch and convert the sample if needed; return (scan, labels) NIfTI paths. Idempotent."""
    scan_path, labels_path = cache_dir / "sample" / config.SAMPLE_SCAN.name, cache_dir / "sample" / config.SAMPLE_LABELS.name
    if scan_path.exists() and labels_path.exists():
        return scan_path, labels_path
    wheel = fetch_wheel(PACKAGE, WHEEL_NAME, cache_dir / "wheels", "the sample")
    with zipfile.ZipFile(wheel) as archive:
        image = _read_mrc(archive.read("liver_ct_segmentation_package/data/img_117.mrc")).astype(np.float32)
        labels = _read_mrc(archive.read("liver_ct_segmentation_package/data/lab_117.mrc")).astype(np.uint8)
    for array, path in ((image, scan_path), (labels, labels_path)):
        nifti = nib.Nifti1Image(array, AFFINE)
        nifti.header.set_xyzt_units("mm")
        nifti.header["descrip"] = b"LiTS 117 crop; 1.5 mm spacing assumed"
        with atomic_path(path) as temporary:
            nib.save(nifti, temporary)
    return scan_path, labels_path


def _read_mrc(data: bytes) -> np.ndarray:
    from mrcfile.mrcinterpreter import MrcInterpreter  # only needed at set-up

    with MrcInterpreter(iostream=io.BytesIO(data), permissive=True) as mrc:
        return np.array(mrc.data)
