"""pages/train.py in streamlit's AppTest: data discovery, options, start, follow, cancel, finished jobs.

Jobs run for real (detached supervisors) with the stand-in training of tests/fake_training.py.
"""

from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import config
from core.errors import LiverSegError
from core.jobs import processes, records, runner
from tests.helpers import fake_training

pytestmark = pytest.mark.slow  # starts and follows real job processes


@pytest.fixture
def places(tmp_path, monkeypatch):
    """data/phantoms with two labelled phantoms, a refused pair and an unlabelled image; empty jobs and trained folders."""
    data = fake_training.labelled_phantoms(tmp_path / "data" / "phantoms", shape=(24, 20, 16))
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), data / "broken_seg.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.int16), np.eye(4)), data / "broken.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), data / "lonely.nii.gz")
    for variable, path in (("LIVERSEG_DATA_DIRS", tmp_path / "data"), ("LIVERSEG_JOBS_DIR", tmp_path / "jobs"),
                           ("LIVERSEG_TRAINED_DIR", tmp_path / "trained")):
        monkeypatch.setenv(variable, str(path))
    monkeypatch.setattr(config, "JOBS_DIR", tmp_path / "jobs")
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path / "trained")
    return tmp_path


@pytest.fixture
def stand_in(places, monkeypatch):
    """Jobs started from the page run the stand-in training; it waits for ``release`` when the model name says so."""
    model = fake_training.make_model(places / "tiny-model")
    monkeypatch.setattr(runner, "training_command",
                        fake_training.command(model, lambda request: "wait" if "wait" in request.name else "succeed"))
    monkeypatch.setattr(processes, "gpu_count", lambda: 0)
    yield
    fake_training.end_all(places / "jobs")  # a failed test leaves no job behind


