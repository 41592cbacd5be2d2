"""Training options: one argparse definition shared by the CLI and the job runner.

Kept free of torch imports so that ``python -m core train --help`` and the Train
page answer at once. Defaults suit a GPU server; the README's CPU recipe (and the
shipped model's card) show smaller settings for a laptop.
"""

from __future__ import annotations

import argparse
import shlex

from core.model_card import ModelCard

_CARD = ModelCard(name="defaults")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends "(default: ...)" to every option that has a default and does not describe it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{text} (default: {shown})"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m core train``; ``--help`` shows each default."""
    parser.formatter_class = _DefaultsFormatter
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=str, action="append", required=True, metavar="DIR",
                      help="folder of labelled cases, searched by layout (repeatable)")
    data.add_argument("--out", type=str, required=True, metavar="DIR",
                      help="model folder to write, e.g. trained/NAME; progress, log and checkpoints go there too")
    data.add_argument("--val", type=str, default="0.2", metavar="SPLIT",
                      help="held-out validation cases: a fraction (0.2), a count (3), or case names separated by commas; "
                           "0 for none")
    data.add_argument("--exclude", type=str, default=None, metavar="CASES",
                      help="case names (separated by commas) left out of training and validation entirely, "
                           "e.g. the case a cross-validation fold is scored on")
    data.add_argument("--cache-dir", type=str, default=None, metavar="DIR",
                      help="where preprocessed cases are cached (default: .cache/train under the checkout)")

    schedule = parser.add_argument_group("schedule")
    schedule.add_argument("--epochs", type=_positive_int, default=100, help="maximum number of epochs")
    schedule.add_argument("--patches-per-epoch", type=_positive_int, default=250,
                          help="training patches per epoch (cases are revisited with new augmentation to fill it)")
    schedule.add_argument("--samples-per-volume", type=_positive_int, default=8,
                          help="patches drawn from each augmented volume before the next is loaded")
    schedule.add_argument("--batch-size", type=_positive_int, default=2, help="patches per optimisation step (per device)")
    schedule.add_argument("--lr", type=_positive_float, default=1e-3, help="peak learning rate (AdamW, cosine decay)")
    schedule.add_argument("--weight-decay", type=_non_negative, default=1e-4, help="AdamW weight decay")
    schedule.add_argument("--patience", type=_positive_int, default=20,
                          help="stop when the validation score has not improved for this many validations")
    schedule.add_argument("--val-every", type=_positive_int, default=1, help="validate every this many epochs")
    schedule.add_argument("--max-minutes", type=_positive_float, default=None,
                          help="stop after this much training time and keep the best model so far (default: no limit)")
    schedule.add_argument("--seed", type=int, default=0, help="random seed (split, initialisation, augmentation)")

    sampling = parser.add_argument_group("patches and augmentation")
    sampling.add_argument("--patch-size", type=_positive_int, nargs=3, default=_CARD.patch_size, metavar=("X", "Y", "Z"),
                          help="training patch in voxels (multiples of 2**(levels-1)); also the card's inference patch")
    sampling.add_argument("--label-probabilities", type=_non_negative, nargs=3, default=[0.2, 0.4, 0.4],
                          metavar=("BG", "LIVER", "LESION"),
                          help="how often a patch is centred on background, liver, lesion")
    sampling.add_argument("--augment", type=_non_negative, default=1.0, metavar="STRENGTH",
                          help="augmentation strength: 0 none, 1 default, 2 aggressive")
    sampling.add_argument("--synthetic-lesions", type=_fraction, default=0.5, metavar="P",
                          help="probability of painting synthetic lesions into a training volume")

    model = parser.add_argument_group("model (new models; --init takes these from the initial model's card)")
    model.add_argument("--init", type=str, default=None, metavar="MODEL",
                       help="fine-tune from this model in trained/ (weights and card settings)")
    model.add_argument("--channels", type=_positive_int, nargs="+", default=_CARD.channels,
                       help="UNet feature channels per level")
    model.add_argument("--spacing", type=_positive_float, nargs="+", default=_CARD.spacing_mm, metavar="MM",
                       help="voxel size the model works at, mm (one value or three)")
    model.add_argument("--hu-window", type=float, nargs=2, default=_CARD.hu_window, metavar=("LOW", "HIGH"),
                       help="HU clipped to this window, then scaled to [-1, 1]")
    model.add_argument("--coarse", type=str, default=None, metavar="MODEL",
                       help="make a two-stage cascade: this model (a name in trained/ or a model folder), trained at a "
                            "coarse spacing on whole scans, finds the liver's region; the model trained here segments "
                            "within it. The fine stage trains as usual; the first stage's weights and card are copied in")
    model.add_argument("--roi-margin", type=_non_negative, default=20.0, metavar="MM",
                       help="with --coarse: how far beyond the first stage's liver the second stage may find liver")
    model.add_argument("--denoise", choices=["none", "gaussian", "median"], default="none",
                       help="noise reduction before the HU window")

    hardware = parser.add_argument_group("hardware (PyTorch Lightning)")
    hardware.add_argument("--resume", action="store_true", help="continue from --out's last checkpoint")
    hardware.add_argument("--accelerator", type=str, default="auto", help="auto, cpu, gpu (cuda), mps")
    hardware.add_argument("--devices", type=str, default="auto", help="number of devices, a list like 0,1, or auto")
    hardware.add_argument("--strategy", type=str, default="auto", help="auto, ddp, ddp_spawn, ... (Lightning strategies)")
    hardware.add_argument("--num-nodes", type=_positive_int, default=1, help="machines in a multi-node (cluster) run")
    hardware.add_argument("--precision", type=str, default="auto",
                          help="auto (16-mixed on GPU, 32 on CPU), 32-true, 16-mixed, bf16-mixed")
    hardware.add_argument("--threads", type=int, default=0,
                          help="CPU threads per process for PyTorch; 0: PyTorch's choice (all cores). "
                               "1 wastes least on a machine busy with other work")
    hardware.add_argument("--num-workers", type=int, default=-1,
                          help="processes loading and augmenting volumes; -1: none on CPU, up to 4 on GPU")


def command_line(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """``python -m core train ...`` that reproduces ``args``: every option that differs from its default."""
    words = ["python", "-m", "core", "train"]
    for action in parser._actions:  # argparse lists its definitions only here
        if not action.option_strings or action.dest == "help":
            continue
        value, flag = getattr(args, action.dest, None), action.option_strings[-1]
        if action.dest == "data":
            for folder in value:
                words += [flag, folder]
        elif isinstance(action, argparse._StoreTrueAction):
            words += [flag] if value else []
        elif value != action.default or action.required:
            words += [flag, *map(str, value if isinstance(value, list) else [value])]
    return shlex.join(words)
