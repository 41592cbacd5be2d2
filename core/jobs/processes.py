"""The operating system's side of a job: process start times, process groups, file locks, GPUs.

Liveness is a lock, not a pid: the kernel releases a ``flock`` when its holder dies,
however it dies. A training's pid is recorded with its start time (``/proc/<pid>/stat``)
so that a pid reused by an unrelated process is never mistaken for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


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
def flock(path: Path, blocking: bool = True) -> Iterator[IO | None]:
    """Hold an exclusive flock on ``path`` for the block; yields ``None`` if not blocking and taken."""
    with open(path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        yield handle


def die_with_parent() -> None:
    """In the training child: get SIGTERM if the supervisor dies (Linux ``prctl(PR_SET_PDEATHSIG)``)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def gpu_count() -> int:
    """CUDA GPUs visible to this process: one job slot each (one slot when there are none)."""
    import torch

    return torch.cuda.device_count()
