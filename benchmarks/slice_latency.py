"""Slice latency of the Segment page: key press or wheel turn -> new slice painted, in headless Chromium.

Issue 12 asks for a median of at most 100 ms and a 90th percentile of at most 150 ms.
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
and writes them as JSON to benchmarks/results/slice_latency.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", type=Path, help="upload this scan instead of taking the sample")
    parser.add_argument("--moves", type=int, default=20, help="slider moves per plane (default 20)")
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
            times = measure(page, args.moves)
            browser.close()
    finally:
        app.stop()
    rows = {plane: [t for kind in times[plane].values() for t in kind] for plane in PLANES}
    for kind in ("key", "wheel"):
        rows[kind] = [t for plane in PLANES for t in times[plane][kind]]
    rows["all"] = rows["key"] + rows["wheel"]
    result = {
        "scan": str(args.scan) if args.scan else "sample (LiTS 117, 128^3)",
        "segment_seconds_incl_page": round(segment_seconds, 1),
        **{name: summary(values) for name, values in rows.items()},
    }
    for name in rows:
        row = result[name]
        print(f"{name:9s} median {row['median_ms']:6.1f} ms   p90 {row['p90_ms']:6.1f} ms   max {row['max_ms']:6.1f} ms   ({row['moves']} moves)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
