"""DICOM SEG export: read back by highdicom and pydicom, frames on the source slices, segments coded."""

from __future__ import annotations

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

from core.errors import LiverSegError
from core.imageio.dicom_seg import NEEDS_DICOM, build_dicom_seg, dicom_seg_bytes, write_dicom_seg
from core.imageio.nifti import read_scan
from core.segmentation import LESION, LIVER, Segmentation
from tests.helpers.dicom_factory import PATIENT_ID, PATIENT_NAME, write_dicom_series
from tests.helpers.phantom import make_phantom

SERIES = "1.2.826.0.1.3680043.2.1125.1"


def _dicom_case(tmp_path, axcodes="LPS", frame_of_reference=None):
    """A phantom written as a DICOM series, read back, with its (asymmetric) labels on the read grid."""
    scan, labels = make_phantom((24, 20, 14), (8.0, 8.0, 10.0), seed=3, lesions=2, axcodes=axcodes)
    write_dicom_series(scan, tmp_path / "series", frame_of_reference=frame_of_reference)
    read = read_scan(tmp_path / "series")
    # GDCM orders the slices along their normal, which can reverse the phantom's slice axis (ASL)
    transform = nib.orientations.ornt_transform(nib.io_orientation(scan.affine), nib.io_orientation(read.affine))
    labels = np.ascontiguousarray(nib.orientations.apply_orientation(labels, transform))
    assert nib.aff2axcodes(read.affine) == tuple(axcodes[:2]) + (nib.aff2axcodes(read.affine)[2],)
    return read, labels


def _written(tmp_path, segmentation):
    path = tmp_path / "labels.seg.dcm"
    write_dicom_seg(segmentation, path)
    return path


@pytest.mark.parametrize("axcodes", ["LPS", "RAS", "ASL"])
def test_round_trip_puts_every_frame_on_its_source_slice(tmp_path, axcodes):
    scan, labels = _dicom_case(tmp_path, axcodes)
    assert not any(np.array_equal(labels, np.flip(labels, axis)) for axis in range(3))  # a flipped axis would show
    path = _written(tmp_path, Segmentation(labels, scan, model="unit-model", model_version="2026-01-02T03:04:05"))

    seg = hd.seg.segread(path)
    headers = {header.SOPInstanceUID: (k, header) for k, header in enumerate(scan.dicom_headers)}
    liver_slices = [k for k in range(scan.shape[2]) if (labels[:, :, k] == LIVER).any()]
    lesion_slices = [k for k in range(scan.shape[2]) if (labels[:, :, k] == LESION).any()]
    assert seg.NumberOfFrames == len(liver_slices) + len(lesion_slices)  # frames only where a segment is present
    shared = seg.SharedFunctionalGroupsSequence[0]
    source = scan.dicom_headers[0]
    np.testing.assert_allclose(shared.PlaneOrientationSequence[0].ImageOrientationPatient, source.ImageOrientationPatient, atol=1e-6)
    np.testing.assert_allclose(shared.PixelMeasuresSequence[0].PixelSpacing, source.PixelSpacing, atol=1e-6)
    assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns)

    pixels = seg.pixel_array
    seen = {1: [], 2: []}
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence):
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        reference = item.DerivationImageSequence[0].SourceImageSequence[0]
        k, header = headers[reference.ReferencedSOPInstanceUID]
        np.testing.assert_allclose(item.PlanePositionSequence[0].ImagePositionPatient, header.ImagePositionPatient, atol=1e-4)
        expected = labels[:, :, k] == segment  # segment 1 is label 1 (liver), 2 is label 2 (lesion)
        np.testing.assert_array_equal(frame.astype(bool), expected.T)  # a frame is (row, column) = (j, i)
        seen[segment].append(k)
    assert sorted(seen[1]) == liver_slices and sorted(seen[2]) == lesion_slices


def test_segments_carry_standard_codes_and_the_model(tmp_path):
    scan, labels = _dicom_case(tmp_path)
    seg = hd.seg.segread(_written(tmp_path, Segmentation(labels, scan, model="unit-model", model_version="2026-01-02")))
    liver, lesion = seg.SegmentSequence
    assert (liver.SegmentLabel, liver.SegmentedPropertyTypeCodeSequence[0].CodeValue) == ("Liver", "10200004")
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "123037004"
    assert (lesion.SegmentLabel, lesion.SegmentedPropertyTypeCodeSequence[0].CodeValue) == ("Lesion", "52988006")
    assert lesion.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    for segment in (liver, lesion):
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("unit-model", "2026-01-02")
    assert (seg.SegmentationType, seg.SegmentsOverlap) == ("BINARY", "NO")  # as in the NIfTI label map


def test_pydicom_reads_it_as_a_seg_of_the_source_study_and_series(tmp_path):
    scan, labels = _dicom_case(tmp_path, frame_of_reference="1.2.826.0.1.3680043.2.1125.77")
    dataset = pydicom.dcmread(_written(tmp_path, Segmentation(labels, scan)))
    assert dataset.SOPClassUID == pydicom.uid.SegmentationStorage and dataset.Modality == "SEG"
    assert dataset.StudyInstanceUID == scan.dicom_headers[0].StudyInstanceUID
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == SERIES
    assert dataset.FrameOfReferenceUID == "1.2.826.0.1.3680043.2.1125.77"  # the source's own frame
    assert dataset.SeriesInstanceUID != SERIES


def test_a_source_without_frame_of_reference_gets_the_same_derived_one_each_time(tmp_path):
    scan, labels = _dicom_case(tmp_path)
    assert "FrameOfReferenceUID" not in scan.dicom_headers[0]
    first, second = (build_dicom_seg(Segmentation(labels, scan)) for _ in range(2))
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID
    assert pydicom.uid.UID(first.FrameOfReferenceUID).is_valid
    assert "FrameOfReferenceUID" not in scan.dicom_headers[0]  # the scan's headers are left as read


def test_only_the_patients_name_and_id_are_copied(tmp_path):
    scan, labels = _dicom_case(tmp_path)
    dataset = pydicom.dcmread(_written(tmp_path, Segmentation(labels, scan)))
    assert (str(dataset.PatientName), dataset.PatientID) == (PATIENT_NAME, PATIENT_ID)
    assert dataset.PatientBirthDate == "" and dataset.PatientSex == ""  # Type 2: present, empty (the source has a birth date)
    assert {"PatientAge", "PatientWeight", "OtherPatientIDsSequence", "InstitutionName"}.isdisjoint(dataset.dir())
    assert PATIENT_NAME not in repr(scan)


def test_a_nifti_scan_is_refused_with_the_reason(tmp_path):
    scan, labels = make_phantom((24, 20, 14), (8.0, 8.0, 10.0), seed=3)
    with pytest.raises(LiverSegError, match="needs a DICOM source") as raised:
        dicom_seg_bytes(Segmentation(labels, scan))
    assert NEEDS_DICOM in str(raised.value)
    path = tmp_path / "out.dcm"
    with pytest.raises(LiverSegError):
        write_dicom_seg(Segmentation(labels, scan), path)
    assert not path.exists() and not list(tmp_path.iterdir())
