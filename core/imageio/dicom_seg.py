"""The label map as a DICOM Segmentation (SEG) object that references its source series.

A hospital's PACS or a DICOM viewer (OHIF, 3D Slicer) takes a SEG, not a NIfTI
file. ``highdicom`` builds it: BINARY, segment 1 the liver (label 1) and segment 2
its lesions (label 2), each with its standard SNOMED CT codes and the model as the
AUTOMATIC algorithm. The segments do not overlap, exactly as in the NIfTI label map
(the whole organ, as ``core.evaluation.metrics`` scores it, is both together); overlapping
segments would also make highdicom check a 4D stack, seconds slower on a 512x512
series. Frames are written only where a segment is present.

The frames are placed in space from the scan's own affine (a ``highdicom.Volume``),
and highdicom matches each one to the source slice at the same position, so every
frame references the CT instance it was derived from. The source headers come from
``Scan.dicom_headers``, already reduced to what the reference needs (see
``core.imageio.dicom_series.REFERENCE_KEYWORDS``).
"""

from __future__ import annotations

import io

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes

from core.atomic import write_atomically
from core.errors import LiverSegError
from core.scan import Scan
from core.segmentation import LABEL_NAMES, LESION, LIVER, Segmentation

#: Segmented property category "Anatomical Structure" as DICOM CID 7150 has it now (pydicom's
#: dictionary still has the inactivated SNOMED concept 91723000).
ANATOMICAL_STRUCTURE = hd.sr.CodedConcept("123037004", "SCT", "Anatomical Structure")
SERIES_NUMBER = 900  # a derived series, numbered apart from the scanner's (1, 2, ...)
SEG_MANUFACTURER = "LiverSeg"
NEEDS_DICOM = "a DICOM SEG needs a DICOM source: segment a DICOM series (a folder or .zip of its slices)"


def _segment_descriptions(segmentation: Segmentation) -> list[hd.seg.SegmentDescription]:
    algorithm = hd.AlgorithmIdentificationSequence(
        name=segmentation.model or "unknown model",
        version=segmentation.model_version or "unknown",
        family=codes.cid7162.ArtificialIntelligence,
    )
    common = dict(algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
    return [
        hd.seg.SegmentDescription(segment_number=LIVER, segment_label=LABEL_NAMES[LIVER].capitalize(),
                                  segmented_property_category=ANATOMICAL_STRUCTURE,
                                  segmented_property_type=codes.SCT.Liver, **common),
        hd.seg.SegmentDescription(segment_number=LESION, segment_label=LABEL_NAMES[LESION].capitalize(),
                                  segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                                  segmented_property_type=codes.SCT.Lesion, anatomic_regions=[codes.SCT.Liver], **common),
    ]


def unavailable_reason(scan: Scan) -> str | None:
    """Why no DICOM SEG can be made of ``scan`` (a sentence), or ``None`` when one can.

    Asked before segmenting (the command line fails fast) and by the Segment page (a caption instead of the button).
    """
    headers = scan.dicom_headers
    if not headers and scan.details.get("format") == "DICOM":
        return f"the slice headers of {scan.source} cannot be read by pydicom, so a DICOM SEG cannot reference them"
    if not headers:
        return f"{NEEDS_DICOM}; {scan.source or 'this scan'} is {scan.details.get('format', 'not a DICOM series')}"
    if len(headers) != scan.shape[2]:
        return (f"{scan.source} is one multi-frame DICOM file ({len(headers)} header for {scan.shape[2]} slices); "
                "a DICOM SEG is made only of a series of single-slice files")
    return None


def _source_headers(scan: Scan) -> list[pydicom.Dataset]:
    """The source slices' headers with what highdicom needs and a source may lack (Type 2 or 3 in a CT image).

    A missing Frame of Reference UID is derived from the series UID; a missing slice thickness is taken
    as the spacing between the slices, which is what the SEG's frames then stand for.
    """
    reason = unavailable_reason(scan)
    if reason:
        raise LiverSegError(reason)
    headers = scan.dicom_headers
    copies = [pydicom.Dataset(dict(header)) for header in headers]  # new attributes stay out of the scan's own headers
    if "FrameOfReferenceUID" not in copies[0]:
        # The same series always gets the same derived frame, so SEGs made of it share it.
        derived = pydicom.uid.generate_uid(entropy_srcs=["frame of reference", str(copies[0].SeriesInstanceUID)])
        for header in copies:
            header.FrameOfReferenceUID = derived
    for header in copies:
        if not header.get("SliceThickness"):
            header.SliceThickness = round(scan.spacing[2], 6)
    return copies


def build_dicom_seg(segmentation: Segmentation) -> hd.seg.Segmentation:
    """The SEG of ``segmentation``, which must be of a scan read from a DICOM series.

    The label map is on the scan's grid, whose axes are (column, row, slice) of the series as
    read (``core.imageio.sitk_image.from_sitk``); a DICOM frame is (row, column), so the array is
    transposed to (slice, row, column) and the affine's columns reordered to match.
    """
    headers = _source_headers(segmentation.scan)
    # Label-map style: label 1 is segment 1, label 2 segment 2; the transpose is a view, not a copy.
    volume = hd.Volume(
        segmentation.labels.transpose(2, 1, 0), segmentation.scan.affine[:, [2, 1, 0, 3]], coordinate_system="PATIENT",
        frame_of_reference_uid=headers[0].FrameOfReferenceUID, from_reference_convention="RAS",
    )
    return hd.seg.Segmentation(
        source_images=headers,
        pixel_array=volume,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions(segmentation),
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=SEG_MANUFACTURER,
        manufacturer_model_name=segmentation.model or "unknown model",
        software_versions=segmentation.model_version or "unknown",
        device_serial_number="none",
        series_description=f"{SEG_MANUFACTURER} liver and lesions (research, not for clinical use)",
        content_description="Liver and liver lesions, automatic; not for clinical use",
        content_label="LIVERSEG",
        omit_empty_frames=True,
    )


def dicom_seg_bytes(segmentation: Segmentation) -> bytes:
    """The SEG as the bytes of a DICOM Part 10 file (what the Segment page offers)."""
    buffer = io.BytesIO()
    build_dicom_seg(segmentation).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_dicom_seg(segmentation: Segmentation, path) -> None:
    """Write the SEG to ``path`` atomically."""
    write_atomically(path, dicom_seg_bytes(segmentation))
