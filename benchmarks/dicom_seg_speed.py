"""Time to encode a DICOM SEG of the real DICOM case, and its size.

Reads ``../shared/data/ircad-1.1/ct_dicom.zip`` (512x512x129, no labels of its own),
segments it once with the default model (the label map a user would export), then
builds and encodes its SEG (``core.imageio.dicom_seg.dicom_seg_bytes``) ``--runs`` times and
reports the median seconds, the file size and the number of frames; the SEG is read
back with ``highdicom.seg.segread`` once as a check. Usage::

    .venv/bin/python benchmarks/dicom_seg_speed.py --runs 5

Results also go to ``benchmarks/results/dicom_seg_speed.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import highdicom as hd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the checkout is the package root
from core import config
from core.imageio.dicom_seg import dicom_seg_bytes
from core.imageio.nifti import read_scan
from core.inference.segmenter import Segmenter

CASE = config.SHARED_DATA_DIR / "ircad-1.1" / "ct_dicom.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--case", type=Path, default=CASE)
    args = parser.parse_args()
    scan = read_scan(args.case)
    segmentation = Segmenter().segment(scan)
    seconds, encoded = [], b""
    for _ in range(args.runs):
        start = time.perf_counter()
        encoded = dicom_seg_bytes(segmentation)
        seconds.append(time.perf_counter() - start)
    seg = hd.seg.segread(io.BytesIO(encoded))
    result = {
        "case": args.case.name, "shape": list(scan.shape), "model": segmentation.model, "runs": args.runs,
        "median_s": round(statistics.median(seconds), 3), "seconds": [round(s, 3) for s in seconds],
        "megabytes": round(len(encoded) / 1e6, 2), "frames": int(seg.NumberOfFrames),
    }
    print(json.dumps(result, indent=2))
    out = config.ROOT / "benchmarks" / "results" / "dicom_seg_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
