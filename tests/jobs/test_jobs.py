"""core.jobs (records, requests, runner, supervisor): start, follow, cancel, crash and restart recovery of background jobs.

The training is a stand-in (tests/fake_training.py: no torch, a few tenths of a
second), so every test drives real detached supervisor and training processes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from core import config
from core.errors import LiverSegError
from core.jobs import processes
from core.jobs.processes import process_start_time
from core.jobs.records import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, TrainingRequest, last_error
from core.jobs.runner import JobRunner
from core.model import registry
from core.model.card import ModelCard
from core.training.options import RUNNER_OPTIONS, TrainOptions, parse, training_options
from core.training.progress import best_validation
from tests.helpers import fake_training
from tests.helpers.fake_training import release

pytestmark = pytest.mark.slow  # each job starts a supervisor and a training process


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    return fake_training.make_model(tmp_path / "tiny-model")


@pytest.fixture
def places(tmp_path, monkeypatch) -> Iterator[Path]:
    """Temporary trained/, data and jobs folders, for this process and the supervisors it starts."""
    trained, data = tmp_path / "trained", tmp_path / "data"
    (data / "cases").mkdir(parents=True)
    monkeypatch.setenv("LIVERSEG_TRAINED_DIR", str(trained))
    monkeypatch.setenv("LIVERSEG_DATA_DIRS", str(data))
    monkeypatch.setattr(config, "TRAINED_DIR", trained)
    yield tmp_path
    fake_training.end_all(tmp_path / "jobs")  # a failed test leaves no job behind


@pytest.fixture
def runner(places, tiny_model) -> JobRunner:
    return JobRunner(places / "jobs", slots=1, command=fake_training.command(tiny_model, lambda request: MODES[request.name]))


#: The stand-in training's mode by model name (a request carries only real training options).
MODES: dict[str, str] = {}


def submit(runner: JobRunner, mode: str = "succeed", name: str = "liver") -> Job:
    MODES[name] = mode
    return runner.submit(TrainingRequest(name=name, data=["cases"]))


def wait_until(runner: JobRunner, job: Job, condition, timeout: float = 180) -> Job:
    """Poll the job's record until ``condition(job)``; a generous bound only against hanging forever."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = runner.job(job.id)
        if condition(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job.id} stuck in {job.state}: {job.reason}; log: {job.log_tail()}")


def running(job: Job) -> bool:
    return job.state == RUNNING and job.pid is not None


def ended(job: Job) -> bool:
    return not job.active


def test_a_job_runs_reports_progress_and_registers_its_model(runner):
    job = submit(runner)
    assert job.state == QUEUED
    job = wait_until(runner, job, ended)
    assert job.state == SUCCEEDED, job.reason
    assert job.model == "liver" and registry.model_dir("liver").is_dir()
    assert ModelCard.load(registry.model_dir("liver")).name == "liver"
    assert [record["loss"] for record in job.progress() if "loss" in record] == [1.0, 0.5]
    assert best_validation(job.progress()) == {"liver_dice": 0.5, "lesion_dice": 0.25}
    assert "epoch 0 done" in job.log_tail()
    assert job.exit_code == 0 and job.duration_s >= 0
    config_file = json.loads((job.folder / "config.json").read_text(encoding="utf-8"))
    assert config_file["request"]["data"] == [str(config.data_dirs()[0] / "cases")]


def test_a_second_model_of_the_same_name_gets_a_unique_name(runner):
    first = wait_until(runner, submit(runner), ended)
    second = wait_until(runner, submit(runner), ended)
    assert (first.model, second.model) == ("liver", "liver-2")


def test_a_failing_training_is_failed_with_its_error_line(runner):
    job = wait_until(runner, submit(runner, "fail"), ended)
    assert job.state == FAILED and job.exit_code == 2
    assert "no labelled cases under /data" in job.reason
    assert registry.list_cards() == []


def test_a_training_that_exits_cleanly_without_a_model_is_failed(runner):
    job = wait_until(runner, submit(runner, "interrupted"), ended)
    assert job.state == FAILED and job.exit_code == 0
    assert job.reason.startswith("the training stopped without writing a model") and "Received SIGTERM" in job.reason


def test_a_killed_training_is_failed_with_the_reason_and_no_model(runner):
    job = wait_until(runner, submit(runner, "wait"), running)
    os.killpg(job.pid, signal.SIGKILL)
    job = wait_until(runner, job, ended)
    assert job.state == FAILED and "killed by SIGKILL" in job.reason
    assert registry.list_cards() == []


def test_cancel_ends_the_process_group_and_registers_nothing(runner):
    job = wait_until(runner, submit(runner, "wait"), running)
    job = runner.cancel(job.id)
    assert job.state == CANCELLED and job.reason == "cancelled by the user"
    assert process_start_time(job.pid) != job.pid_start  # the training is gone
    assert registry.list_cards() == []
    assert runner.cancel(job.id).state == CANCELLED  # cancelling an ended job changes nothing


