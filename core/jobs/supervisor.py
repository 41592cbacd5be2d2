"""One job's supervisor: ``python -m core.jobs FOLDER --lock-fd N``, started by ``JobRunner.submit``.

It holds the job's lock for as long as it lives, waits for the job's turn in the queue,
runs the training in its own process group, records the outcome and registers the
finished model (``core.jobs.runner`` explains why a supervisor rather than the app).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

from core import config
from core.errors import LiverSegError
from core.jobs import processes
from core.jobs.records import (
    CANCEL_FILE,
    CANCELLED,
    CONFIG_FILE,
    FAILED,
    LOG_FILE,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    last_error,
    now,
    read_job,
    write_status,
)
from core.jobs.runner import CANCEL_GRACE_S, POLL_S, JobRunner
from core.model.card import CARD_FILE


def _queue_turn(runner: JobRunner, job: Job, slots: int) -> IO | None:
    """Wait until ``job`` is the oldest queued job and a slot is free; the held slot lock, or ``None`` if cancelled."""
    slots_dir = runner.jobs_dir / ".slots"
    slots_dir.mkdir(exist_ok=True)
    while not (job.folder / CANCEL_FILE).exists():
        with processes.flock(runner.jobs_dir / ".queue.lock"):
            queued = [other for other in reversed(runner.jobs()) if other.state == QUEUED]
            if queued and queued[0].id == job.id:
                for slot in range(slots):
                    handle = open(slots_dir / f"{slot}.lock", "a", encoding="utf-8")
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        handle.close()
                        continue
                    job.state, job.slot, job.started = RUNNING, slot, now()
                    write_status(job)  # running before the queue lock is released: the next in line waits
                    return handle
        time.sleep(POLL_S)
    return None


def supervise(runner: JobRunner, folder: Path) -> None:
    """Run one job to its end. Called in the supervisor process, which holds the job's lock."""
    job = read_job(folder)
    setup = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    job.supervisor_pid = os.getpid()
    write_status(job)
    slot_lock = _queue_turn(runner, job, setup["slots"])
    if slot_lock is None:
        job.state, job.ended, job.reason = CANCELLED, now(), "cancelled by the user before it started"
        write_status(job)
        return
    with slot_lock:
        environment = dict(os.environ)
        if setup["pin_gpu"]:
            environment["CUDA_VISIBLE_DEVICES"] = str(job.slot)
        with open(folder / LOG_FILE, "ab") as log:
            training = subprocess.Popen(job.command, cwd=config.ROOT, env=environment, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=processes.die_with_parent)
        job.pid, job.pid_start = training.pid, processes.process_start_time(training.pid)
        write_status(job)
        cancelled = False
        while training.poll() is None:
            if (folder / CANCEL_FILE).exists():
                processes.end_process_group(training.pid, CANCEL_GRACE_S, lambda: training.poll() is not None)
                cancelled = True
            time.sleep(POLL_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(training.pid, signal.SIGKILL)  # helpers the training left behind hold memory or a GPU
        job.exit_code, job.ended = training.returncode, now()
        job.state, job.reason = CANCELLED, "cancelled by the user"
        if not cancelled:
            job.state, job.reason = _outcome(job)
        write_status(job)


def _outcome(job: Job) -> tuple[str, str | None]:
    """State and reason of a training that exited on its own; registers the model on success."""
    code = job.exit_code
    if code == 0 and not (job.output / CARD_FILE).is_file():
        # A training stopped by SIGTERM from outside (Lightning ends it cleanly) exits 0 without a model.
        return FAILED, f"the training stopped without writing a model (was it interrupted?): {last_error(job.log_tail(200))}"
    if code == 0:
        from core.model.registry import register_model

        try:
            job.model = register_model(job.output)
        except (LiverSegError, OSError) as error:
            return FAILED, f"training finished but its model could not be registered: {error}"
        return SUCCEEDED, None
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (the system may have run out of memory)" if name == "SIGKILL" else ""
        return FAILED, f"the training process was killed by {name}{hint}; the partial model was not registered"
    return FAILED, f"training exited with code {code}: {last_error(job.log_tail(200))}"


def main(argv: list[str] | None = None) -> None:
    """The supervisor: ``python -m core.jobs FOLDER --lock-fd N`` (started by ``JobRunner.submit``)."""
    parser = argparse.ArgumentParser(prog="python -m core.jobs", description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--lock-fd", type=int, required=True, help="descriptor of the job's lock, already held")
    args = parser.parse_args(argv)
    fcntl.flock(args.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails unless handed the job's held lock
    folder = args.folder.resolve()
    runner = JobRunner(folder.parent)
    try:
        supervise(runner, folder)
    except BaseException as error:
        job = read_job(folder)
        if job.active:
            job.state, job.ended, job.reason = FAILED, now(), f"the job's supervisor failed: {error!r}"
            write_status(job)
        raise
