"""How a segmentation's progress reads on the page: the stages in plain words, the time taken and an estimate.

The one place that names the engine's stages for people. The engine reports
``progress(stage, fraction)`` with its own stage names, and new ones come with new
models, so a name not listed here still reads as words ("finding_the_abdomen":
"Finding the abdomen"), never as an identifier.

The estimate comes from this server's measured throughput: the seconds per million
voxels of the last finished run of the same model (kept for the whole server process,
``ui.caches.run_rates``); before any run there is none, and the page says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: The engine's stage names (core.inference.segmenter, core.pipeline) as the page says them.
STAGE_WORDS = {
    "first_stage": "Finding the liver",
    "preprocess": "Reading the scan",
    "infer": "Outlining the liver and lesions",
    "abdomen": "Finding the abdomen",
    "liver_network": "Outlining the liver",
    "lesion_network": "Looking for lesions in the liver",
    "postprocess": "Outlining the liver and lesions",
    "lesions": "Measuring",
    "metrics": "Comparing with the reference",
}


def stage_words(stage: str) -> str:
    """``stage`` in plain words; an unknown name made readable."""
    if stage in STAGE_WORDS:
        return STAGE_WORDS[stage]
    words = " ".join(stage.replace("_", " ").replace("-", " ").split())
    return words[:1].upper() + words[1:] if words else "Working"


def duration(seconds: float) -> str:
    """A duration as people say it: "8 s", "2 min 5 s"."""
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


class RunProgress:
    """``progress(stage, fraction)`` for the engine, writing one line through ``show(fraction, text)``.

    Args:
        expected_s: how long the whole run should take on this server (``None``: not known yet).
    """

    def __init__(self, show: Callable[[float, str], None], expected_s: float | None, clock: Callable[[], float] = time.monotonic):
        self.show, self.expected_s, self.clock = show, expected_s, clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def __call__(self, stage: str, fraction: float) -> None:
        elapsed = self.elapsed()
        text = f"{stage_words(stage)}… {duration(elapsed)} so far"
        if self.expected_s:
            left = self.expected_s - elapsed
            text += f", about {duration(left)} left" if left >= 1 else ", almost done"
            share = min(elapsed / self.expected_s, 0.99)
        else:
            text += " (the first run on this server: no estimate yet)"
            share = min(max(float(fraction), 0.0), 1.0)
        self.show(share, text)
