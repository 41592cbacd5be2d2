"""Background training jobs: ``python -m core train`` in its own process, followed from any page load.

A job is a folder ``JOBS_DIR/<id>/``::

    config.json      what was asked (request, the exact command, slots), written once
    status.json      state, times, pids, reason, registered model name (atomic rewrites)
    lock             flock-ed by the job's supervisor for as long as the supervisor lives
    cancel           present once someone asked for the job to be cancelled
    log.txt          the training's stdout and stderr
    supervisor.log   the supervisor's own output (empty unless it crashed)
    out/NAME/        the training's output folder (``--out``): progress, checkpoints, model

Design: one small detached *supervisor* process per job
-------------------------------------------------------
``JobRunner.submit`` starts ``python -m core.jobs FOLDER`` in a new session, so that
closing the tab or restarting the app never touches it. The supervisor waits for
its turn in the queue, starts the training in a new process group, waits for it,
records the outcome and registers the finished model. This is preferred over an
app that starts the training itself and polls it, because only a parent learns
the exit code (after an app restart a poller could only guess success from files),
and because a queued job must start when the slot frees even when no browser is
open to poll.

Liveness is a lock, not a pid: the kernel releases a ``flock`` when its holder dies,
however it dies, so a queued or running job whose lock is free has lost its
supervisor (killed, or the machine restarted). Whoever notices (any runner's
listing, or another job's supervisor looking at the queue) takes the lock and marks
the job failed with that reason; pid reuse cannot fool this. The submitter takes the
lock before writing the first status and hands the locked descriptor to the
supervisor, so there is no moment at which a live job looks dead. The training's
pid and its start time (``/proc/<pid>/stat``) are recorded so that a training left
behind by a dead supervisor is ended without risk of hitting an unrelated process
that reused the pid; the training also gets SIGTERM from the kernel when its
supervisor dies (``PR_SET_PDEATHSIG``).

Only the lock holder writes ``status.json``, always atomically (``core.atomic``).

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

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import IO

from core import config
from core.atomic import write_atomically
from core.devices import DEVICES
from core.errors import LiverSegError
from core.model_card import CARD_FILE
from core.paths import inside_data_dirs
from core.training.options import RUNNER_OPTIONS, parse
from core.training.progress import read_progress

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)

#: How often a supervisor looks at its queue position, its training and the cancel file (s).
POLL_S = 0.5
#: Time a cancelled training gets to end after SIGTERM before SIGKILL (s).
CANCEL_GRACE_S = 10.0

CONFIG_FILE, STATUS_FILE, LOCK_FILE, CANCEL_FILE = "config.json", "status.json", "lock", "cancel"
LOG_FILE, SUPERVISOR_LOG = "log.txt", "supervisor.log"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class TrainingRequest:
    """What the user asked for.

    Attributes:
        name: the model name wanted (the registry makes it unique at registration).
        data: folders of labelled cases, each inside one of ``config.data_dirs()`` (``core.paths``).
        init: fine-tune from this model in ``trained/`` (``None``: from scratch).
        coarse: make a cascade whose first stage is this model in ``trained/`` (``None``: one stage).
        device: ``"auto"`` (a GPU when there is one), ``"cpu"`` or ``"cuda"``.
        options: further ``python -m core train`` options by name (``{"epochs": 20}``).
    """

    name: str
    data: list[str]
    init: str | None = None
    device: str = "auto"
    options: dict[str, object] = field(default_factory=dict)
    coarse: str | None = None


@dataclass
class Job:
    """A job's recorded state (``status.json``) and what it was asked (``config.json``).

    Times are ISO 8601 with the local offset. ``pid`` is the training process
    (leader of its process group) and ``pid_start`` its start time in clock ticks
    since boot, to recognise pid reuse.
    """

    id: str
    folder: Path
    state: str
    created: str
    request: TrainingRequest
    command: list[str]
    started: str | None = None
    ended: str | None = None
    slot: int | None = None
    supervisor_pid: int | None = None
    pid: int | None = None
    pid_start: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    model: str | None = None

    @property
    def name(self) -> str:
        return self.request.name

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def output(self) -> Path:
        """The training's ``--out`` folder."""
        return self.folder / "out" / self.request.name

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end (to now while running); ``None`` before it starts."""
        if not self.started:
            return None
        end = datetime.fromisoformat(self.ended) if self.ended else datetime.now().astimezone()
        return (end - datetime.fromisoformat(self.started)).total_seconds()

    def progress(self) -> list[dict]:
        """The training's progress records, oldest first (``core.training.progress``)."""
        return read_progress(self.output)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the training's output."""
        try:
            with open(self.folder / LOG_FILE, "rb") as stream:
                stream.seek(max(0, stream.seek(0, os.SEEK_END) - 64 * 1024))  # the tail only: logs can be long
                text = stream.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


# --------------------------------------------------------------------- requests