def wait_for(page: AppTest, condition, timeout: float = 180) -> AppTest:
    """Rerun the page (as the fragment's timer would) until ``condition()``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the job did not get there"
        time.sleep(0.1)
    page.run()
    assert not page.exception, page.exception
    return page


def only_job() -> records.Job:
    [job] = runner.JobRunner().jobs()
    return job


def test_the_page_lists_the_cases_found_and_the_files_it_will_not_use(places, stand_in, run_page):
    page = run_page("train")
    assert "No training jobs yet" in page.info[0].value
    assert page.multiselect[0].value == ["data/phantoms"]
    [cases] = [frame.value for frame in page.dataframe if "Case" in frame.value.columns]
    assert list(cases["Case"]) == ["ph0", "ph1"]
    problems = next(frame.value for frame in page.dataframe if "Problem" in frame.value.columns)
    assert any("lonely.nii.gz" in text for text in problems["Problem"])
    assert any(text.startswith("refused: broken") for text in problems["Problem"])
    labels = {widget.label for widget in page.number_input}
    assert {"Epochs", "Batch size", "Learning rate"} <= labels  # from the CLI's own option definitions
    assert page.button[-1].label == "Start training"
    assert "no estimate of the time yet" in " ".join(c.value for c in page.caption)  # nothing has trained here yet
    assert not any("/" in str(image) for image in cases["Image"])  # file names, not server paths


def test_several_values_are_sent_as_numbers_and_a_bad_one_is_named(places, stand_in, run_page):
    page = run_page("train")
    page.text_input(key="model_name").set_value("shaped")
    page.text_input(key="option-patch_size").set_value("32 48 64")
    page.text_input(key="option-spacing").set_value("1.5")
    page.button[-1].click().run()
    assert not page.exception, page.exception
    request = json.loads((only_job().folder / "config.json").read_text(encoding="utf-8"))["request"]
    assert request["options"] == {"patch_size": [32, 48, 64], "spacing": [1.5]}
    page.text_input(key="model_name").set_value("bad-shape").run()  # the page reruns as the name is typed
    page.text_input(key="option-patch_size").set_value("32 48 x")
    page.button[-1].click().run()
    assert "training option 'patch_size' takes int values, not 'x'" in page.error[0].value


def test_start_follow_and_cancel_a_job(places, stand_in, run_page):
    page = run_page("train")
    page.text_input(key="model_name").set_value("wait-model")
    page.number_input(key="option-epochs").set_value(3)
    page.button[-1].click().run()
    assert not page.exception, page.exception
    job = only_job()
    request = json.loads((job.folder / "config.json").read_text(encoding="utf-8"))["request"]
    assert request["options"] == {"epochs": 3}  # only what differs from the CLI defaults
    assert request["data"] == [str(places / "data" / "phantoms")] and request["device"] == "auto"

    page = wait_for(page, lambda: only_job().progress() and only_job().state == records.RUNNING)
    assert page.subheader[0].value == "wait-model :blue-badge[:material/play_arrow: running]"
    assert len(page.get("plotly_chart")) == 2  # loss and validation Dice curves
    assert "epoch 0 done" in page.code[0].value
    assert [metric.value for metric in page.metric][:4] == ["1 of 2", "0.500", "0.500", "0.250"]

    page.button(key=f"cancel-{job.id}").click().run()
    assert only_job().state == records.CANCELLED
    assert "Cancelled" in page.warning[0].value
    assert page.dataframe[0].value["Status"].tolist() == ["cancelled"]


def test_a_second_job_is_followed_while_it_waits_in_the_queue(places, stand_in, run_page):
    page = run_page("train")
    page.text_input(key="model_name").set_value("wait-first")
    page.button[-1].click().run()
    page = wait_for(page, lambda: only_job().state == records.RUNNING)
    assert page.button[-1].disabled and "already used" in page.warning[-1].value  # a running job's name is refused
    page.text_input(key="model_name").set_value("second").run()
    page.button[-1].click().run()
    assert not page.exception, page.exception
    assert page.selectbox(key="followed").value == runner.JobRunner().jobs()[0].id  # the new job, not the running one
    assert "Waiting for the running job to finish" in page.info[0].value
    first = runner.JobRunner().jobs()[-1]
    fake_training.release(first)
    wait_for(page, lambda: all(not job.active for job in runner.JobRunner().jobs()))


def test_a_finished_job_shows_its_model_and_best_dice(places, stand_in, run_page):
    page = run_page("train")
    page.text_input(key="model_name").set_value("quick")
    page.button[-1].click().run()
    page = wait_for(page, lambda: only_job().state == records.SUCCEEDED)
    assert "registered as **quick**" in page.success[0].value
    row = page.dataframe[0].value.iloc[0]
    assert (row["Status"], row["Registered as"], row["Best liver Dice"]) == ("succeeded", "quick", 0.5)
    page.run()
    # The next job's length, before it starts, from this one's measured speed; its name is taken now.
    assert any("at most on this server" in caption.value for caption in page.caption)
    assert page.button[-1].disabled and "already used" in page.warning[-1].value


def test_fine_tuning_starts_from_a_model_and_takes_its_model_settings(places, stand_in, run_page):
    fake_training.make_model(places / "trained" / "base")
    page = run_page("train")
    page.radio[0].set_value("fine-tune").run()
    next(box for box in page.selectbox if box.label == "Model to fine-tune").set_value("base")
    page.text_input(key="model_name").set_value("tuned")
    page.button[-1].click().run()
    assert not page.exception, page.exception
    assert page.text_input(key="option-channels").disabled  # the model's own card decides
    assert "Taken from base's card when fine-tuning." in [caption.value for caption in page.caption]
    request = json.loads((only_job().folder / "config.json").read_text(encoding="utf-8"))["request"]
    assert (request["init"], request["options"]) == ("base", {})


def test_a_bad_model_name_is_refused_on_the_page(places, stand_in, run_page):
    page = run_page("train")
    page.text_input(key="model_name").set_value("../../etc")
    page.button[-1].click().run()
    assert "model name" in page.error[0].value
    assert runner.JobRunner().jobs() == []


def test_without_labelled_data_the_page_says_what_to_do(places, stand_in, monkeypatch, tmp_path, run_page):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LIVERSEG_DATA_DIRS", str(tmp_path / "empty"))
    page = run_page("train")
    assert "No labelled cases" in page.warning[0].value


def test_a_job_belongs_to_whoever_started_it(places, stand_in, run_page, machine_paths):
    """Issue 22, finding 9: others see the job without server paths and without Cancel; its owner and administrators cancel."""
    page = run_page("train")
    page.session_state["user"] = "alice"
    page.text_input(key="model_name").set_value("wait-model")
    page.button[-1].click().run()
    wait_for(page, lambda: only_job().state == records.RUNNING)
    job = only_job()
    assert job.owner == "alice"

    bob = run_page("train")
    bob.session_state["user"] = "bob"
    bob.run()
    assert not [button for button in bob.button if button.key == f"cancel-{job.id}"]
    assert "Only whoever started this job" in " ".join(caption.value for caption in bob.caption)
    assert bob.dataframe[0].value["Started by"].tolist() == ["alice"]
    shown = [element.value for element in [*bob.code, *bob.caption, *bob.markdown]]
    assert not machine_paths(shown), machine_paths(shown)  # no job folder, data or python path
    with pytest.raises(LiverSegError, match="started by alice"):
        runner.JobRunner().cancel(job.id, by="bob")

    admin = run_page("train")
    admin.session_state["user"], admin.session_state["admin"] = "carol", True
    admin.run()
    admin.button(key=f"cancel-{job.id}").click().run()
    assert only_job().state == records.CANCELLED
