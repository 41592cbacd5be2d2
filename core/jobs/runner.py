"""``JobRunner``: submit, list, follow and cancel background training jobs.

``JobRunner.submit`` checks the request (``core.jobs.requests``), writes the job's
folder (``core.jobs.records``) and starts ``python -m core.jobs FOLDER`` in a new
session (``core.jobs.supervisor``), so that closing the tab or restarting the app
never touches it. The supervisor waits for its turn in the queue, starts the training
in a new process group, waits for it, records the outcome and registers the finished
model. This is preferred over an app that starts the training itself and polls it,
because only a parent learns the exit code (after an app restart a poller could only
guess success from files), and because a queued job must start when the slot frees
even when no browser is open to poll.

Liveness is a lock, not a pid: a queued or running job whose lock is free has lost its
supervisor (killed, or the machine restarted). Whoever notices (any runner's listing,
or another job's supervisor looking at the queue) takes the lock and marks the job
failed with that reason; pid reuse cannot fool this. The submitter takes the lock
before writing the first status and hands the locked descriptor to the supervisor, so
there is no moment at which a live job looks dead. The training also gets SIGTERM from
the kernel when its supervisor dies (``PR_SET_PDEATHSIG``).

Queue: one running job per slot, one slot per CUDA GPU (the job sees only its GPU
through ``CUDA_VISIBLE_DEVICES``; a CPU job takes a slot too), one slot on a CPU-only machine. A slot is a lock
file ``.slots/N.lock`` held by the running supervisor; the oldest queued job takes
the first free slot, decided under ``.queue.lock``. Jobs started from here train on
one device each; multi-GPU (DDP) runs go through ``python -m core train`` directly.

Cancel: the ``cancel`` file; the supervisor notices within ``POLL_S``, ends the
training's process group (SIGTERM, then SIGKILL after ``CANCEL_GRACE_S``), marks the
job cancelled and does not register its partial model. A training that has already
exited successfully is registered: a cancel arriving then is too late.
"""

from __future__ import annotations

import fcntl
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from core import config
from core.atomic import write_atomically
from core.errors import LiverSegError
from core.jobs import processes
from core.jobs.records import (
    CANCEL_FILE,
    CANCELLED,
    CONFIG_FILE,
    FAILED,
    LOCK_FILE,
    NAME_PATTERN,
    QUEUED,
    STATUS_FILE,
    SUPERVISOR_LOG,
    Job,
    TrainingRequest,
    now,
    read_job,
    write_status,
)
from core.jobs.requests import check_request, training_command

#: How often a supervisor looks at its queue position, its training and the cancel file (s).
POLL_S = 0.5
#: Time a cancelled training gets to end after SIGTERM before SIGKILL (s).
CANCEL_GRACE_S = 10.0


