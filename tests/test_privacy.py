"""Privacy: no telemetry, and no patient name or ID from DICOM headers in what LiverSeg shows or writes."""

from __future__ import annotations

import tomllib
import zipfile

from core import config
from core.cli import main
from core.imageio.nifti import read_scan, write_labels
from tests.helpers.dicom_factory import PATIENT_ID, PATIENT_NAME, write_dicom_series
from tests.helpers.phantom import make_phantom

IDENTIFIERS = (PATIENT_NAME, PATIENT_ID, "Doe", "Jane")


def test_shipped_configuration_sends_no_usage_statistics():
    settings = tomllib.loads((config.ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert settings["browser"]["gatherUsageStats"] is False


def test_no_patient_name_or_id_reaches_the_scan_or_its_outputs(tmp_path, capfd):
    scan, labels = make_phantom((24, 20, 12), (8.0, 8.0, 10.0), seed=2, lesions=1)
    files = write_dicom_series(scan, tmp_path / "series")
    assert PATIENT_NAME.encode() in files[0].read_bytes()  # the header really carries them
    upload = tmp_path / "upload.zip"
    with zipfile.ZipFile(upload, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, f"export/{path.name}")

    read = read_scan(upload)
    assert read.details["modality"] == "CT" and read.details["series_description"] == "ABDOMEN PORTAL"
    shown = f"{read.source} {read.details!r}"
    assert not any(identifier in shown for identifier in IDENTIFIERS), shown

    written = tmp_path / "labels.nii.gz"
    write_labels(labels, read, written)
    output = tmp_path / "labels.nii"
    write_labels(labels, read, output)  # uncompressed, so the header text can be searched
    assert not any(identifier.encode() in output.read_bytes() for identifier in IDENTIFIERS)

    assert main(["lesions", str(written), "--scan", str(upload), "--csv"]) == 0
    printed = capfd.readouterr()
    assert "volume_ml" in printed.out
    assert not any(identifier in printed.out + printed.err for identifier in IDENTIFIERS)
