"""Training options: one argparse definition shared by the CLI and the job runner."""

from __future__ import annotations

import argparse


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m core train`` (training helper: complete)."""
    parser.add_argument("--data", type=str, action="append", required=True, help="folder of labelled cases (repeatable)")
    parser.add_argument("--out", type=str, required=True, help="model folder to write, e.g. trained/NAME")
