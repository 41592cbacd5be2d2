"""Reading scans and label maps, writing label maps.

``read_scan`` takes a NIfTI file (nibabel), a DICOM series folder or a ``.zip``
of one (SimpleITK, via ``core.imageio.dicom_series``; the zip is checked by
``core.imageio.archive`` and unpacked into a temporary folder that is removed
afterwards). Whatever the source, the result is checked the same way: a 3D
volume of finite numbers that looks like CT in Hounsfield units.
"""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from core.atomic import atomic_path
from core.errors import LiverSegError
from core.imageio.archive import extract_zip
from core.imageio.dicom_series import MR_NOT_SUPPORTED, read_dicom_series
from core.imageio.limits import nifti_header, volume_shape
from core.reasons import reason
from core.scan import Scan

NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUPPORTED = "a NIfTI file (.nii, .nii.gz), a DICOM series folder, or a .zip of one"

# What makes a volume CT-like. Every abdominal CT holds air, lung, fat or bowel gas below -150 HU
# (a tight crop around the liver still has its fat), and soft tissue between -100 and 300 HU.
# An MR or PET volume (non-negative arbitrary units), or CT stored without its rescale to HU
# (air at 0), has no dark voxels at all.
DARK_HU, MIN_DARK_FRACTION = -150.0, 0.005
SOFT_TISSUE_HU, MIN_SOFT_TISSUE_FRACTION = (-100.0, 300.0), 0.02
HU_RANGE = (-3100.0, 32767.0)  # CT padding goes down to -3024 HU; dense metal reaches the int16 maximum


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _is_dicom_file(path: Path) -> bool:
    with open(path, "rb") as stream:
        return stream.read(132)[128:] == b"DICM"


def read_scan(path: Path) -> Scan:
    """The CT volume at ``path`` in HU with its RAS affine; ``LiverSegError`` for anything unusable."""
    path = Path(path)
    if not path.exists():
        raise LiverSegError(f"{path} does not exist; give {SUPPORTED}")
    if path.is_dir():
        scan = read_dicom_series(path, path.name)
    elif path.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="liverseg-zip-") as folder:
            extract_zip(path, Path(folder))
            scan = read_dicom_series(Path(folder), path.name)
    elif _is_nifti(path):
        scan = _read_nifti_scan(path)
    elif _is_dicom_file(path):
        raise LiverSegError(f"{path.name} is a single DICOM file (one slice); give the folder of the whole series or a .zip of it")
    else:
        raise LiverSegError(f"{path.name}: unsupported file type; give {SUPPORTED}")
    check_ct(scan)
    return scan


def _load_nifti(path: Path) -> nib.Nifti1Image:
    image = nifti_header(path)  # the declared size is checked before a byte of the data is decompressed
    _check_geometry(image, path.name)
    try:
        image.dataobj[(0,) * len(image.shape)]  # touches the data: a header-only or empty file fails here
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise LiverSegError(f"{path.name} cannot be read as NIfTI ({reason(error)}); the file is damaged or not NIfTI: export it again") from None
    return image


#: How far (mm) a grid's qform and sform may place its corners apart, and how far from square its axes may be (cosine).
MAX_FORM_DISAGREEMENT_MM, MAX_SHEAR_COSINE = 1.0, 1e-3


def _check_geometry(image: nib.Nifti1Image, name: str) -> None:
    """Refuse a header whose two geometry records (qform, sform) disagree, or whose grid is sheared.

    nibabel takes the sform when both are set, another viewer the qform: if they differ the
    same voxel lies in two places, and a label map written from one does not overlay the other.
    A sheared grid cannot be written as a qform at all, and volumes and distances assume
    square axes (``core.affine``).
    """
    header = image.header
    if isinstance(header, nib.Nifti1Header) and int(header["qform_code"]) > 0 and int(header["sform_code"]) > 0:
        corners = np.array(np.meshgrid(*[(0, n - 1) for n in image.shape[:3]], indexing="ij")).reshape(3, -1)
        qform, sform = header.get_qform(), header.get_sform()
        apart = float(np.linalg.norm((qform[:3, :3] - sform[:3, :3]) @ corners + (qform[:3, 3:] - sform[:3, 3:]), axis=0).max())
        if apart > MAX_FORM_DISAGREEMENT_MM:
            raise LiverSegError(
                f"{name} has two geometry records (qform and sform) that place its voxels up to {apart:.0f} mm apart, "
                "so where it lies is ambiguous; export it again from the original scan (or fix its header so they agree)")
    with np.errstate(divide="ignore", invalid="ignore"):  # a degenerate grid is refused later, by check_ct
        columns = image.affine[:3, :3] / np.linalg.norm(image.affine[:3, :3], axis=0)
    cosines = np.abs(columns.T @ columns - np.eye(3))
    if np.isfinite(cosines).all() and cosines.max() > MAX_SHEAR_COSINE:
        raise LiverSegError(
            f"{name} has a sheared voxel grid (its axes are {np.degrees(np.arcsin(min(1.0, cosines.max()))):.1f} degrees "
            "off square), which LiverSeg cannot measure or write back correctly; resample it to a regular grid first")


