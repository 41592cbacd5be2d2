"""core.allocator: large arrays reused instead of faulted in again, handed back after a segmentation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core import allocator, cli, config

glibc = pytest.mark.skipif(allocator._glibc() is None, reason="the settings are glibc's; this C library is not glibc")

#: Allocate and free a 256 MB array ten times; the page faults of the loop, the resident memory after it and
#: after ``release``. A fresh process: the settings are process-wide.
_CHURN = """
import json, resource, sys
import numpy as np
from core import allocator
if sys.argv[1] == "configured":
    allocator.configure()
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    array = np.ones(2**25)
    del array
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
kept = rss()
allocator.release()
print(json.dumps({"faults": faults, "kept": kept, "released": rss()}))
"""


def _churn(mode: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], cwd=config.ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@glibc
def test_configured_large_arrays_are_reused_and_released_after():
    plain, configured = _churn("plain"), _churn("configured")
    assert configured["faults"] < plain["faults"] / 4  # the first array's pages, not ten arrays' pages
    assert configured["kept"] - configured["released"] > 200 * 2**20  # the freed 256 MB stayed until release


def test_the_environment_carries_the_settings_unless_it_has_its_own():
    assert allocator.environment({"PATH": "/bin"}) == {"PATH": "/bin", "GLIBC_TUNABLES": allocator.TUNABLES}
    assert allocator.environment({"GLIBC_TUNABLES": "glibc.malloc.check=3"}) == {"GLIBC_TUNABLES": "glibc.malloc.check=3"}


def test_serve_runs_streamlit_on_the_app_with_the_settings(monkeypatch):
    started = {}
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setattr("os.execve", lambda path, command, env: started.update(path=path, command=command, env=env))
    assert cli.main(["serve", "--address", "0.0.0.0", "--port", "8600"]) == 0
    assert started["command"][1:] == ["-m", "streamlit", "run", str(config.ROOT / "app.py"),
                                      "--server.address", "0.0.0.0", "--server.port", "8600"]
    assert started["path"] == sys.executable and started["env"]["GLIBC_TUNABLES"] == allocator.TUNABLES
