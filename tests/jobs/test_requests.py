"""core.jobs.requests: every value of a training request is checked as a typed value before a job starts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from core import config
from core.errors import LiverSegError
from core.jobs.records import CONFIG_FILE, QUEUED, Job, TrainingRequest, now, read_job, write_status
from core.jobs.requests import check_request, training_command
from core.training.options import parse


@pytest.fixture
def places(tmp_path, monkeypatch) -> Path:
    """A data folder holding ``cases``, and an empty trained/."""
    (tmp_path / "data" / "cases").mkdir(parents=True)
    monkeypatch.setenv("LIVERSEG_DATA_DIRS", str(tmp_path / "data"))
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path / "trained")
    return tmp_path


def test_the_training_command_is_written_from_the_checked_typed_options(places):
    (places / "data" / "more").mkdir()
    request = check_request(TrainingRequest(name="m", data=["cases", "more"], device="cuda",
                                            options={"epochs": 3, "patch_size": [32, 32, 32], "lr": 1}))
    assert request.options == {"epochs": 3, "patch_size": [32, 32, 32], "lr": 1.0}
    command = training_command(request, places / "m")
    assert command[:4] == [sys.executable, "-m", "core", "train"]
    cases, more = str(places / "data" / "cases"), str(places / "data" / "more")
    assert command[4:] == ["--data", cases, "--data", more, "--out", str(places / "m"), "--epochs", "3", "--lr", "1.0",
                           "--patch-size", "32", "32", "32", "--accelerator", "cuda", "--devices", "1"]
    options = parse(command[4:])  # the command says exactly what was asked, in the CLI's own terms
    assert (options.epochs, options.patch_size, options.accelerator, options.devices) == (3, [32, 32, 32], "cuda", "1")
    cpu = check_request(TrainingRequest(name="m", data=["cases"], device="cpu"))
    assert training_command(cpu, places)[-2:] == ["--accelerator", "cpu"]


@pytest.mark.parametrize("options, message", [
    ({"epochs": 0}, "not a positive whole number"),
    ({"epochs": "3"}, "takes int values"),
    ({"epochs": 2.5}, "takes int values"),
    ({"epochs": True}, "takes int values"),
    ({"lr": "0.1"}, "takes float values"),
    ({"patch_size": [32, 32]}, "takes 3 values"),
    ({"patch_size": 32}, "takes 3 values"),
    ({"channels": []}, "one value or more"),
    ({"val": "--resume"}, "may not start with '-'"),
    ({"exclude": "-x"}, "may not start with '-'"),
    ({"denoise": "sharpen"}, "choose one of none, gaussian, median"),
    ({"no_such_option": 1}, "does not exist"),
    ({"out": "x"}, "set by the job runner"),
    ({"cache_dir": "/tmp"}, "set by the job runner"),
])
def test_every_option_is_checked_as_a_typed_value(places, options, message):
    with pytest.raises(LiverSegError, match=message):
        check_request(TrainingRequest(name="m", data=["cases"], options=options))


def test_names_and_folders_may_not_start_with_a_dash(places):
    (places / "data" / "-x").mkdir()
    with pytest.raises(LiverSegError, match="may not start with '-'"):
        check_request(TrainingRequest(name="m", data=["-x"]))
    with pytest.raises(LiverSegError, match="model name"):
        check_request(TrainingRequest(name="-m", data=["cases"]))
    with pytest.raises(LiverSegError, match="may not start with '-'"):
        check_request(TrainingRequest(name="m", data=["cases"], first_stage="--resume"))


def test_a_job_recorded_with_the_old_name_of_the_first_stage_is_still_read(tmp_path):
    job = Job("old", tmp_path, QUEUED, now(), TrainingRequest("m", ["cases"]), [])
    write_status(job)
    request = {"name": "m", "data": ["cases"], "init": None, "device": "auto", "options": {}, "coarse": "first"}
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"request": request, "command": []}), encoding="utf-8")
    assert read_job(tmp_path).request.first_stage == "first"


@pytest.mark.parametrize("option", ["channels", "patch_size", "spacing", "hu_window", "label_probabilities"])
def test_the_injection_of_issue_22_is_refused_in_each_several_value_option(places, option):
    """``4 8 --data /tmp/outside_data --out /tmp/pwned_out`` as the page's words: refused, never a command line."""
    words = [4, 8, "--data", "/tmp/outside_data", "--out", "/tmp/pwned_out"]
    with pytest.raises(LiverSegError, match=f"training option '{option}'"):
        check_request(TrainingRequest(name="m", data=["cases"], options={option: words}))
    with pytest.raises(LiverSegError, match="not inside the data folders"):
        check_request(TrainingRequest(name="m", data=["/tmp"]))
