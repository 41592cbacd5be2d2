import json
from dataclasses import asdict

import pytest
import torch

from core import config
from core.errors import LiverSegError
from core.jobs import processes
from core.jobs.records import CONFIG_FILE, LOCK_FILE, QUEUED, Job, TrainingRequest, now, write_status
from core.model import registry
from core.model.card import WEIGHTS_FILE, ModelCard
from core.model.unet import UNet

CHANNELS = [2, 4]


@pytest.fixture
def trained(tmp_path, monkeypatch):
    root = tmp_path / "trained"
    monkeypatch.setattr(config, "TRAINED_DIR", root)
    return root


def make_model(folder, name="m", shipped=False, created="2025-01-01T00:00:00", channels=CHANNELS):
    torch.manual_seed(len(name))
    network = UNet(channels)
    registry.save_model(network, ModelCard(name=name, channels=channels, shipped=shipped, created=created), folder / name)
    return network


def test_load_network_returns_the_saved_weights_in_eval_mode(trained):
    saved = make_model(trained)
    network, card = registry.load_network("m")
    assert card.name == "m" and card.channels == CHANNELS
    assert not network.training
    for key, value in saved.state_dict().items():
        torch.testing.assert_close(network.state_dict()[key], value)


def test_missing_weights_say_which_model_and_what_to_do(trained):
    make_model(trained)
    (trained / "m" / WEIGHTS_FILE).unlink()
    with pytest.raises(LiverSegError, match=r"'m' has no weights.*retrain"):
        registry.load_network("m")


def test_corrupt_weights_are_a_clear_error(trained):
    make_model(trained)
    (trained / "m" / WEIGHTS_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(LiverSegError, match=r"weights of model 'm'.*cannot be read"):
        registry.load_network("m")


class Payload:
    """Anything but tensors: weights_only loading must refuse to unpickle it."""


def test_pickled_objects_are_refused(trained):
    make_model(trained)
    torch.save({"payload": Payload()}, trained / "m" / WEIGHTS_FILE)
    with pytest.raises(LiverSegError, match="not a state dict"):
        registry.load_network("m")


def test_weights_that_do_not_fit_the_card_are_a_clear_error(trained):
    make_model(trained)
    card = ModelCard.load(trained / "m")
    card.channels = [4, 8]
    card.save(trained / "m")
    with pytest.raises(LiverSegError, match=r"do not match its card \(channels \[4, 8\]"):
        registry.load_network("m")


@pytest.mark.parametrize("name", ["nope", "../m", "", ".hidden"])
def test_unknown_or_unsafe_names_are_refused(trained, name):
    make_model(trained)
    with pytest.raises(LiverSegError, match="no model named|not a model name"):
        registry.model_dir(name)


def test_list_cards_newest_first_and_skips_broken_folders(trained):
    make_model(trained, "old", created="2024-01-01")
    make_model(trained, "new", created="2025-06-01")
    (trained / "broken").mkdir()
    (trained / "broken" / "card.json").write_text("{", encoding="utf-8")
    (trained / "notes").mkdir()
    assert [card.name for card in registry.list_cards()] == ["new", "old"]


def test_default_is_the_saved_choice_else_newest_shipped(trained):
    with pytest.raises(LiverSegError, match="no trained model"):
        registry.default_model()
    make_model(trained, "shipped-old", shipped=True, created="2024-01-01")
    make_model(trained, "local-new", created="2025-06-01")
    assert registry.default_model() == "shipped-old"
    registry.set_default_model("local-new")
    assert json.loads((trained / registry.DEFAULT_FILE).read_text(encoding="utf-8")) == {"model": "local-new"}
    assert registry.default_model() == "local-new"
    registry.remove_model("local-new")
    assert registry.default_model() == "shipped-old"
    with pytest.raises(LiverSegError, match="no model named"):
        registry.set_default_model("local-new")


def test_shipped_models_cannot_be_removed(trained):
    make_model(trained, "shipped", shipped=True)
    with pytest.raises(LiverSegError, match="cannot be removed"):
        registry.remove_model("shipped")
    assert (trained / "shipped" / WEIGHTS_FILE).exists()


def test_a_model_a_queued_or_running_job_needs_cannot_be_removed(trained, tmp_path, monkeypatch):
    """The registry itself refuses, whoever asks: a job's supervisor holds the job's lock while it lives."""
    make_model(trained, "base")
    make_model(trained, "first")
    jobs = tmp_path / "jobs"
    monkeypatch.setattr(config, "JOBS_DIR", jobs)
    job = Job("j1", jobs / "j1", QUEUED, now(), TrainingRequest("tuned", ["cases"], init="base", first_stage="first"), [])
    job.folder.mkdir(parents=True)
    (job.folder / CONFIG_FILE).write_text(json.dumps({"request": asdict(job.request), "command": []}), encoding="utf-8")
    write_status(job)
    with processes.flock(job.folder / LOCK_FILE) as lock:  # a live supervisor
        assert lock is not None
        for name in ("base", "first"):
            with pytest.raises(LiverSegError, match="needed by training job"):
                registry.remove_model(name)
    assert (trained / "base" / WEIGHTS_FILE).exists() and (trained / "first" / WEIGHTS_FILE).exists()
    registry.remove_model("base")  # the lock is free: the job lost its supervisor and is no longer active
    assert not (trained / "base").exists()


def test_register_gives_unique_names_and_skips_checkpoints(trained, tmp_path):
    make_model(tmp_path / "run", "my model!", shipped=True)
    source = tmp_path / "run" / "my model!"
    (source / "checkpoints").mkdir()
    (source / "checkpoints" / "last.ckpt").write_bytes(b"x")
    first, second = registry.register_model(source), registry.register_model(source)
    assert (first, second) == ("my-model", "my-model-2")
    card = ModelCard.load(trained / second)
    assert card.name == second and not card.shipped
    assert not (trained / first / "checkpoints").exists()
    registry.load_network(second)
    assert sorted(p.name for p in trained.iterdir()) == [first, second]  # no staging folders left


def test_register_refuses_mismatched_weights_and_leaves_nothing(trained, tmp_path):
    make_model(tmp_path, "bad")
    card = ModelCard.load(tmp_path / "bad")
    card.channels = [4, 8]
    card.save(tmp_path / "bad")
    with pytest.raises(LiverSegError, match="do not match"):
        registry.register_model(tmp_path / "bad")
    assert list(trained.iterdir()) == []
