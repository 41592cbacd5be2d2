"""The Segment page in Streamlit's AppTest: a tiny phantom as the sample and a tiny random-weights model."""

import zipfile

import nibabel as nib
import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core import config
from core.inference import segmenter as inference
from core.model import registry
from core.model.card import ModelCard
from core.model.unet import UNet
from core.segmentation import Segmentation
from core.server.uploads import UploadStore
from core.viewing.viewer_volume import unpack
from tests.helpers.dicom_factory import write_dicom_series
from tests.helpers.phantom import make_phantom

PAGE = str(config.ROOT / "pages" / "segment.py")
SHAPE, SPACING = (40, 32, 24), (6.0, 6.0, 8.0)


@pytest.fixture
def phantom_sample(tmp_path, monkeypatch):
    """The sample replaced by a small LPS phantom; returns its labels."""
    scan, labels = make_phantom(shape=SHAPE, spacing=SPACING, axcodes="LPS", lesions=3)
    for name, array in (("ct.nii.gz", scan.voxels), ("labels.nii.gz", labels)):
        nib.save(nib.Nifti1Image(array, scan.affine), tmp_path / name)
    monkeypatch.setattr(config, "SAMPLE_SCAN", tmp_path / "ct.nii.gz")
    monkeypatch.setattr(config, "SAMPLE_LABELS", tmp_path / "labels.nii.gz")
    return labels


@pytest.fixture
def page(tmp_path, monkeypatch, phantom_sample) -> AppTest:
    """The page with one tiny random model and private uploads under tmp_path."""
    card = ModelCard(name="tiny", channels=[4, 8], spacing_mm=[8.0, 8.0, 8.0], patch_size=[16, 16, 16], created="2026-01-01")
    registry.save_model(UNet(card.channels), card, tmp_path / "trained" / "tiny")
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path / "trained")
    st.cache_resource.clear()  # the Segmenter of another test's model folder
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.session_state["uploads"] = UploadStore(tmp_path / "uploads").open_session()
    return app.run()


@pytest.fixture
def exact_model(monkeypatch, phantom_sample):
    """A stand-in Segmenter that returns the sample's true labels, for checks that need lesions."""

    class Exact:
        def __init__(self, model, device):
            self.model = model

        def segment(self, scan, progress=None):
            return Segmentation(phantom_sample, scan, model=self.model, device="cpu", seconds={"infer": 0.1})

    monkeypatch.setattr(inference, "Segmenter", Exact)


def button(app: AppTest, label: str):
    return next(b for b in app.button if b.label == label)


def segmented(app: AppTest) -> AppTest:
    button(app, "Try the sample scan").click().run()
    return button(app, "Find the liver and lesions").click().run()


def test_first_screen_offers_the_sample_and_an_upload(page):
    assert not page.exception and not page.error
    assert page.title[0].value == "Segment"
    assert [b.label for b in page.button] == ["Try the sample scan"]
    assert len(page.file_uploader) == 1
    assert "not for clinical use" in page.caption[0].value


def test_sample_is_segmented_once_and_views_change_without_rerunning(page, monkeypatch):
    calls = []
    segment = inference.Segmenter.segment
    monkeypatch.setattr(inference.Segmenter, "segment", lambda self, *a, **k: calls.append(1) or segment(self, *a, **k))
    segmented(page)
    assert not page.exception and not page.error
    assert [m.label for m in page.metric] == ["Liver volume", "Tumour burden", "Lesions found"]
    assert any("on the CPU with model *tiny*" in c.value for c in page.caption)
    assert any("assumed" in c.value for c in page.caption)  # the sample's spacing assumption is stated
    (result,) = page.session_state["results"].values()
    packed = result.ct_pack  # the scan for the browser's viewer, packed once: planes, windows and layers are the browser's
    header, hu = unpack(packed)
    assert hu.shape == SHAPE and list(result.label_packs) == [None]
    assert all(0 <= n < size for n, size in zip(page.session_state["viewer_focus"], SHAPE))
    page.toggle(key="show_3d").set_value(True).run()
    assert result.ct_pack is packed
    assert not page.exception
    assert calls == [1]


def test_bad_uploads_show_a_message_and_the_page_keeps_working(page):
    page.file_uploader(key="scan_upload").set_value(("scan.nii.gz", b"not a scan", "application/gzip")).run()
    assert not page.exception
    assert "scan.nii.gz" in page.error[0].value
    button(page, "Try the sample scan").click().run()
    assert not page.error and any("LiTS case 117" in m.value for m in page.markdown)


