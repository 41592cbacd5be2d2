"""Reading a DICOM series (a folder of slices, with or without ``.dcm``) with SimpleITK.

GDCM groups the files by series UID and orders the slices by their position.
A folder holding several series (a whole study exported at once) gives the
largest CT series, and ``Scan.details`` says which was taken and what was left.
``Scan.details`` keeps only non-identifying header fields. ``Scan.dicom_headers``
keeps, per slice, the few attributes a DICOM SEG needs to reference the series
(``REFERENCE_KEYWORDS``): the patient's name and ID are among them, so that a
hospital system files the SEG with its patient and study; the birth date, sex
and every other patient or study detail are dropped when the files are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from core.errors import LiverSegError
from core.imageio.limits import check_declared
from core.imageio.sitk_image import from_sitk
from core.reasons import reason
from core.scan import Scan

#: Why an MR scan is refused, wherever it is (benchmarks/mr_verdict.py measures it; README, Limitations).
MR_NOT_SUPPORTED = ("MR is not supported, because the pretrained networks did not find the liver on the MR test scan "
                    "here (see the README's Limitations)")

# DICOM tags (group|element) read from a series' first file.
MODALITY, SERIES_DESCRIPTION, BODY_PART = "0008|0060", "0008|103e", "0018|0015"

#: What ``Scan.dicom_headers`` keeps of each slice's header: the instance, series and study it
#: belongs to (and the study's Type 2 attributes a SEG repeats), its geometry, and the patient's
#: name and ID, without which a PACS cannot file the SEG with its study. Nothing else.
REFERENCE_KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "Modality",
    "StudyInstanceUID", "StudyID", "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
    "SeriesInstanceUID", "FrameOfReferenceUID",
    "PatientName", "PatientID",
    "Rows", "Columns", "PixelSpacing", "SliceThickness", "ImagePositionPatient", "ImageOrientationPatient",
)
#: Type 2 attributes a SEG must carry, present but empty where the source has none (or is not told).
EMPTY_TYPE2 = ("StudyID", "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
               "PatientName", "PatientID", "PatientBirthDate", "PatientSex")


@dataclass(frozen=True)
class Series:
    """One DICOM series found on disk."""

    files: tuple[str, ...]
    modality: str
    description: str
    body_part: str

    def summary(self) -> str:
        return f"{self.modality or 'unknown modality'} '{self.description or 'no description'}' ({len(self.files)} files)"


def _header(path: str) -> dict[str, str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return {tag: reader.GetMetaData(tag).strip() for tag in (MODALITY, SERIES_DESCRIPTION, BODY_PART) if reader.HasMetaDataKey(tag)}


def find_series(folder: Path) -> list[Series]:
    """Every DICOM series under ``folder`` (searched recursively), largest first."""
    found = []
    for directory, _, files in os.walk(folder):
        if not files:
            continue
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(directory):
            names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(directory, uid)
            try:
                header = _header(names[0])
            except RuntimeError:
                continue  # GDCM listed it but ITK cannot read it: not an image series
            found.append(
                Series(tuple(names), header.get(MODALITY, "").upper(), header.get(SERIES_DESCRIPTION, ""), header.get(BODY_PART, ""))
            )
    return sorted(found, key=lambda series: len(series.files), reverse=True)


def choose_series(series: list[Series], source: str) -> tuple[Series, str]:
    """The largest CT series (or of unknown modality) and a sentence on how it was chosen."""
    if not series:
        raise LiverSegError(f"no DICOM images found in {source}; give a folder (or .zip) holding the slices of one CT series")
    candidates = [s for s in series if s.modality in ("CT", "")]
    if not candidates:
        kinds = ", ".join(sorted({s.modality for s in series}))
        why = f": {MR_NOT_SUPPORTED}" if any(s.modality == "MR" for s in series) else ""
        raise LiverSegError(f"{source} holds {kinds} images, not CT; LiverSeg segments abdominal CT only{why}")
    chosen = candidates[0]
    if len(series) == 1:
        return chosen, "the only series"
    others = "; ".join(s.summary() for s in series if s is not chosen)
    return chosen, f"the largest CT series of {len(series)} (others, not used: {others})"


def read_dicom_series(folder: Path, source: str) -> Scan:
    """The CT series in ``folder`` (the largest, if there are several) in Hounsfield units.

    ``source`` names the upload in messages (the zip or folder name, not a temporary path).
    SimpleITK applies each slice's rescale slope and intercept, so the values are HU.
    """
    # ITK prints warnings ("No Series were found", uneven slices) straight to stderr, which would break
    # the one-line error contract; every such case is turned into a LiverSegError here instead.
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    chosen, how = choose_series(find_series(Path(folder)), source)
    check_declared(_declared_shape(chosen), 4, f"the DICOM series in {source}")  # read as float32
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(chosen.files))
    reader.SetOutputPixelType(sitk.sitkFloat32)
    reader.MetaDataDictionaryArrayUpdateOn()  # each slice's position, for the spacing check
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise LiverSegError(f"the DICOM series in {source} cannot be read ({reason(error)}); export the series again") from None
    except MemoryError:
        raise LiverSegError(f"the DICOM series in {source} does not fit in the memory the server has free now; try again later") from None
    if image.GetDimension() != 3:
        raise LiverSegError(f"the DICOM series in {source} is {image.GetDimension()}D; LiverSeg needs a 3D CT volume")
    _check_slices(reader, image, source)
    details = {"format": "DICOM", "modality": chosen.modality or "unknown", "series": how, "slices": len(chosen.files)}
    if chosen.description:
        details["series_description"] = chosen.description
    if chosen.body_part:
        details["body_part"] = chosen.body_part
    voxels, affine = from_sitk(image)
    return Scan(voxels, affine, source=source, details=details, dicom_headers=reference_headers(chosen.files))


def _declared_shape(series: Series) -> tuple[int, int, int]:
    """Rows, columns and slices the series declares: its first file's header times its number of files."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(series.files[0])
    reader.ReadImageInformation()
    size = list(reader.GetSize()) + [1]  # (columns, rows[, frames])
    return int(size[1]), int(size[0]), int(size[2]) * len(series.files)