class JobRunner:
    """Submit, list, follow and cancel training jobs under ``jobs_dir``.

    Stateless apart from its paths: any number of runners (page runs, app restarts,
    supervisors) over the same folder see the same truth.

    Args:
        jobs_dir: folder of job folders (default ``config.JOBS_DIR``).
        slots: jobs that may run at once (default: one per CUDA GPU, else one).
        command: builds the command a job runs from the checked request and its output
            folder (default ``core.jobs.requests.training_command``); tests pass a short stand-in.
    """

    def __init__(self, jobs_dir: Path | None = None, slots: int | None = None,
                 command: Callable[[TrainingRequest, Path], list[str]] | None = None) -> None:
        self.jobs_dir = Path(jobs_dir or config.JOBS_DIR)
        self.slots = slots
        self.command = command or training_command

    # ---- reading

    def jobs(self) -> list[Job]:
        """Every job, newest first, with dead supervisors recognised."""
        if not self.jobs_dir.is_dir():
            return []
        jobs = [self._refresh(folder) for folder in self.jobs_dir.iterdir() if (folder / STATUS_FILE).is_file()]
        return sorted(jobs, key=lambda job: (job.created, job.id), reverse=True)

    def job(self, job_id: str) -> Job:
        folder = self.jobs_dir / job_id
        if not NAME_PATTERN.fullmatch(job_id) or not (folder / STATUS_FILE).is_file():
            raise LiverSegError(f"no training job {job_id!r} in {self.jobs_dir}")
        return self._refresh(folder)

    def models_in_use(self) -> dict[str, list[str]]:
        """Model name -> the queued or running jobs that need it (to fine-tune from, or as a first stage)."""
        needed: dict[str, list[str]] = {}
        for job in self.jobs():
            for model in job.request.models() if job.active else ():
                needed.setdefault(model, []).append(job.name)
        return needed

    def _refresh(self, folder: Path) -> Job:
        """The job as recorded, after recognising a dead supervisor (free lock) and recording why."""
        job = read_job(folder)
        if not job.active:
            return job
        with processes.flock(folder / LOCK_FILE, blocking=False) as lock:
            if lock is None:
                return job  # its supervisor holds the lock: the record is current
            job = read_job(folder)  # re-read under the lock: it may have finished meanwhile
            if not job.active:
                return job
            if job.pid and processes.process_start_time(job.pid) == job.pid_start:
                # The supervisor died and left its training running: end it (kernel also sent SIGTERM).
                processes.end_process_group(job.pid, 0, lambda: False)
            job.ended = now()
            if (folder / CANCEL_FILE).exists():
                job.state, job.reason = CANCELLED, "cancelled by the user"
            else:
                job.state, job.reason = FAILED, (
                    f"the job's supervisor process ended while the job was {job.state} (the server restarted or"
                    " the process was killed); the partial model was not registered")
            write_status(job)
            return job

    # ---- acting

    def submit(self, request: TrainingRequest, owner: str | None = None) -> Job:
        """Queue a training job for ``owner`` (the signed-in user) and start its supervisor; returns at once."""
        request = check_request(request)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        job_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        folder = self.jobs_dir / job_id
        folder.mkdir()
        gpus = processes.gpu_count()
        slots = self.slots or max(1, gpus)
        job = Job(job_id, folder, QUEUED, datetime.now().astimezone().isoformat(timespec="microseconds"), request, [], owner=owner)
        job.command = self.command(request, job.output)
        write_atomically(folder / CONFIG_FILE, json.dumps(
            {"request": asdict(request), "command": job.command, "slots": slots, "pin_gpu": gpus > 0 and request.device != "cpu"}, indent=2).encode())
        with open(folder / LOCK_FILE, "a", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            write_status(job)
            with open(folder / SUPERVISOR_LOG, "ab") as log:
                supervisor = subprocess.Popen(
                    [sys.executable, "-m", "core.jobs", str(folder), "--lock-fd", str(lock.fileno())],
                    cwd=config.ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, pass_fds=[lock.fileno()])
        job.supervisor_pid = supervisor.pid  # recorded by the supervisor itself: only it writes from now on
        return job

    def cancel(self, job_id: str, wait_s: float = CANCEL_GRACE_S + 5, by: str | None = None, admin: bool = False) -> Job:
        """Ask a queued or running job to stop; wait up to ``wait_s`` for it to be recorded as ended.

        ``by``: the user asking, who must own the job unless ``admin``; ``None`` is the server itself (tests, clean-up).
        """
        job = self.job(job_id)
        if by is not None and not job.may_cancel(by, admin):
            raise LiverSegError(f"training job {job.name!r} was started by {job.owner or 'someone else'}: only they or an "
                                "administrator can cancel it")
        if not job.active:
            return job
        write_atomically(job.folder / CANCEL_FILE, b"")
        deadline = time.monotonic() + wait_s
        while job.active and time.monotonic() < deadline:
            time.sleep(0.1)
            job = self.job(job_id)
        return job
