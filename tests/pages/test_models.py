"""pages/models.py in streamlit's AppTest: cards, default choice, removal rules, download archive.

The cards shown are real ones: a model trained here by ``python -m core train`` itself (``core.training.run``
writes its card) and registered as a finished job registers it, and copies of the shipped models in trained/,
so the page is tested on the layout training and cross-validation really write.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from core import config
from core.jobs.records import TrainingRequest
from core.jobs.runner import JobRunner
from core.model import registry
from core.model.archive import model_archive
from core.model.card import ModelCard
from core.training.options import parse
from core.training.run import train
from tests.helpers import fake_training
from tests.helpers.fake_training import TINY
from tests.helpers.users import write_users

SHIPPED_DIR = config.ROOT / "trained"  # the models shipped in the checkout, whatever LIVERSEG_TRAINED_DIR says
SHIPPED, CASCADE = "liverseg-unet-2mm-v1", "liverseg-cascade-v1"


@pytest.fixture(scope="session")
def trained_here(phantoms, tmp_path_factory) -> Path:
    """A model folder as ``python -m core train`` leaves it: one epoch on the phantoms, case0 held out and scored."""
    out = tmp_path_factory.mktemp("run") / "mine"
    return train(parse(["--data", str(phantoms), "--out", str(out), "--val", "case0", "--epochs", "1",
                        "--cache-dir", str(out.parent / "cache"), *TINY]))


@pytest.fixture
def trained(tmp_path, monkeypatch, trained_here) -> Path:
    """trained/ with a copy of the shipped single-stage model and the model trained here; an empty jobs folder."""
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path / "trained")
    monkeypatch.setattr(config, "JOBS_DIR", tmp_path / "jobs")
    shutil.copytree(SHIPPED_DIR / SHIPPED, tmp_path / "trained" / SHIPPED)
    assert registry.register_model(trained_here) == "mine"  # as a finished training job registers its model
    return tmp_path / "trained"


def panel(page: AppTest, name: str) -> Block:
    """The bordered container that shows model ``name``."""
    found = [block for block in page.main.children.values()
             if isinstance(block, Block) and [header.value.split(" ")[0] for header in block.subheader] == [name]]
    assert len(found) == 1, f"{len(found)} panels for {name}"
    return found[0]


def test_every_model_is_shown_with_its_card(trained, run_page):
    """What training writes into a card (data with roles, held-out metrics, the command) is what the page shows."""
    page = run_page("models")
    assert sorted(header.value for header in page.subheader) == [
        f"{SHIPPED} :green-badge[:material/star: default] :blue-badge[shipped]", "mine :violet-badge[trained here]"]
    card = ModelCard.load(trained / "mine")
    mine = panel(page, "mine")
    facts = next(caption.value for caption in mine.caption if caption.value.startswith("created"))
    assert facts.startswith(f"created {card.created[:10]} ") and " KB · trained on 2 cases, 1 held out · " in facts
    assert facts.endswith(" · voxels of 6 × 6 × 6 mm · patches of 32 × 32 × 32 voxels · HU window -200 to 250")
    mean = card.metrics["mean"]  # the held-out cases' mean, as core.training.run records it
    assert [(metric.label, metric.value) for metric in mine.metric][:2] == [
        ("Liver Dice", f"{mean['liver_dice']:.3f}"), ("Lesion Dice", f"{mean['lesion_dice']:.3f}")]
    assert mine.code[0].value == card.training["command"] and mine.code[0].value.startswith("python -m core train --data ")
    per_case = [frame.value for frame in mine.dataframe if "liver_hd95_mm" in frame.value.columns]
    assert per_case and list(per_case[0].index) == ["case0"]  # the held-out case's scores, one row
    assert any("not comparable" in caption.value for caption in mine.caption)  # not on the same footing as a cross-validation
    shipped = panel(page, SHIPPED)
    assert [metric.label for metric in shipped.metric][:2] == ["Liver Dice", "Lesion Dice"]
    assert shipped.code[0].value == ModelCard.load(trained / SHIPPED).training["command"]


def test_making_a_model_the_default(trained, run_page):
    page = run_page("models")
    assert page.button(key=f"is-default-{SHIPPED}").disabled
    # Inside a "Make default" popover that asks first: the default is every user's model.
    assert any("for every user of this server?" in m.value for m in page.markdown)
    page.button(key="default-mine").click().run()
    assert registry.default_model() == "mine"
    assert "The Segment page uses **mine**." in [m.value for m in page.markdown]
    assert page.button(key="is-default-mine").disabled


@pytest.fixture
def named_users(tmp_path, monkeypatch) -> None:
    """A login with named users: alice an administrator, bob not."""
    monkeypatch.setenv("LIVERSEG_USERS_FILE", str(write_users(tmp_path / "users.toml", "alice", "bob")))
    monkeypatch.setenv("LIVERSEG_ADMINS", "alice")
    monkeypatch.delenv("LIVERSEG_PASSWORD", raising=False)


def signed_in_page(user: str, admin: bool) -> AppTest:
    """The Models page for a session app.py has signed in as ``user``."""
    page = AppTest.from_file(str(config.ROOT / "pages" / "models.py"), default_timeout=180)
    page.session_state["uploads"] = None
    page.session_state["user"], page.session_state["admin"] = user, admin
    page.run()
    assert not page.exception, page.exception
    return page


def test_with_named_users_only_an_administrator_makes_a_model_the_default(trained, named_users):
    page = signed_in_page("alice", admin=True)
    assert not page.info and not page.button(key="default-mine").disabled
    page.button(key="default-mine").click().run()
    assert registry.default_model() == "mine"


@pytest.mark.parametrize(("user", "admin", "words"), [("bob", False, "You are signed in as bob, not as an administrator"),
                                                      ("shared password", False, "You are signed in with the shared password"),
                                                      ("carol", True, "You are signed in as carol")])  # no longer listed
def test_with_named_users_anyone_else_sees_why_and_cannot_change_it(trained, named_users, user, admin, words):
    page = signed_in_page(user, admin)
    reason = page.info[0].value.replace("\\", "")  # shown as plain text: Markdown characters escaped
    assert reason.startswith("Only an administrator can change the default model") and words in reason
    button = page.button(key="default-mine")
    assert button.disabled and button.help.replace("\\", "") == reason
    assert not [m for m in page.markdown if "for every user of this server?" in m.value]  # no confirmation offered


def test_the_change_itself_is_refused_to_a_user_no_longer_an_administrator(trained, named_users, monkeypatch):
    """Checked where the default changes, not only by drawing the button: alice's page was drawn while she was one."""
    page = signed_in_page("alice", admin=True)
    monkeypatch.setenv("LIVERSEG_ADMINS", "bob")
    page.button(key="default-mine").click().run()
    assert registry.default_model() == SHIPPED
    assert page.error[0].value.startswith("Only an administrator can change the default model")
    assert page.button(key="default-mine").disabled