def test_jobs_queue_one_at_a_time_and_a_queued_job_can_be_cancelled(runner):
    first = wait_until(runner, submit(runner, "wait", "first"), running)
    second, third = submit(runner, "wait", "second"), submit(runner, "wait", "third")
    time.sleep(1)  # several supervisor polls: neither may start while the slot is taken
    assert [runner.job(job.id).state for job in (second, third)] == [QUEUED, QUEUED]
    assert runner.cancel(third.id).reason == "cancelled by the user before it started"
    release(first)
    second = wait_until(runner, second, running)  # the freed slot goes to the next in line
    assert runner.job(first.id).state == SUCCEEDED
    release(second)
    assert wait_until(runner, second, ended).state == SUCCEEDED
    assert [job.name for job in runner.jobs()] == ["third", "second", "first"]
    assert sorted(card.name for card in registry.list_cards()) == ["first", "second"]


def test_one_job_runs_per_gpu_and_sees_only_its_gpu(places, tiny_model, monkeypatch):
    """A simulated two-GPU server: two jobs run at once, each pinned to its GPU; a CPU job is not pinned."""
    monkeypatch.setattr(processes, "gpu_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    runner = JobRunner(places / "jobs", command=fake_training.command(tiny_model, lambda request: "wait"))
    first, second = (wait_until(runner, runner.submit(TrainingRequest(name, ["cases"])), running) for name in ("a", "b"))
    third = runner.submit(TrainingRequest("c", ["cases"], device="cpu"))
    assert sorted((first.slot, second.slot)) == [0, 1] and runner.job(third.id).state == QUEUED
    for job in (first, second):
        job = wait_until(runner, job, lambda job: "CUDA_VISIBLE_DEVICES" in job.log_tail())
        assert f"CUDA_VISIBLE_DEVICES={job.slot}" in job.log_tail()
        release(job)
    third = wait_until(runner, third, lambda job: "CUDA_VISIBLE_DEVICES" in job.log_tail())
    assert "CUDA_VISIBLE_DEVICES=None" in third.log_tail()
    release(third)
    assert wait_until(runner, third, ended).state == SUCCEEDED


def test_a_new_runner_sees_running_jobs_and_recognises_a_dead_supervisor(runner, places):
    job = wait_until(runner, submit(runner, "wait"), lambda job: running(job) and job.supervisor_pid)
    restarted = JobRunner(places / "jobs")  # as after an app restart: only the folder is shared
    assert restarted.job(job.id).state == RUNNING
    os.kill(job.supervisor_pid, signal.SIGKILL)
    job = wait_until(restarted, job, ended)
    assert job.state == FAILED and "supervisor process ended while the job was running" in job.reason
    deadline = time.monotonic() + 30
    while process_start_time(job.pid) == job.pid_start and time.monotonic() < deadline:
        time.sleep(0.05)  # the kernel's SIGTERM (or the recovery's SIGKILL) ends the orphaned training
    assert process_start_time(job.pid) != job.pid_start
    assert registry.list_cards() == []


def test_a_queued_job_whose_supervisor_died_is_failed_and_does_not_block_the_queue(runner):
    first = wait_until(runner, submit(runner, "wait", "first"), running)
    second = wait_until(runner, submit(runner, "wait", "second"), lambda job: job.supervisor_pid)
    third = submit(runner, "succeed", "third")
    os.kill(second.supervisor_pid, signal.SIGKILL)
    assert wait_until(runner, second, ended).reason.endswith(
        "while the job was queued (the server restarted or the process was killed); the partial model was not registered")
    release(first)
    assert wait_until(runner, third, ended).state == SUCCEEDED


def test_requests_are_checked_before_anything_starts(runner, places):
    (places / "elsewhere").mkdir()
    (places / "data" / "link-out").symlink_to(places / "elsewhere")
    for request, message in [
        (TrainingRequest(name="../x", data=["cases"]), "model name"),
        (TrainingRequest(name="ok", data=[]), "at least one folder"),
        (TrainingRequest(name="ok", data=["../elsewhere"]), "not inside the data folders"),
        (TrainingRequest(name="ok", data=[str(places / "elsewhere")]), "not inside the data folders"),
        (TrainingRequest(name="ok", data=["link-out"]), "not inside the data folders"),
        (TrainingRequest(name="ok", data=["cases"], device="tpu"), "device"),
        (TrainingRequest(name="ok", data=["cases"], init="no-such-model"), "no model named"),
    ]:
        with pytest.raises(LiverSegError, match=message):
            runner.submit(request)
    assert not (places / "jobs").exists() or list((places / "jobs").iterdir()) == []


#: A value other than the default for every option the Train page offers (``training_options()``).
ASKED = {"val": "1", "exclude": "case9", "epochs": 3, "patches_per_epoch": 7, "samples_per_volume": 3, "batch_size": 4,
         "lr": 0.01, "weight_decay": 0.001, "patience": 5, "val_every": 2, "max_minutes": 30.0, "seed": 7,
         "patch_size": [32, 48, 64], "label_probabilities": [0.1, 0.3, 0.6], "augment": 0.5, "synthetic_lesions": 0.25,
         "channels": [4, 8, 16], "spacing": [3.0], "hu_window": [-100.0, 200.0], "roi_margin": 10.0, "denoise": "median",
         "network": "liver", "train_layers": "all", "precision": "float32", "threads": 1, "num_workers": 0}


def test_training_options_come_from_the_cli_definition():
    """The Train page's options are TrainOptions' fields less those the runner sets, with the CLI's defaults and help."""
    offered = {option.name: option for option in training_options()}
    assert set(offered) == {option.name for option in fields(TrainOptions)} - RUNNER_OPTIONS
    assert {"epochs", "lr", "patch_size", "channels", "augment", "denoise"} <= set(offered)
    assert not set(offered) & {"data", "out", "init", "first_stage", "resume", "devices", "accelerator", "cache_dir"}
    defaults = parse(["--data", "d", "--out", "o"])
    for name, option in offered.items():
        assert option.default == getattr(defaults, name), name
        assert option.help == TrainOptions.__dataclass_fields__[name].metadata["help"] and option.help, name
    assert (offered["epochs"].kind, offered["epochs"].count, offered["epochs"].default) == ("int", 1, 100)
    assert (offered["patch_size"].kind, offered["patch_size"].count) == ("int", 3)
    assert (offered["channels"].count, offered["lr"].kind) == (None, "float")
    assert (offered["denoise"].kind, offered["denoise"].choices) == ("choice", ["none", "gaussian", "median"])


def test_every_offered_option_reaches_the_jobs_command_and_record(runner, places):
    """Options asked of a job are recorded with it and are in the exact ``python -m core train`` command it will run."""
    assert set(ASKED) == {option.name for option in training_options()}, "an option was added: give it a value in ASKED"
    first = wait_until(runner, submit(runner, "wait", "first"), running)  # holds the only slot, so the next job waits
    real = JobRunner(places / "jobs", slots=1)  # the real training command
    job = real.submit(TrainingRequest("asked", ["cases"], device="cpu", options=ASKED))
    recorded = real.job(job.id)  # read back from the job's folder
    assert recorded.state == QUEUED and recorded.request.options == ASKED
    assert recorded.command[:4] == [sys.executable, "-m", "core", "train"]
    written = json.loads((recorded.folder / "config.json").read_text(encoding="utf-8"))["command"]
    assert written == recorded.command
    assert " --epochs 3 " in " ".join(written) and " --patch-size 32 48 64 " in " ".join(written)
    options = parse(recorded.command[4:])
    assert {name: getattr(options, name) for name in ASKED} == ASKED
    assert (options.data, options.accelerator) == ([str(places / "data" / "cases")], "cpu")
    assert real.cancel(job.id).reason == "cancelled by the user before it started"
    release(first)
    assert wait_until(runner, first, ended).state == SUCCEEDED


def test_progress_skips_a_line_still_being_written(tmp_path):
    job = Job("j", tmp_path, RUNNING, "", TrainingRequest("m", ["d"]), [])
    job.output.mkdir(parents=True)
    (job.output / "progress.jsonl").write_text('{"event": "step", "loss": 0.9}\n{"event": "step", "lo', encoding="utf-8")
    assert job.progress() == [{"event": "step", "loss": 0.9}]


def test_best_validation_skips_missing_values():
    records = [{"event": "validation", "liver_dice": value, "lesion_dice": None} for value in (float("nan"), 0.7, 0.6)]
    assert best_validation(records + [{"event": "step", "liver_dice": 0.99}]) == {"liver_dice": 0.7}


def test_last_error_prefers_the_cli_error_line():
    assert last_error("loading\nerror: bad labels in case 3\n") == "bad labels in case 3"
    assert last_error("Traceback...\n  File x\nRuntimeError: boom\n") == "RuntimeError: boom"
    assert last_error("") == "no output; see the job's log"


def test_a_missing_job_is_a_clear_error(runner):
    with pytest.raises(LiverSegError, match="no training job"):
        runner.job("nope")
    with pytest.raises(LiverSegError, match="no training job"):
        runner.job("../etc")


def test_a_real_tiny_training_on_phantoms_is_registered_and_loads(places, monkeypatch):
    """``python -m core train`` itself, through the runner: one epoch of 16-voxel patches on two small phantoms."""
    fake_training.labelled_phantoms(places / "data" / "cases")
    monkeypatch.setenv("LIVERSEG_CACHE_DIR", str(places / "cache"))  # the preprocessed-case cache stays out of the checkout
    options = {"epochs": 1, "patches_per_epoch": 2, "patch_size": [16, 16, 16], "channels": [4, 8], "spacing": [4.0], "val": "1"}
    runner = JobRunner(places / "jobs", slots=1)
    job = wait_until(runner, runner.submit(TrainingRequest("phantom", ["cases"], device="cpu", options=options)), ended, 900)
    assert job.state == SUCCEEDED, f"{job.reason}\n{job.log_tail()}"
    assert [record["event"] for record in job.progress()][::len(job.progress()) - 1] == ["start", "end"]
    assert set(best_validation(job.progress())) == {"liver_dice", "lesion_dice"}
    network, card = registry.load_network(job.model)
    assert card.name == "phantom" and card.patch_size == [16, 16, 16] and not card.shipped
