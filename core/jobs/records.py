"""What a job is on disk: its request, its state, and the files of its folder.

A job is a folder ``JOBS_DIR/<id>/``::

    config.json      what was asked (request, the exact command, slots), written once
    status.json      state, times, pids, reason, registered model name (atomic rewrites)
    lock             flock-ed by the job's supervisor for as long as the supervisor lives
    cancel           present once someone asked for the job to be cancelled
    log.txt          the training's stdout and stderr
    supervisor.log   the supervisor's own output (empty unless it crashed)
    out/NAME/        the training's output folder (``--out``): progress, checkpoints, model

Only the lock holder writes ``status.json``, always atomically (``core.atomic``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

from core.atomic import write_atomically
from core.training.progress import read_progress

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)

CONFIG_FILE, STATUS_FILE, LOCK_FILE, CANCEL_FILE = "config.json", "status.json", "lock", "cancel"
LOG_FILE, SUPERVISOR_LOG = "log.txt", "supervisor.log"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class TrainingRequest:
    """What the user asked for, as sent (``core.jobs.requests.check_request`` checks every value).

    Attributes:
        name: the model name wanted (the registry makes it unique at registration).
        data: folders of labelled cases, each inside one of ``config.data_dirs()`` (``core.server.paths``).
        init: fine-tune from this model in ``trained/`` (``None``: from scratch).
        first_stage: make a cascade whose first stage is this model in ``trained/`` (``None``: one stage).
        device: ``"auto"`` (a GPU when there is one), ``"cpu"`` or ``"cuda"`` (``core.devices``).
        options: further ``python -m core train`` options by name (``{"epochs": 20}``), as typed values.
    """

    name: str
    data: list[str]
    init: str | None = None
    device: str = "auto"
    options: dict[str, object] = field(default_factory=dict)
    first_stage: str | None = None

    def models(self) -> list[str]:
        """The models in ``trained/`` this request needs while it runs (to fine-tune from, or as a first stage)."""
        return [model for model in (self.init, self.first_stage) if model]


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
    owner: str | None = None

    @property
    def name(self) -> str:
        return self.request.name

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def may_cancel(self, user: str, admin: bool = False) -> bool:
        """Whether ``user`` may cancel this job: whoever started it, or an administrator (a job of unknown owner: only they)."""
        return admin or (self.owner is not None and self.owner == user)

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


def read_job(folder: Path) -> Job:
    """The job recorded in ``folder`` (its status and what it was asked)."""
    status = json.loads((folder / STATUS_FILE).read_text(encoding="utf-8"))
    setup = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    request = setup["request"]
    if "coarse" in request:  # a job recorded before the first stage had that one name keeps being listed
        request["first_stage"] = request.pop("coarse")
    return Job(folder=folder, request=TrainingRequest(**request), command=setup["command"], **status)


def write_status(job: Job) -> None:
    """Record ``job``'s state in its ``status.json``, atomically (only the holder of its lock calls this)."""
    status = {f.name: getattr(job, f.name) for f in fields(job) if f.name not in ("folder", "request", "command")}
    write_atomically(job.folder / STATUS_FILE, json.dumps(status, indent=2).encode())


def last_error(log: str) -> str:
    """The line of a training log that says what went wrong (the CLI's ``error:`` line or a traceback's last line)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1] if lines else "no output; see the job's log"