def test_a_model_trained_here_can_be_removed_but_a_shipped_one_cannot(trained, run_page):
    page = run_page("models")
    assert [button.key for button in page.button if button.key.startswith("remove-")] == ["remove-mine"]
    assert "Shipped models are protected." in [caption.value for caption in page.caption]
    page.button(key="remove-mine").click().run()
    assert [card.name for card in registry.list_cards()] == [SHIPPED]
    assert not page.exception


def test_a_model_a_queued_or_running_job_fine_tunes_from_cannot_be_removed(trained, tmp_path, monkeypatch, run_page):
    monkeypatch.setenv("LIVERSEG_TRAINED_DIR", str(trained))
    monkeypatch.setenv("LIVERSEG_DATA_DIRS", str(tmp_path))
    (tmp_path / "cases").mkdir()
    runner = JobRunner(tmp_path / "jobs", slots=1,
                       command=fake_training.command(fake_training.make_model(tmp_path / "tiny"), lambda request: "wait"))
    runner.submit(TrainingRequest("tuned", ["cases"], init="mine"))
    try:
        page = run_page("models")
        assert not [button for button in page.button if button.key == "remove-mine"]
        assert "Needed by job(s) tuned (fine-tuning from it)." in [caption.value for caption in page.caption]
    finally:
        fake_training.end_all(tmp_path / "jobs")


def test_the_download_holds_the_weights_and_the_card(trained):
    with zipfile.ZipFile(io.BytesIO(model_archive("mine"))) as archive:
        assert sorted(archive.namelist()) == ["mine/card.json", "mine/model.pt"]
        assert archive.read("mine/model.pt") == (trained / "mine" / "model.pt").read_bytes()


def test_without_models_the_page_points_to_training(tmp_path, monkeypatch, run_page):
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path / "none")
    monkeypatch.setattr(config, "JOBS_DIR", tmp_path / "jobs")
    assert "Train page" in run_page("models").info[0].value


def test_a_cascade_shows_both_stages_and_the_comparisons_mean(trained, run_page):
    """The shipped cascade's card (written by training, ``cross-validate`` and ``compare-models``) shows both stages and
    the mean of the comparison that put every model on the same cases, with the rule in its help."""
    shutil.copytree(SHIPPED_DIR / CASCADE, trained / CASCADE)
    card = ModelCard.load(trained / CASCADE)
    page = run_page("models")
    cascade = panel(page, CASCADE)
    facts = next(caption.value for caption in cascade.caption if caption.value.startswith("created"))
    spacing = " × ".join(f"{value:g}" for value in card.spacing_mm)
    assert f" · two-stage cascade · voxels of {spacing} mm · " in facts
    mean = card.metrics["comparison"]["mean"]
    metrics = {metric.label: metric.value for metric in cascade.metric}
    assert (metrics["Liver Dice"], metrics["Lesion Dice"]) == (f"{mean['liver_dice']:.3f}", f"{mean['lesion_dice']:.3f}")
    assert "never saw" in cascade.metric[0].help and "leave-one-case-out" in cascade.metric[0].help
    assert [code.value for code in cascade.code][:2] == [card.training["command"], card.first_stage.training["command"]]
    architecture = [block.value for block in cascade.markdown if "stage" in block.value]
    coarse_spacing = " × ".join(f"{value:g}" for value in card.first_stage.spacing_mm)
    assert any(text.startswith(f"First stage, on the whole scan: UNet, channels {card.first_stage.channels}, voxels of "
                               f"{coarse_spacing} mm") and f"{card.cascade['roi_margin_mm']:g} mm" in text
               for text in architecture)