def reference_headers(files: tuple[str, ...]) -> tuple[pydicom.Dataset, ...]:
    """Each file's header reduced to ``REFERENCE_KEYWORDS`` (Type 2 ones present, maybe empty), pixels never read.

    ``files`` is the series in the reader's slice order, so header ``k`` describes the scan's slice ``k``.
    A header pydicom cannot parse gives an empty tuple: the scan is still usable, only a DICOM SEG
    of it cannot be made (``core.imageio.dicom_seg`` says so).
    """
    headers = []
    for path in files:
        try:
            full = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            return ()
        kept = pydicom.Dataset()
        for keyword in REFERENCE_KEYWORDS:
            if keyword in full:
                setattr(kept, keyword, full[keyword].value)
        for keyword in EMPTY_TYPE2:
            if keyword not in kept:
                setattr(kept, keyword, "")
        headers.append(kept)
    return tuple(headers)


#: The largest gantry tilt (degrees) read as a straight stack: below it no slice moves by a tenth of a voxel or so.
MAX_TILT_DEGREES = 0.5


def _check_slices(reader: sitk.ImageSeriesReader, image: sitk.Image, source: str) -> None:
    """Refuse a series with missing, duplicated or unevenly spaced slices, or acquired with a gantry tilt.

    ITK would average the spacing and so misplace every slice after a gap; a damaged
    slice file that GDCM skipped shows up here as such a gap. ITK also builds the volume
    as a straight stack perpendicular to the slices, while a tilted gantry shifts each
    slice sideways along the stack: the label map would then lie tens of millimetres off
    at the far end, so such a series is refused rather than silently misplaced.
    """
    tag = "0020|0032"  # Image Position (Patient), mm in LPS
    count = image.GetDepth()
    if count < 2 or not all(reader.HasMetaDataKey(i, tag) for i in range(count)):
        return  # one multi-frame file: its frames are evenly spaced by construction
    normal = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    points = np.array([[float(v) for v in reader.GetMetaData(i, tag).split("\\")] for i in range(count)])
    positions = points @ normal
    span = points[-1] - points[0]
    along = abs(float(span @ normal))
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(span - (span @ normal) * normal), along)))
    if tilt > MAX_TILT_DEGREES:
        raise LiverSegError(
            f"the DICOM series in {source} was acquired with a gantry tilt of {tilt:.1f} degrees (its slices are not "
            "stacked straight), which LiverSeg cannot place correctly; resample it to a straight volume first "
            "(for example 3D Slicer's DICOM import, which corrects tilt) and upload that"
        )
    steps = np.diff(positions)
    typical = float(np.median(steps))
    if typical <= 0 or np.abs(steps - typical).max() > 0.1 * typical + 0.01:
        raise LiverSegError(
            f"the DICOM series in {source} has missing, repeated or unevenly spaced slices (steps from {steps.min():.2f} "
            f"to {steps.max():.2f} mm between {count} slices); export the complete series again"
        )
