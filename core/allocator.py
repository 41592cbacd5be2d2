"""How the C library's allocator treats a segmentation's large arrays: kept for reuse, then given back.

glibc gives every allocation over 32 MB its own mapping and unmaps it when it is freed, so the
next array of that size is faulted in and zeroed again, page by page. A segmentation allocates
and frees feature maps and resampled volumes of hundreds of megabytes over and over: on IRCAD 1.1
that churn was 9 of its 48 CPU seconds (2.8 million page faults). With one heap that keeps what
is freed (no separate mappings, no automatic trimming, one arena for every thread, since a
thread's own arena maps large blocks whatever the settings), the same run faults 0.3 million
pages and takes a fifth less time, for a peak 0.25 GB higher. ``release`` hands the kept memory
back once a segmentation is done, so a long-running server does not hold its peak.

The arena setting only holds for threads that have not allocated yet, so a server gets the
settings from its environment at start (``environment``, as ``python -m core serve`` and the job
workers it starts get them); the command line, whose arrays all come from its first thread, sets
them on itself at start (``configure``). Elsewhere than glibc (macOS, musl) both do nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

#: The settings as glibc reads them from the environment at process start (tunables, glibc 2.26+).
TUNABLES = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"
#: mallopt's names for the same settings (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    libc = ctypes.CDLL(None)  # the symbols the process has loaded, the C library's among them
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def environment(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a process this project starts, with the settings unless it names its own."""
    return env if "GLIBC_TUNABLES" in env else {**env, "GLIBC_TUNABLES": TUNABLES}


def configure() -> None:
    """The settings for this process from now on, where the C library is glibc."""
    libc = _glibc()
    if libc is not None and "GLIBC_TUNABLES" not in os.environ:
        for parameter, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1)):
            libc.mallopt(parameter, value)


def release() -> None:
    """Give the memory the allocator keeps back to the system (after a segmentation)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