def _volume(image: nib.Nifti1Image, name: str, what: str) -> np.ndarray:
    """The image's data as a 3D array, refusing 2D images and 4D series (a trailing axis of 1 is dropped)."""
    shape = volume_shape(image.shape, name, what)
    try:
        data = image.get_fdata(dtype=np.float32)  # applies the header's scale and offset
    except (OSError, EOFError, zlib.error, ValueError) as error:
        raise LiverSegError(f"{name} is truncated or damaged ({reason(error)}); export it again") from None
    except MemoryError:
        raise LiverSegError(f"{name} does not fit in the memory the server has free now; try again later or a smaller scan") from None
    return data.reshape(shape)


def _read_nifti_scan(path: Path) -> Scan:
    image = _load_nifti(path)
    voxels = _volume(image, path.name, "CT volume")
    return Scan(voxels, image.affine.astype(float), source=path.name, details={"format": "NIfTI"})


def check_ct(scan: Scan) -> None:
    """Refuse volumes that are not 3D, hold NaN or infinity, or do not look like CT in HU."""
    name = scan.source or "the scan"
    if scan.voxels.ndim != 3 or min(scan.shape) < 2:
        raise LiverSegError(f"{name} is a 2D image {scan.shape}; LiverSeg needs a 3D CT volume (a series of slices)")
    if not np.isfinite(scan.affine).all() or abs(np.linalg.det(scan.affine[:3, :3])) < 1e-9:
        raise LiverSegError(f"{name} has no valid geometry (its voxel-to-mm matrix is degenerate); export it again")
    voxels = scan.voxels
    finite = np.isfinite(voxels)
    if not finite.all():
        raise LiverSegError(f"{name} contains {int((~finite).sum())} NaN or infinite values; it is not a valid CT, export it again")
    low, high = float(voxels.min()), float(voxels.max())
    # A strided subsample keeps this cheap on a 512x512 volume while judging millions of voxels.
    sample = voxels[::2, ::2, ::2]
    dark = float((sample < DARK_HU).mean())
    soft = float(((sample >= SOFT_TISSUE_HU[0]) & (sample <= SOFT_TISSUE_HU[1])).mean())
    if low < HU_RANGE[0] or high > HU_RANGE[1] or dark < MIN_DARK_FRACTION or soft < MIN_SOFT_TISSUE_FRACTION:
        raise LiverSegError(
            f"{name} does not look like a CT in Hounsfield units (values {low:.0f} to {high:.0f}; "
            f"{100 * dark:.1f}% below {DARK_HU:.0f} HU where air and fat lie, {100 * soft:.0f}% soft tissue). "
            f"LiverSeg segments abdominal CT only: {MR_NOT_SUPPORTED}. "
            "If this is a CT, export it with the values in HU (rescale slope and intercept applied)"
        )


def read_label_map(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A label map from NIfTI as (uint8 array in file order, 4x4 RAS affine).

    Labels must be whole numbers from 0 to 255 (float-typed files holding whole numbers are
    accepted, as some tools write them).
    """
    path = Path(path)
    if not path.is_file():
        raise LiverSegError(f"{path} does not exist or is not a file; give a NIfTI label map (.nii, .nii.gz)")
    if not _is_nifti(path):
        raise LiverSegError(f"{path.name}: label maps are read from NIfTI (.nii, .nii.gz); convert it first")
    image = _load_nifti(path)
    data = _volume(image, path.name, "label map")
    if not np.isfinite(data).all() or data.min() < 0 or data.max() > 255 or not np.array_equal(data, np.round(data)):
        raise LiverSegError(f"{path.name} is not a label map: its values must be whole numbers 0-255 (0 background, 1 liver, 2 lesion)")
    return data.astype(np.uint8), image.affine.astype(float)


def write_labels(labels: np.ndarray, scan: Scan, path: Path) -> None:
    """Write ``labels`` (on ``scan``'s grid) as a uint8 NIfTI with ``scan``'s affine, atomically."""
    path = Path(path)
    if not _is_nifti(path):
        raise LiverSegError(f"{path.name}: label maps are written as NIfTI; name the output .nii.gz or .nii")
    if labels.shape != scan.shape:
        raise ValueError(f"labels {labels.shape} do not match scan {scan.shape}")
    image = nib.Nifti1Image(np.asarray(labels, dtype=np.uint8), scan.affine)
    image.header.set_data_dtype(np.uint8)
    image.header.set_xyzt_units("mm")
    image.set_qform(scan.affine, code=1)
    image.set_sform(scan.affine, code=1)
    if not np.allclose(image.get_qform(), image.get_sform(), atol=1e-3):  # a qform cannot hold a shear
        raise LiverSegError(f"{path.name}: the scan's grid cannot be written with consistent qform and sform (it is sheared)")
    with atomic_path(path) as temporary:
        nib.save(image, temporary)
