"""Decompression bomb: how fast, and at what memory cost, the CLI and the app refuse it (issue 22, finding 2).

    .venv/bin/python benchmarks/bomb.py [--runs 3] [--no-app]

The bomb is the issue's: about 1 MB of ``.nii.gz`` declaring 1024x1024x512 voxels (2 GB once
read as float32). Reported, median of ``--runs``:

- CLI: ``python -m core segment bomb.nii.gz -o out.nii.gz`` from process start to exit (exit code
  and the one stderr line checked), and the process's peak resident memory (``wait4``'s ru_maxrss);
- app: from handing the file to the Segment page's uploader to the error box, in headless Chromium
  against the app on loopback, and the server's peak resident memory meanwhile (``VmHWM``, reset
  through ``/proc/PID/clear_refs`` before each upload) with its rise over the memory before it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import config  # noqa: E402
from tests.e2e.app_server import CHROMIUM, CHROMIUM_FLAGS, App  # noqa: E402
from tests.helpers.bombs import nifti_bomb  # noqa: E402


def cli_run(bomb: Path, work: Path) -> tuple[float, float]:
    """Seconds and peak MB of one CLI refusal."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "core", "segment", str(bomb), "-o", str(work / "out.nii.gz")],
                               cwd=config.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    error = process.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 2 or error.count("\n") != 1 or "declares" not in error:
        raise SystemExit(f"unexpected CLI outcome: exit {os.waitstatus_to_exitcode(status)}, stderr {error!r}")
    return seconds, usage.ru_maxrss / 1024


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def app_runs(bomb: Path, runs: int) -> list[tuple[float, float, float]]:
    """(seconds, peak MB, rise MB) of each refusal by the app."""
    from playwright.sync_api import sync_playwright

    app = App()
    results = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            for _ in range(runs):
                page = browser.new_page()
                page.set_default_timeout(300_000)
                page.goto(app.url)
                page.get_by_role("heading", name="Segment").wait_for()
                Path(f"/proc/{app.process.pid}/clear_refs").write_text("5", encoding="utf-8")  # resets VmHWM
                before = status_kb(app.process.pid, "VmRSS")
                started = time.perf_counter()
                uploader = page.get_by_test_id("stFileUploader").filter(has_text="Or upload a CT scan")
                uploader.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(bomb)
                page.get_by_test_id("stAlertContentError").filter(has_text="declares").wait_for()
                seconds = time.perf_counter() - started
                peak = status_kb(app.process.pid, "VmHWM")
                results.append((seconds, peak / 1024, (peak - before) / 1024))
                page.close()
            browser.close()
    finally:
        app.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="refusals to time (default 3; the median is reported)")
    parser.add_argument("--no-app", action="store_true", help="time the CLI only (no browser needed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="liverseg-bomb-") as work:
        work = Path(work)
        bomb = nifti_bomb(work / "bomb.nii.gz")
        print(f"bomb: {bomb.stat().st_size / 2**20:.2f} MB declaring 1024x1024x512 int16; volume limit "
              f"{config.MAX_VOLUME_BYTES / 2**30:.2f} GB")
        cli = [cli_run(bomb, work) for _ in range(args.runs)]
        print(f"CLI: median {statistics.median(s for s, _ in cli):.2f} s, peak {statistics.median(m for _, m in cli):.0f} MB "
              f"(runs: {', '.join(f'{s:.2f} s/{m:.0f} MB' for s, m in cli)})")
        if not args.no_app:
            app = app_runs(bomb, args.runs)
            print(f"app: median {statistics.median(s for s, _, _ in app):.2f} s from upload to the error, server peak "
                  f"{statistics.median(p for _, p, _ in app):.0f} MB, rise {statistics.median(r for _, _, r in app):.0f} MB "
                  f"(runs: {', '.join(f'{s:.2f} s/{p:.0f} MB/+{r:.0f} MB' for s, p, r in app)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
