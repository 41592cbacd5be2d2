"""Write a ``Scan`` as a DICOM series, the way scanners export them, for reader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from core.imageio.sitk_image import to_sitk
from core.scan import Scan

PATIENT_NAME, PATIENT_ID, PATIENT_BIRTH_DATE = "Doe^Jane", "PID-12345", "19610412"


def write_dicom_series(
    scan: Scan,
    folder: Path,
    modality: str = "CT",
    series: str = "1.2.826.0.1.3680043.2.1125.1",
    description: str = "ABDOMEN PORTAL",
    suffix: str = "",
    stored_offset: int = 1024,
    frame_of_reference: str | None = None,
) -> list[Path]:
    """One file per slice, HU rounded to integers; a Frame of Reference UID only when given (GDCM writes none).

    GDCM stores ``HU + stored_offset`` and writes the rescale intercept ``-stored_offset``,
    as scanners do, so that a reader that forgets the rescale sees values far from HU.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image = to_sitk(np.round(scan.voxels).astype(np.int16), scan.affine)
    direction = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")  # chosen explicitly: the files may have no extension
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series}.{k + 1}",
            "0008|0060": modality,
            "0008|103e": description,
            "0010|0010": PATIENT_NAME,
            "0010|0020": PATIENT_ID,
            "0010|0030": PATIENT_BIRTH_DATE,
            "0020|000d": "1.2.826.0.1.3680043.2.1125.9",
            "0020|000e": series,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "\\".join(f"{v:.6f}" for v in (*direction[0::3], *direction[1::3])),
            "0028|1052": str(-stored_offset),
            "0028|1053": "1",
        }
        if frame_of_reference:
            tags["0020|0052"] = frame_of_reference
        for tag, value in tags.items():
            plane.SetMetaData(tag, value)
        path = folder / f"slice_{series.rsplit('.', 1)[-1]}_{k:03d}{suffix}"
        writer.SetFileName(str(path))
        writer.Execute(plane)
        paths.append(path)
    return paths
