"""Load test: several browser sessions segment different scans at the same time on one server.

    .venv/bin/python benchmarks/load_test.py [--sessions 4] [--stand-in] [--scans PATH ...]

Starts the app on a free localhost port and drives headless Chromium sessions
through the Segment page as a user would: open the page, upload the scan (or press
"Try the sample scan"), press "Find the liver and lesions", wait for the result,
download the label map. First each scan alone (the baseline), then all sessions at
once. Reported:

- seconds per session from the click to the result, alone and concurrent, and the ratio;
- the server's peak memory: ``VmHWM`` (the kernel's high-water mark of resident memory)
  of the Streamlit process and its children, and the peak of their summed ``VmRSS``
  sampled every 0.2 s during the concurrent phase;
- correctness: each concurrent label map must equal, voxel for voxel, the one the
  same scan gave alone (no session got another's result), have the scan's shape, and,
  where the scan has a reference, its liver and lesion Dice are shown.

``--stand-in`` serves an untrained UNet with the default card (for machines without a
trained model: it measures the serving, not the accuracy). Results also go to
``benchmarks/results/load_test.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import config  # noqa: E402
from core.segmentation import BACKGROUND, LESION  # noqa: E402
from tests.e2e.app_server import CHROMIUM, CHROMIUM_FLAGS, App  # noqa: E402

SAMPLE = "sample"  # chosen with the page's "Try the sample scan" button instead of an upload
TIMEOUT_MS = 60 * 60 * 1000


@dataclass(frozen=True)
class Case:
    name: str
    path: Path | None  # None: the built-in sample
    reference: Path | None


@dataclass
class Run:
    case: str
    mode: str  # "alone" or "concurrent"
    load_s: float  # upload (or sample button) to the scan shown
    segment_s: float  # "Find the liver and lesions" to the result shown
    labels: str  # downloaded label map


def default_cases(work: Path) -> list[Case]:
    """The sample, then the real scans in ../shared/data, then phantoms for whatever is missing."""
    cases = [Case(SAMPLE, None, config.SAMPLE_LABELS)]
    shared = config.SHARED_DATA_DIR
    for name, path, reference in [
        ("totalseg-ct", shared / "totalseg-example" / "ct.nii.gz", shared / "totalseg-example" / "liver.nii.gz"),
        ("ircad-dicom-zip", shared / "ircad-1.1" / "ct_dicom.zip", None),
    ]:
        if path.exists():
            cases.append(Case(name, path, reference))
    seed = 0
    while len(cases) < 4:
        from tests.helpers.phantom import make_phantom

        scan, labels = make_phantom((128, 112, 80), (3.0, 3.0, 3.0), seed=seed)
        path, reference = work / f"phantom{seed}.nii.gz", work / f"phantom{seed}_labels.nii.gz"
        nib.save(nib.Nifti1Image(scan.voxels, scan.affine), path)
        nib.save(nib.Nifti1Image(labels, scan.affine), reference)
        cases.append(Case(f"phantom{seed}", path, reference))
        seed += 1
    return cases


def make_stand_in(folder: Path) -> None:
    import torch

    from core.model import registry
    from core.model.card import ModelCard
    from core.model.unet import UNet

    torch.manual_seed(0)
    card = ModelCard(name="stand-in", created="2000-01-01T00:00:00", training={"note": "untrained: load test only"})
    network = UNet(card.channels)
    with torch.no_grad():  # no lesions: random weights would paint thousands of them and time their analysis instead
        network.head.bias.copy_(torch.tensor([0.0, 0.0, -1e3]))
    registry.save_model(network, card, folder / "stand-in")


class MemoryWatch:
    """Samples the summed VmRSS of a process and its descendants; reads their VmHWM."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def tree(self) -> list[int]:
        pids, frontier = [], [self.pid]
        while frontier:
            pid = frontier.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    frontier += [int(child) for child in (task / "children").read_text(encoding="utf-8").split()]
                except OSError:
                    pass
        return pids

    @staticmethod
    def field_kb(pid: int, name: str) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
                if line.startswith(name + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def rss_kb(self) -> int:
        return sum(self.field_kb(pid, "VmRSS") for pid in self.tree())

    def hwm_kb(self) -> int:
        return sum(self.field_kb(pid, "VmHWM") for pid in self.tree())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss_kb = max(self.peak_rss_kb, self.rss_kb())
            self._stop.wait(0.2)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


async def session(browser, url: str, case: Case, mode: str, downloads: Path) -> Run:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        await page.goto(url)
        await page.get_by_role("heading", name="Segment").wait_for()
        start = time.monotonic()
        if case.path is None:
            await page.get_by_role("button", name="Try the sample scan").click()
        else:
            uploader = page.get_by_test_id("stFileUploader").filter(has_text="Or upload a CT scan")
            await uploader.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(case.path)
        find = page.get_by_role("button", name="Find the liver and lesions")
        await find.wait_for()
        loaded = time.monotonic()
        await find.click()
        await page.get_by_text("Done in").wait_for(state="attached")  # folded into the Details expander
        done = time.monotonic()
        await page.get_by_role("tab", name="Downloads").click()
        async with page.expect_download() as download:
            await page.get_by_role("button", name="Label map (NIfTI)").click()
        target = downloads / f"{case.name}-{mode}.nii.gz"
        await (await download.value).save_as(target)
        return Run(case.name, mode, round(loaded - start, 2), round(done - loaded, 2), str(target))
    finally:
        await context.close()


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else round(2 * int((a & b).sum()) / total, 3)


def check(case: Case, alone: Run, concurrent: Run) -> dict:
    first, second = np.asarray(nib.load(alone.labels).dataobj), np.asarray(nib.load(concurrent.labels).dataobj)
    verdict = {"same_as_alone": bool(first.shape == second.shape and np.array_equal(first, second)), "shape": list(second.shape)}
    if case.path is not None and case.path.name.endswith((".nii", ".nii.gz")):
        verdict["shape_matches_scan"] = tuple(nib.load(case.path).shape[:3]) == second.shape
    if case.reference is not None and case.reference.exists():
        reference = np.asarray(nib.load(case.reference).dataobj)
        if reference.shape == second.shape:
            verdict["liver_dice"] = dice(second > BACKGROUND, reference > BACKGROUND)  # liver including its lesions
            verdict["lesion_dice"] = dice(second == LESION, reference == LESION) if (reference == LESION).any() else None
    return verdict


async def measure(url: str, cases: list[Case], sessions: int, downloads: Path, watch: MemoryWatch) -> dict:
    from playwright.async_api import async_playwright

    chosen = [cases[i % len(cases)] for i in range(sessions)]
    unique = list({case.name: case for case in chosen}.values())
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        alone = {}
        for case in unique:
            alone[case.name] = await session(browser, url, case, "alone", downloads)
            print(f"alone      {case.name:16s} load {alone[case.name].load_s:6.1f} s  segment {alone[case.name].segment_s:6.1f} s", flush=True)
        rss_before = watch.rss_kb()
        with watch:
            started = time.monotonic()
            together = await asyncio.gather(*(session(browser, url, case, f"concurrent{i}", downloads) for i, case in enumerate(chosen)))
            wall = time.monotonic() - started
        await browser.close()
    rows = []
    for case, run in zip(chosen, together):
        base = alone[case.name]
        verdict = check(case, base, run)
        rows.append({"case": case.name, "alone_s": base.segment_s, "concurrent_s": run.segment_s,
                     "ratio": round(run.segment_s / base.segment_s, 2), "load_alone_s": base.load_s, "load_concurrent_s": run.load_s, **verdict})
        print(f"concurrent {case.name:16s} load {run.load_s:6.1f} s  segment {run.segment_s:6.1f} s  "
              f"x{rows[-1]['ratio']:.2f}  {json.dumps(verdict)}", flush=True)
    return {"rows": rows, "concurrent_wall_s": round(wall, 1), "sum_alone_s": round(sum(alone[c.name].segment_s for c in chosen), 1),
            "server_rss_before_concurrent_mb": round(rss_before / 1024), "server_peak_rss_concurrent_mb": round(watch.peak_rss_kb / 1024),
            "server_vmhwm_mb": round(watch.hwm_kb() / 1024)}


def save_results(name: str, report: dict) -> None:
    """Write ``report`` to ``benchmarks/results/NAME.json`` (git-ignored)."""
    results = config.ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help="concurrent browser sessions (default 4)")
    parser.add_argument("--scans", type=Path, nargs="*", help="scans to use (NIfTI or DICOM zip); default: the sample and ../shared/data")
    parser.add_argument("--stand-in", action="store_true",
                        help="serve an untrained UNet instead of the default model (no trained model needed; not for accuracy)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that a killed run still stops its server

    with tempfile.TemporaryDirectory(prefix="liverseg-load-") as work:
        work = Path(work)
        env = {"LIVERSEG_UPLOAD_DIR": str(work / "uploads")}
        if args.stand_in:
            make_stand_in(work / "trained")
            env["LIVERSEG_TRAINED_DIR"] = str(work / "trained")
        cases = [Case(path.name, path.resolve(), None) for path in args.scans] if args.scans else default_cases(work)
        (work / "downloads").mkdir()
        app = App(env=env)
        try:
            watch = MemoryWatch(app.process.pid)
            idle_mb = round(watch.rss_kb() / 1024)
            report = asyncio.run(measure(app.url, cases, args.sessions, work / "downloads", watch))
        finally:
            app.stop()
    report.update(sessions=args.sessions, server_idle_rss_mb=idle_mb, model="stand-in (untrained)" if args.stand_in else "the default model",
                  machine=f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs")
    ok = all(row["same_as_alone"] and row.get("shape_matches_scan", True) for row in report["rows"])
    ratios = [row["ratio"] for row in report["rows"]]
    print(f"\n{args.sessions} sessions at once: {report['concurrent_wall_s']} s wall "
          f"(the same scans one after another: {report['sum_alone_s']} s); per-session slow-down x{min(ratios):.2f}-x{max(ratios):.2f}")
    print(f"server memory: idle {idle_mb} MB, peak during the concurrent phase {report['server_peak_rss_concurrent_mb']} MB, "
          f"VmHWM {report['server_vmhwm_mb']} MB")
    print("every session got its own correct result" if ok else "SOME SESSION GOT A WRONG RESULT")
    save_results("load_test", report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