def test_an_mr_upload_is_refused_with_the_reason_nifti_or_dicom(page, tmp_path):
    """Issue 23: MR stays refused, and the page says why (the networks found no liver on the shared MR scan)."""
    scan, _ = make_phantom(shape=SHAPE, spacing=SPACING, axcodes="LPS")
    nib.save(nib.Nifti1Image(np.clip(scan.voxels + 1000, 0, None) * 0.4, scan.affine), tmp_path / "t1.nii.gz")
    files = write_dicom_series(scan, tmp_path / "dicom", modality="MR")
    with zipfile.ZipFile(tmp_path / "mr.zip", "w") as archive:
        for path in files:
            archive.write(path, path.name)
    for name, kind in (("t1.nii.gz", "application/gzip"), ("mr.zip", "application/zip")):
        page.file_uploader(key="scan_upload").set_value((name, (tmp_path / name).read_bytes(), kind)).run()
        assert not page.exception
        (error,) = page.error
        assert name in error.value and "MR is not supported, because the pretrained networks did not find the liver" in error.value
        assert "Find the liver and lesions" not in [b.label for b in page.button]


def test_lesions_reference_and_metrics(page, exact_model, phantom_sample):
    segmented(page)
    (table,) = [d for d in page.dataframe if "Lesion" in d.value.columns]
    count = len(table.value)
    assert count > 0 and page.metric[2].value == str(count)
    button(page, "Use the sample's expert labels").click().run()
    assert not page.exception and not page.error
    found = next(m for m in page.metric if m.label == "Reference lesions found")
    assert found.value == f"{count} of {count}"
    measures, detection = page.table
    assert measures.value.loc["Dice", "Liver"] == "1.000" and measures.value.loc["Dice", "What it means"]
    assert detection.value.loc["False alarms", "Value"] == "0"
    confirmed = next(m for m in page.metric if m.label == "Model lesions confirmed")
    assert confirmed.value == f"{count} of {count}"  # counted on the model: the headline's lesions


def test_a_reference_that_does_not_fit_is_refused(page, tmp_path, exact_model):
    segmented(page)
    far = np.eye(4)
    far[:3, 3] = 10_000  # nowhere near the scan
    path = tmp_path / "far.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), far), path)
    page.file_uploader(key="reference_upload").set_value(("far.nii.gz", path.read_bytes(), "application/gzip")).run()
    assert not page.exception
    assert "far.nii.gz" in page.error[0].value
    assert [m.label for m in page.metric] == ["Liver volume", "Tumour burden", "Lesions found"]  # the result stays


def test_dicom_seg_is_offered_for_a_dicom_upload_and_explained_for_nifti(page, tmp_path):
    segmented(page)
    assert "Segmentation (DICOM SEG)" not in [b.label for b in page.download_button]
    assert any("DICOM SEG: not available, a DICOM SEG needs a DICOM source" in c.value and "is NIfTI" in c.value for c in page.caption)

    scan, _ = make_phantom(shape=SHAPE, spacing=SPACING, axcodes="LPS")
    files = write_dicom_series(scan, tmp_path / "dicom")
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as archive:
        for path in files:
            archive.write(path, path.name)
    page.file_uploader(key="scan_upload").set_value(("series.zip", (tmp_path / "series.zip").read_bytes(), "application/zip")).run()
    button(page, "Find the liver and lesions").click().run()
    assert not page.exception and not page.error
    assert "Segmentation (DICOM SEG)" in [b.label for b in page.download_button]
    assert not any("DICOM SEG: not available" in c.value for c in page.caption)


def test_an_uploaded_file_name_is_shown_as_plain_text_never_as_a_link(page, tmp_path, exact_model):
    """Issue 22, finding 8."""
    name = "[click me](https://evil.example/x).nii.gz"
    scan, labels = make_phantom(shape=SHAPE, spacing=SPACING, axcodes="LPS", lesions=3)
    nib.save(nib.Nifti1Image(scan.voxels, scan.affine), tmp_path / "scan.nii.gz")
    page.file_uploader(key="scan_upload").set_value((name, (tmp_path / "scan.nii.gz").read_bytes(), "application/gzip")).run()
    assert not page.exception and not page.error
    shown = next(m.value for m in page.markdown if m.value.startswith("**Scan:**"))
    assert r"\[click me\]\(https\:" in shown and "](" not in shown
    nib.save(nib.Nifti1Image(labels, scan.affine), tmp_path / "labels.nii.gz")
    button(page, "Find the liver and lesions").click().run()
    page.file_uploader(key="reference_upload").set_value((name, (tmp_path / "labels.nii.gz").read_bytes(), "application/gzip")).run()
    assert not page.exception
    names = [element.value for element in [*page.success, *page.markdown] if "click me" in element.value]
    assert names and all(r"\[click me\]" in value and "](" not in value for value in names)