def training_command(request: TrainingRequest, output: Path) -> list[str]:
    """The exact ``python -m core train`` command line for ``request``, checked by the CLI's own parser."""
    arguments = ["train"]
    for folder in request.data:
        arguments += ["--data", str(folder)]
    arguments += ["--out", str(output)]
    if request.init:
        arguments += ["--init", request.init]
    if request.coarse:
        arguments += ["--coarse", request.coarse]
    arguments += {"cpu": ["--accelerator", "cpu"], "cuda": ["--accelerator", "gpu", "--devices", "1"]}.get(request.device, [])
    for key, value in request.options.items():
        if key in RUNNER_OPTIONS:
            raise LiverSegError(f"training option {key!r} is set by the job runner; use the request's own field")
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            arguments += [flag] if value else []
        elif isinstance(value, (list, tuple)):
            arguments += [flag, *map(str, value)]
        else:
            arguments += [flag, str(value)]
    options = parse(arguments[1:])  # the CLI's own definitions: a bad value fails here, not in the job
    return [sys.executable, "-m", "core", "train", *options.arguments()]


def check_request(request: TrainingRequest) -> TrainingRequest:
    """``request`` with its data folders resolved and its name, model and device checked."""
    if not NAME_PATTERN.fullmatch(request.name):
        raise LiverSegError(f"model name {request.name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if not request.data:
        raise LiverSegError("choose at least one folder of training data")
    if request.device not in DEVICES:
        raise LiverSegError(f"device {request.device!r}: choose one of {', '.join(DEVICES)}")
    from core.registry import model_dir

    for model in (request.init, request.coarse):
        if model:
            model_dir(model)  # raises a clear LiverSegError for an unknown model (and refuses paths)
    data = [inside_data_dirs(folder) for folder in request.data]
    for folder in data:
        if not folder.is_dir():
            raise LiverSegError(f"training data {folder} is a file; choose the folder that holds the cases")
    data = [str(folder) for folder in data]
    return TrainingRequest(request.name, data, request.init, request.device, dict(request.options), request.coarse)


# --------------------------------------------------------------------- processes


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or ``None`` when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name before ")" may hold spaces


def end_process_group(pgid: int, grace_s: float, exited: Callable[[], bool]) -> None:
    """SIGTERM the process group, then SIGKILL it if ``exited()`` is still false after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while not exited() and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(pgid, signal.SIGKILL)  # also ends helpers (data loader workers) the leader left behind


@contextlib.contextmanager
def _flock(path: Path, blocking: bool = True) -> Iterator[IO | None]:
    """Hold an exclusive flock on ``path`` for the block; yields ``None`` if not blocking and taken."""
    with open(path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        yield handle


def _die_with_parent() -> None:
    """In the training child: get SIGTERM if the supervisor dies (Linux ``prctl(PR_SET_PDEATHSIG)``)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


# --------------------------------------------------------------------- runner


def gpu_count() -> int:
    """CUDA GPUs visible to this process: one job slot each (one slot when there are none)."""
    import torch

    return torch.cuda.device_count()


class JobRunner:
    """Submit, list, follow and cancel training jobs under ``jobs_dir``.

    Stateless apart from its paths: any number of runners (page runs, app restarts,
    supervisors) over the same folder see the same truth.

    Args:
        jobs_dir: folder of job folders (default ``config.JOBS_DIR``).
        slots: jobs that may run at once (default: one per CUDA GPU, else one).
        command: builds the command a job runs from the checked request and its output
            folder (default ``training_command``); tests pass a short stand-in.
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

    @staticmethod
    def _read(folder: Path) -> Job:
        status = json.loads((folder / STATUS_FILE).read_text(encoding="utf-8"))
        setup = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        return Job(folder=folder, request=TrainingRequest(**setup["request"]), command=setup["command"], **status)

    @staticmethod
    def _write(job: Job) -> None:
        status = {f.name: getattr(job, f.name) for f in fields(job) if f.name not in ("folder", "request", "command")}
        write_atomically(job.folder / STATUS_FILE, json.dumps(status, indent=2).encode())

    def _refresh(self, folder: Path) -> Job:
        """The job as recorded, after recognising a dead supervisor (free lock) and recording why."""
        job = self._read(folder)
        if not job.active:
            return job
        with _flock(folder / LOCK_FILE, blocking=False) as lock:
            if lock is None:
                return job  # its supervisor holds the lock: the record is current
            job = self._read(folder)  # re-read under the lock: it may have finished meanwhile
            if not job.active:
                return job
            if job.pid and process_start_time(job.pid) == job.pid_start:
                # The supervisor died and left its training running: end it (kernel also sent SIGTERM).
                end_process_group(job.pid, 0, lambda: False)
            job.ended = now()
            if (folder / CANCEL_FILE).exists():
                job.state, job.reason = CANCELLED, "cancelled by the user"
            else:
                job.state, job.reason = FAILED, (
                    f"the job's supervisor process ended while the job was {job.state} (the server restarted or"
                    " the process was killed); the partial model was not registered")
            self._write(job)
            return job

    # ---- acting

    def submit(self, request: TrainingRequest) -> Job:
        """Queue a training job and start its supervisor; returns at once."""
        request = check_request(request)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        job_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        folder = self.jobs_dir / job_id
        folder.mkdir()
        gpus = gpu_count()
        slots = self.slots or max(1, gpus)
        job = Job(job_id, folder, QUEUED, datetime.now().astimezone().isoformat(timespec="microseconds"), request, [])
        job.command = self.command(request, job.output)
        write_atomically(folder / CONFIG_FILE, json.dumps(
            {"request": asdict(request), "command": job.command, "slots": slots, "pin_gpu": gpus > 0 and request.device != "cpu"}, indent=2).encode())
        with open(folder / LOCK_FILE, "a", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._write(job)
            with open(folder / SUPERVISOR_LOG, "ab") as log:
                supervisor = subprocess.Popen(
                    [sys.executable, "-m", "core.jobs", str(folder), "--lock-fd", str(lock.fileno())],
                    cwd=config.ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, pass_fds=[lock.fileno()])
        job.supervisor_pid = supervisor.pid  # recorded by the supervisor itself: only it writes from now on
        return job

    def cancel(self, job_id: str, wait_s: float = CANCEL_GRACE_S + 5) -> Job:
        """Ask a queued or running job to stop; wait up to ``wait_s`` for it to be recorded as ended."""
        job = self.job(job_id)
        if not job.active:
            return job
        write_atomically(job.folder / CANCEL_FILE, b"")
        deadline = time.monotonic() + wait_s
        while job.active and time.monotonic() < deadline:
            time.sleep(0.1)
            job = self.job(job_id)
        return job

    # ---- the supervisor's side

    def _queue_turn(self, job: Job, slots: int) -> IO | None:
        """Wait until ``job`` is the oldest queued job and a slot is free; the held slot lock, or ``None`` if cancelled."""
        slots_dir = self.jobs_dir / ".slots"
        slots_dir.mkdir(exist_ok=True)
        while not (job.folder / CANCEL_FILE).exists():
            with _flock(self.jobs_dir / ".queue.lock"):
                queued = [other for other in reversed(self.jobs()) if other.state == QUEUED]
                if queued and queued[0].id == job.id:
                    for slot in range(slots):
                        handle = open(slots_dir / f"{slot}.lock", "a", encoding="utf-8")
                        try:
                            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        except BlockingIOError:
                            handle.close()
                            continue
                        job.state, job.slot, job.started = RUNNING, slot, now()
                        self._write(job)  # running before the queue lock is released: the next in line waits
                        return handle
            time.sleep(POLL_S)
        return None

    def supervise(self, folder: Path) -> None:
        """Run one job to its end. Called in the supervisor process, which holds the job's lock."""
        job = self._read(folder)
        setup = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        job.supervisor_pid = os.getpid()
        self._write(job)
        slot_lock = self._queue_turn(job, setup["slots"])
        if slot_lock is None:
            job.state, job.ended, job.reason = CANCELLED, now(), "cancelled by the user before it started"
            self._write(job)
            return
        with slot_lock:
            environment = dict(os.environ)
            if setup["pin_gpu"]:
                environment["CUDA_VISIBLE_DEVICES"] = str(job.slot)
            with open(folder / LOG_FILE, "ab") as log:
                training = subprocess.Popen(job.command, cwd=config.ROOT, env=environment, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=_die_with_parent)
            job.pid, job.pid_start = training.pid, process_start_time(training.pid)
            self._write(job)
            cancelled = False
            while training.poll() is None:
                if (folder / CANCEL_FILE).exists():
                    end_process_group(training.pid, CANCEL_GRACE_S, lambda: training.poll() is not None)
                    cancelled = True
                time.sleep(POLL_S)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(training.pid, signal.SIGKILL)  # helpers the training left behind hold memory or a GPU
            job.exit_code, job.ended = training.returncode, now()
            job.state, job.reason = CANCELLED, "cancelled by the user"
            if not cancelled:
                job.state, job.reason = self._outcome(job)
            self._write(job)

    def _outcome(self, job: Job) -> tuple[str, str | None]:
        """State and reason of a training that exited on its own; registers the model on success."""
        code = job.exit_code
        if code == 0 and not (job.output / CARD_FILE).is_file():
            # A training stopped by SIGTERM from outside (Lightning ends it cleanly) exits 0 without a model.
            return FAILED, f"the training stopped without writing a model (was it interrupted?): {last_error(job.log_tail(200))}"
        if code == 0:
            from core.registry import register_model

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


def last_error(log: str) -> str:
    """The line of a training log that says what went wrong (the CLI's ``error:`` line or a traceback's last line)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1] if lines else "no output; see the job's log"


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
        runner.supervise(folder)
    except BaseException as error:
        job = runner._read(folder)
        if job.active:
            job.state, job.ended, job.reason = FAILED, now(), f"the job's supervisor failed: {error!r}"
            runner._write(job)
        raise


if __name__ == "__main__":
    main()
