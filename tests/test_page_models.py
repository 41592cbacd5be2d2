"""pages/models.py in streamlit's AppTest: cards, default choice, removal rules, download archive."""

from __future__ import annotations

import io
import zipfile
from dataclasses import asdict

import pytest
from streamlit.testing.v1 import AppTest

from core import config, registry
from core.jobs import JobRunner, TrainingRequest
from core.model_archive import model_archive
from core.model_card import ModelCard
from core.unet import UNet
from tests import fake_training

PAGE = str(config.ROOT / "pages" / "models.py")


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """trained/ with a shipped model and one trained here; an empty jobs folder."""
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path / "trained")
    monkeypatch.setattr(config, "JOBS_DIR", tmp_path / "jobs")
    for name, shipped, created in (("shipped", True, "2026-01-01T00:00:00+00:00"), ("mine", False, "2026-02-01T00:00:00+00:00")):
        card = ModelCard(name=name, channels=[2, 4], patch_size=[16, 16, 16], shipped=shipped, created=created,
                         training={"data": [{"case": "lits117", "sha256": "ab12", "licence": "CC BY-NC-SA 4.0"}], "epochs": 3,
                                   "command": "python -m core train --data .cache/sample --out trained/mine"},
                         metrics={"summary": {"liver_dice": 0.912, "lesion_dice": 0.5}, "per_case": [{"case": "lits117", "liver_dice": 0.912}]})
        registry.save_model(UNet(card.channels, num_classes=len(card.labels)), card, tmp_path / "trained" / name)
    return tmp_path / "trained"


def run_page() -> AppTest:
    page = AppTest.from_file(PAGE, default_timeout=180)
    page.session_state["uploads"] = None  # app.py's gate has run (this page keeps no uploads)
    page.run()
    assert not page.exception, page.exception
    return page


def test_every_model_is_shown_with_its_card(trained):
    page = run_page()
    assert [header.value for header in page.subheader] == [
        "mine :violet-badge[trained here]", "shipped :green-badge[:material/star: default] :blue-badge[shipped]"]
    facts = next(caption.value for caption in page.caption if caption.value.startswith("created"))  # "mine": the newest
    assert facts.startswith("created 2026-02-01 00:00 · ") and " KB · trained on 1 case · voxels of 2 × 2 × 2 mm · " in facts
    assert [(metric.label, metric.value) for metric in page.metric][:2] == [("Liver Dice", "0.912"), ("Lesion Dice", "0.500")]
    assert "python -m core train" in page.code[0].value
    assert any("per_case" not in frame.value.columns and "liver_dice" in frame.value.columns for frame in page.dataframe)


def test_making_a_model_the_default(trained):
    page = run_page()
    assert page.button(key="default-shipped").disabled
    page.button(key="default-mine").click().run()
    assert registry.default_model() == "mine"
    assert "The Segment page uses **mine**." in [m.value for m in page.markdown]
    assert page.button(key="default-mine").disabled


def test_a_model_trained_here_can_be_removed_but_a_shipped_one_cannot(trained):
    page = run_page()
    assert [button.key for button in page.button if button.key.startswith("remove-")] == ["remove-mine"]
    assert "Shipped models are protected." in [caption.value for caption in page.caption]
    page.button(key="remove-mine").click().run()
    assert [card.name for card in registry.list_cards()] == ["shipped"]
    assert not page.exception


def test_a_model_a_queued_or_running_job_fine_tunes_from_cannot_be_removed(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("LIVERSEG_TRAINED_DIR", str(trained))
    monkeypatch.setenv("LIVERSEG_DATA_DIRS", str(tmp_path))
    (tmp_path / "cases").mkdir()
    runner = JobRunner(tmp_path / "jobs", slots=1,
                       command=fake_training.command(fake_training.make_model(tmp_path / "tiny"), lambda request: "wait"))
    runner.submit(TrainingRequest("tuned", ["cases"], init="mine"))
    try:
        page = run_page()
        assert not [button for button in page.button if button.key == "remove-mine"]
        assert "Needed by job(s) tuned (fine-tuning from it)." in [caption.value for caption in page.caption]
    finally:
        fake_training.end_all(tmp_path / "jobs")


def test_the_download_holds_the_weights_and_the_card(trained):
    with zipfile.ZipFile(io.BytesIO(model_archive("mine"))) as archive:
        assert sorted(archive.namelist()) == ["mine/card.json", "mine/model.pt"]
        assert archive.read("mine/model.pt") == (trained / "mine" / "model.pt").read_bytes()


def test_without_models_the_page_points_to_training(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path / "none")
    monkeypatch.setattr(config, "JOBS_DIR", tmp_path / "jobs")
    assert "Train page" in run_page().info[0].value


def test_a_cascade_shows_both_stages_and_its_cross_validation(trained):
    coarse = ModelCard(name="cascade-coarse", channels=[2, 4], patch_size=[16, 16, 16], spacing_mm=[5.0, 5.0, 5.0],
                       training={"command": "python -m core train --out .cache/stages/cascade-coarse --spacing 5"})
    card = ModelCard(name="cascade", channels=[2, 4], patch_size=[16, 16, 16], created="2026-03-01T00:00:00+00:00",
                     training={"command": "python -m core train --out trained/cascade --coarse .cache/stages/cascade-coarse"},
                     metrics={"measured_on": "leave-one-case-out cross-validation",
                              "cross_validation": {"mean": {"liver_dice": 0.783, "lesion_dice": 0.292}}},
                     cascade={"coarse": asdict(coarse), "weights": "coarse.pt", "roi_margin_mm": 20.0})
    registry.save_model(UNet(card.channels, num_classes=3), card, trained / "cascade", coarse=UNet(coarse.channels, num_classes=3))
    page = run_page()
    facts = next(caption.value for caption in page.caption if caption.value.startswith("created 2026-03-01"))
    assert " · two-stage cascade · voxels of 2 × 2 × 2 mm · " in facts
    assert [(metric.label, metric.value) for metric in page.metric][:2] == [("Liver Dice", "0.783"), ("Lesion Dice", "0.292")]
    assert [code.value for code in page.code][:2] == [card.training["command"], coarse.training["command"]]
    architecture = [block.value for block in page.markdown if "stage" in block.value]
    assert any(text.startswith("First stage, on the whole scan: UNet, channels [2, 4], voxels of 5 × 5 × 5 mm") and "20 mm" in text
               for text in architecture)
