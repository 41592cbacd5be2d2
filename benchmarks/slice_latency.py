"""Latency of the Segment page's viewer in headless Chromium: slices, display changes and the first picture.

Slices: key press or wheel turn -> new slice painted (issue 12: median at most 100 ms, 90th
percentile at most 150 ms). Display changes (issue 21: median at most 50 ms): a window
preset, a window right-drag, an opacity step, a layer toggle and a Ctrl+wheel zoom, each
timed from the input until the viewer has painted and the browser has shown the frame after
it; printed as ``display change median N ms p90 M ms``. First picture (issue 21: at most the
CLI's time plus 2 s): from the click on "Find the liver and lesions" until the viewer has
painted the result, next to ``python -m core segment`` on the same scan (a fresh process:
its time includes loading torch and the model, as the page's first run does); printed as
``first picture N s (cli M s)``, then what each adds beyond the engine's own seconds (the page's
Details, the command's ``-v``): on a machine shared with other work the engine's time swings
between runs, and the overheads are what the two ways of running it differ in.
This starts the app on a free localhost port (as the e2e tests do), opens it in
headless Chromium, takes the sample (or uploads ``--scan``), segments it, and then in
each plane moves the slice ``--moves`` times, alternately with the arrow key on the
focused viewer and with one mouse-wheel notch over the picture (after a few untimed
moves). Each move is timed in the page, from just before the key press or wheel event
until the viewer has painted the new slice and the browser has painted the next frame.
Switching planes (which sends that plane's slices) is not timed.

    .venv/bin/python benchmarks/slice_latency.py                     # the sample, 128^3
    .venv/bin/python benchmarks/slice_latency.py --scan ../shared/data/ircad-1.1/ct_dicom.zip   # 512x512x129

Prints the median, 90th percentile and maximum per plane, per input and over all moves,
then the display-change and first-picture lines, and writes them all as JSON to
benchmarks/results/slice_latency.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import config  # noqa: E402
from tests.e2e import segment_page  # noqa: E402
from tests.e2e.app_server import CHROMIUM, CHROMIUM_FLAGS, App  # noqa: E402

PLANES = ("axial", "coronal", "sagittal")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"moves": len(values), "median_ms": round(statistics.median(ordered), 1),
            "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1), "max_ms": round(ordered[-1], 1)}


def measure(page, moves: int, warm_up: int = 3) -> dict[str, dict[str, list[float]]]:
    """``moves`` timed moves per plane, keys and wheel by turns, after ``warm_up`` untimed ones."""
    times = {}
    for plane in PLANES:
        segment_page.choose_plane(page, plane)
        # Every move must be a real change: go back when there is no room ahead.
        room = segment_page.slice_count(page) - segment_page.slice_number(page)
        direction = 1 if room >= moves + warm_up else -1
        key = "ArrowRight" if direction > 0 else "ArrowLeft"
        times[plane] = {"key": [], "wheel": []}
        for move in range(warm_up + moves):
            if move % 2:
                took, kind = segment_page.wheel_slice(page, 100 * direction), "wheel"
            else:
                took, kind = segment_page.move_slice(page, key), "key"
            if move >= warm_up:
                times[plane][kind].append(took)
            page.wait_for_timeout(150)  # a person looks at each slice; moves do not pile up
    return times


def display_changes(page, rounds: int) -> dict[str, list[float]]:
    """``rounds`` timed changes of each kind on the axial plane, each undone by the next (after one untimed round)."""
    segment_page.choose_plane(page, "axial")
    times = {"window preset": [], "window drag": [], "opacity": [], "toggle": [], "zoom": []}
    for round_ in range(rounds + 1):
        took = {
            "window preset": segment_page.choose_window(page, "Liver" if round_ % 2 == 0 else "Abdomen"),
            "window drag": segment_page.drag_window(page, 40 if round_ % 2 == 0 else -40, 20 if round_ % 2 == 0 else -20),
            "opacity": segment_page.set_opacity(page, 0.8 if round_ % 2 == 0 else 0.4),
            "toggle": segment_page.toggle_layer(page, "Liver"),
            "zoom": segment_page.zoom(page, -200 if round_ % 2 == 0 else 200),
        }
        if round_:
            for kind, ms in took.items():
                times[kind].append(ms)
        page.wait_for_timeout(150)
    return times


#: The stages of ``core.pipeline`` (the engine) in ``segment -v``'s seconds line; the others are the command's own.
_CLI_OWN = ("read", "dicom_seg", "write", "total")


def cli_seconds(scan: Path) -> tuple[float, float]:
    """Wall time of ``python -m core segment`` on ``scan`` in a fresh process, and the engine's share of it."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "core", "segment", str(scan), "-o", str(Path(folder) / "labels.nii.gz"), "-v"],
                             cwd=config.ROOT, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - started
    stages = dict(item.split("=") for item in run.stderr.strip().splitlines()[-1].removeprefix("seconds: ").split())
    return wall, sum(float(value) for stage, value in stages.items() if stage not in _CLI_OWN)


