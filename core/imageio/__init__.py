"""Reading and writing images: NIfTI, DICOM series and DICOM SEG, safe zips, the sample scan, reference label maps."""
