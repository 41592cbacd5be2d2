"""``fetch_wheel``: a wheel from the package index, downloaded once at set-up and kept in the cache.

Only the wheel itself is downloaded (``pip download --no-deps``): the project reads data
files out of it (the sample scan, the pretrained weights) and never installs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.errors import LiverSegError


def fetch_wheel(requirement: str, wheel_name: str, folder: Path, what: str, ignore_requires_python: bool = False) -> Path:
    """``folder/wheel_name``, downloaded for ``requirement`` if it is not there yet.

    Args:
        what: what the wheel is for, in words, for the error message.
        ignore_requires_python: for a wheel that declares an older Python, which matters only
            when installing it, never for reading its files.
    """
    wheel = folder / wheel_name
    if wheel.exists():
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(folder), requirement]
    if ignore_requires_python:
        command.insert(-1, "--ignore-requires-python")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not wheel.exists():
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no wheel"
        raise LiverSegError(f"could not download {what} ({requirement}) from the package index: {reason}; "
                            "check the network or pip's index settings")
    return wheel
