"""Soak test: browser sessions upload, segment and leave, over and over, on one server (issue 22).

    .venv/bin/python benchmarks/soak.py [--sessions 4] [--minutes 10] [--session-ttl 120] [--stand-in]

Loopback only (the app listens on 127.0.0.1), bounded (at most 16 sessions and 60 minutes) and it
stops by itself. First the command line segments each scan once: those label maps are the
expected results. Then one session per scan warms the server up (models loaded) and its memory
is taken as the start. Then ``--sessions`` headless Chromium sessions each repeat, until
``--minutes`` have passed: open the Segment page, upload a scan (or press "Try the sample scan"),
segment it, download the label map, close the tab. Finally it waits the session timeout
(``--session-ttl``, Streamlit's ``server.disconnectedSessionTTL``) plus the app's sweep, and
reports: sessions served, failures (an error, or a label map not identical to the CLI's), the
server's resident memory (``VmRSS`` of its process tree) at the start, its peak and at the end,
and the upload folders left over.

Targets: no failure, every result identical to the CLI's, memory at the end within 300 MB of
the start, no folder left. Results also go to ``benchmarks/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.load_test import Case, MemoryWatch, default_cases, make_stand_in, save_results, session  # noqa: E402
from core import config  # noqa: E402
from tests.e2e.app_server import CHROMIUM, CHROMIUM_FLAGS, App  # noqa: E402

MAX_SESSIONS, MAX_MINUTES = 16, 60
#: How often the app looks for closed sessions during the soak (s); the app's default is 30.
SWEEP_S = 10


def cli_labels(case: Case, work: Path, env: dict[str, str]) -> np.ndarray:
    """The label map ``python -m core segment`` writes for the case: what every session must get."""
    out = work / f"{case.name}-cli.nii.gz"
    source = case.path or config.SAMPLE_SCAN
    subprocess.run([sys.executable, "-m", "core", "segment", str(source), "-o", str(out)], cwd=config.ROOT, check=True,
                   env={**os.environ, **env}, capture_output=True)
    return np.asarray(nib.load(out).dataobj)


async def soak(url: str, cases: list[Case], expected: dict[str, np.ndarray], sessions: int, minutes: float,
               downloads: Path, watch: MemoryWatch) -> dict:
    from playwright.async_api import async_playwright

    served, failures = 0, []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        for case in cases:  # warm-up: the models are loaded once per server, not a leak
            await session(browser, url, case, "warm-up", downloads)
        start_mb = watch.rss_kb() / 1024
        deadline = time.monotonic() + minutes * 60

        async def user(number: int) -> None:
            nonlocal served
            turn = number
            while time.monotonic() < deadline:
                case = cases[turn % len(cases)]
                turn += 1
                try:
                    run = await session(browser, url, case, f"s{number}-{turn}", downloads)
                    labels = np.asarray(nib.load(run.labels).dataobj)
                    Path(run.labels).unlink()
                    if labels.shape != expected[case.name].shape or not np.array_equal(labels, expected[case.name]):
                        failures.append(f"{case.name}: label map differs from the CLI's")
                except Exception as error:  # a timeout or a page error: counted, and the user goes on
                    failures.append(f"{case.name}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
                served += 1

        with watch:
            await asyncio.gather(*(user(number) for number in range(sessions)))
        await browser.close()
    return {"served": served, "failures": failures, "start_mb": start_mb}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help=f"concurrent browser sessions (default 4, at most {MAX_SESSIONS})")
    parser.add_argument("--minutes", type=float, default=10.0, help=f"how long the sessions repeat (default 10, at most {MAX_MINUTES})")
    parser.add_argument("--session-ttl", type=int, default=120, help="Streamlit's disconnectedSessionTTL for the run (s; default 120)")
    parser.add_argument("--scans", type=Path, nargs="*", help="scans to use; default: the sample and ../shared/data")
    parser.add_argument("--stand-in", action="store_true", help="serve an untrained UNet instead of the default model")
    args = parser.parse_args()
    if not 1 <= args.sessions <= MAX_SESSIONS or not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"choose 1-{MAX_SESSIONS} sessions and up to {MAX_MINUTES} minutes")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops its server

    with tempfile.TemporaryDirectory(prefix="liverseg-soak-") as work:
        work = Path(work)
        uploads = work / "uploads"
        env = {"LIVERSEG_UPLOAD_DIR": str(uploads)}
        if args.stand_in:
            make_stand_in(work / "trained")
            env["LIVERSEG_TRAINED_DIR"] = str(work / "trained")
        cases = [Case(path.name, path.resolve(), None) for path in args.scans] if args.scans else default_cases(work)
        print(f"expected results from the CLI for {len(cases)} scans ...", flush=True)
        expected = {case.name: cli_labels(case, work, env) for case in cases}
        (work / "downloads").mkdir()
        app = App(env={**env, "STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL": str(args.session_ttl), "LIVERSEG_SESSION_SWEEP_S": str(SWEEP_S)})
        try:
            watch = MemoryWatch(app.process.pid)
            idle_mb = watch.rss_kb() / 1024
            report = asyncio.run(soak(app.url, cases, expected, args.sessions, args.minutes, work / "downloads", watch))
            settle = args.session_ttl + SWEEP_S + 10
            print(f"sessions done; waiting {settle} s (session timeout + sweep) for the server to release them ...", flush=True)
            time.sleep(settle)
            end_mb = watch.rss_kb() / 1024
            leftover = sorted(entry.name for entry in uploads.iterdir()) if uploads.is_dir() else []
        finally:
            app.stop()
    report.update(sessions=args.sessions, minutes=args.minutes, session_ttl_s=args.session_ttl, idle_mb=round(idle_mb),
                  start_mb=round(report["start_mb"]), peak_mb=round(watch.peak_rss_kb / 1024), end_mb=round(end_mb),
                  leftover_upload_folders=leftover, scans=[case.name for case in cases])
    ok = not report["failures"] and report["end_mb"] - report["start_mb"] <= 300 and not leftover
    print(f"{report['served']} sessions served by {args.sessions} concurrent users in {args.minutes:g} min; "
          f"{len(report['failures'])} failures{': ' + '; '.join(report['failures'][:5]) if report['failures'] else ''}")
    print(f"server memory: idle {report['idle_mb']} MB, start (after warm-up) {report['start_mb']} MB, "
          f"peak {report['peak_mb']} MB, end {report['end_mb']} MB ({report['end_mb'] - report['start_mb']:+d} MB)")
    print(f"upload folders left over: {len(leftover)}")
    print("targets met" if ok else "TARGETS MISSED")
    save_results("soak", report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