def page_engine_seconds(page) -> float:
    """The engine's seconds for the page's run, as its Details say ("Done in N s ...")."""
    page.get_by_text("Details").click()
    return float(re.search(r"Done in ([\d.]+) s", page.get_by_text("Done in").inner_text()).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=Path, help="upload this scan instead of taking the sample")
    parser.add_argument("--moves", type=int, default=20, help="slider moves per plane (default 20)")
    parser.add_argument("--changes", type=int, default=8, help="timed display changes of each kind (default 8)")
    parser.add_argument("--out", type=Path, default=config.ROOT / "benchmarks" / "results" / "slice_latency.json")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    app = App(env=segment_page.APP_ENV)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(600_000)
            page.goto(app.url)
            if args.scan:
                segment_page.upload_scan(page, args.scan.resolve())
            else:
                segment_page.choose_sample(page)
            started = time.perf_counter()
            segment_page.segment(page)
            segment_seconds = time.perf_counter() - started
            engine_seconds = page_engine_seconds(page)
            times = measure(page, args.moves)
            changes = display_changes(page, args.changes)
            browser.close()
    finally:
        app.stop()
    rows = {plane: [t for kind in times[plane].values() for t in kind] for plane in PLANES}
    for kind in ("key", "wheel"):
        rows[kind] = [t for plane in PLANES for t in times[plane][kind]]
    rows["all"] = rows["key"] + rows["wheel"]
    cli, cli_engine = cli_seconds(args.scan.resolve() if args.scan else config.SAMPLE_SCAN)
    all_changes = [ms for kind in changes.values() for ms in kind]
    result = {
        "scan": str(args.scan) if args.scan else "sample (LiTS 117, 128^3)",
        "first_picture_seconds": round(segment_seconds, 1),
        "cli_seconds": round(cli, 1),
        # On a shared machine the engine's own time swings with other work; what the page adds to it is the comparison.
        "engine_seconds": {"page": round(engine_seconds, 1), "cli": round(cli_engine, 1)},
        **{name: summary(values) for name, values in rows.items()},
        "display_change": {**summary(all_changes), **{kind: summary(values) for kind, values in changes.items()}},
    }
    for name in rows:
        row = result[name]
        print(f"{name:9s} median {row['median_ms']:6.1f} ms   p90 {row['p90_ms']:6.1f} ms   max {row['max_ms']:6.1f} ms   ({row['moves']} moves)")
    for kind, values in changes.items():
        row = summary(values)
        print(f"  {kind:14s} median {row['median_ms']:6.1f} ms   p90 {row['p90_ms']:6.1f} ms   max {row['max_ms']:6.1f} ms")
    change = result["display_change"]
    print(f"display change median {change['median_ms']:.0f} ms p90 {change['p90_ms']:.0f} ms")
    print(f"first picture {segment_seconds:.1f} s (cli {cli:.1f} s)")
    print(f"beyond the engine: page {segment_seconds - engine_seconds:.1f} s (cli {cli - cli_engine:.1f} s); "
          f"engine {engine_seconds:.1f} s in the page, {cli_engine:.1f} s in the cli")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
