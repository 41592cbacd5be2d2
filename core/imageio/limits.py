"""How big a volume may be, judged from what its header declares, before anything is decompressed or allocated.

A 1 MB ``.nii.gz`` can declare 1024x1024x512 voxels, and a 294-byte header 4000^3: reading
it first and judging it afterwards costs gigabytes and minutes (or ends in a MemoryError).
Every reader asks ``check_declared`` first, and the command line asks ``check_header``
before it imports the heavy libraries (torch), so that such a file is refused at once.
This module stays light (nibabel, numpy, zipfile) for that reason.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from core import config
from core.errors import LiverSegError
from core.imageio.archive import check_zip
from core.reasons import reason

#: Volumes are held as float32 once read, so a voxel costs at least this many bytes whatever its stored type.
_MIN_BYTES_PER_VOXEL = 4


def check_declared(shape: tuple[int, ...], bytes_per_voxel: int, name: str) -> None:
    """Refuse a volume whose declared ``shape`` would take more than ``config.MAX_VOLUME_BYTES`` once read."""
    voxels = math.prod(int(n) for n in shape)
    size = voxels * max(int(bytes_per_voxel), _MIN_BYTES_PER_VOXEL)
    if size > config.MAX_VOLUME_BYTES:
        dims = "x".join(str(int(n)) for n in shape)
        raise LiverSegError(
            f"{name} declares {dims} voxels ({size / 2**30:.1f} GB once read), more than the "
            f"{config.MAX_VOLUME_BYTES / 2**30:.1f} GB this server reads per volume; it was not read. "
            "Crop or downsample the scan (or ask the administrator to raise LIVERSEG_MAX_VOLUME_MB)"
        )


def nifti_header(path: Path) -> nib.Nifti1Image:
    """The NIfTI image at ``path`` with only its header read, its declared size checked."""
    try:
        image = nib.load(path)  # reads the header only (a .nii.gz: its first bytes), never the data
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise LiverSegError(f"{path.name} cannot be read as NIfTI ({reason(error)}); the file is damaged or not NIfTI: export it again") from None
    check_declared(image.header.get_data_shape(), np.dtype(image.header.get_data_dtype()).itemsize, path.name)
    return image


def volume_shape(shape: tuple[int, ...], name: str, what: str) -> tuple[int, ...]:
    """``shape`` as a 3D volume's, refusing 2D images and 4D series (a trailing axis of 1 is dropped)."""
    given = tuple(shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 3 or min(shape[:3]) < 2:
        raise LiverSegError(f"{name} is a 2D image {given}; LiverSeg needs a 3D {what}")
    if len(shape) > 3:
        raise LiverSegError(f"{name} is a {len(shape)}D series {given}; give one 3D {what} (one time point or channel)")
    return tuple(shape)


def check_header(path: Path) -> None:
    """What the first bytes of an input show, checked without reading its voxels: a NIfTI's size, a zip's members.

    For the command line, before the heavy imports; ``read_scan`` checks all of this again and the rest.
    """
    path = Path(path)
    if not path.is_file():
        return  # a folder (DICOM series) or a missing file: read_scan says what is wrong
    if path.name.lower().endswith((".nii", ".nii.gz")):
        volume_shape(nifti_header(path).shape, path.name, "volume")
    elif path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                check_zip(archive, path.name)
        except zipfile.BadZipFile as error:
            raise LiverSegError(f"{path.name} is not a readable zip ({reason(error)}); zip the DICOM folder again") from None
