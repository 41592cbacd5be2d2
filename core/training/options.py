"""``python -m core train``'s options, defined once as a frozen dataclass.

Every field carries its command-line definition (group, help, type, count), so the
CLI parser, the command recorded in a model card, the job runner's command and the
Train page's form are all derived from this one class: an option added here
appears everywhere, with one default and one help text.

Kept free of torch imports so that ``python -m core train --help`` and the Train
page answer at once. Defaults suit a GPU server; the README's CPU recipe (and the
shipped model's card) show smaller settings for a laptop.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from pathlib import Path

from core.devices import DEVICES, PRECISIONS
from core.errors import LiverSegError
from core.model.card import ModelCard

_CARD = ModelCard(name="defaults")

DATA = "data"
SCHEDULE = "schedule"
SAMPLING = "patches and augmentation"
MODEL = "model (new models; --init takes these from the initial model's card)"
HARDWARE = "hardware (PyTorch Lightning)"
PAIR = "fine-tuning the pretrained pair"


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


#: The form widget each value type needs (``TrainingOption.kind``).
KINDS: dict[Callable, str] = {int: "int", _positive_int: "int", float: "float", _positive_float: "float",
                               _fraction: "float", _non_negative: "float", str: "text"}


def _option(group: str, help: str, default: object = MISSING, *, type: Callable = str, nargs: int | str | None = None,
            metavar: str | tuple[str, ...] | None = None, choices: Sequence[str] | None = None, flag: bool = False,
            repeat: bool = False, path: bool = False) -> Field:
    """A dataclass field with its command-line definition; a list default is copied for each instance.

    ``path``: the value names a file or folder of this machine, which a model card records by name only.
    """
    metadata = {"group": group, "help": help, "type": type, "nargs": nargs, "metavar": metavar, "choices": choices,
                "flag": flag, "repeat": repeat, "path": path}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainOptions:
    """What one training run is asked to do: the parsed ``python -m core train`` command line."""

    data: list[str] = _option(DATA, "folder of labelled cases, searched by layout (repeatable)", metavar="DIR", repeat=True,
                                path=True)
    out: str = _option(DATA, "model folder to write, e.g. trained/NAME; progress, log and checkpoints go there too",
                       metavar="DIR", path=True)
    val: str = _option(DATA, "held-out validation cases: a fraction (0.2), a count (3), or case names separated by commas; "
                             "0 for none", "0.2", metavar="SPLIT")
    exclude: str | None = _option(DATA, "case names (separated by commas) left out of training and validation entirely, "
                                        "e.g. the case a cross-validation fold is scored on", None, metavar="CASES")
    cache_dir: str | None = _option(DATA, "where preprocessed cases are cached (default: .cache/train under the checkout)",
                                    None, metavar="DIR", path=True)

    epochs: int = _option(SCHEDULE, "maximum number of epochs", 100, type=_positive_int)
    patches_per_epoch: int = _option(SCHEDULE, "training patches per epoch (cases are revisited with new augmentation to "
                                               "fill it)", 250, type=_positive_int)
    samples_per_volume: int = _option(SCHEDULE, "patches drawn from each augmented volume before the next is loaded", 8,
                                      type=_positive_int)
    batch_size: int = _option(SCHEDULE, "patches per optimisation step (per device)", 2, type=_positive_int)
    lr: float = _option(SCHEDULE, "peak learning rate (AdamW, cosine decay)", 1e-3, type=_positive_float)
    weight_decay: float = _option(SCHEDULE, "AdamW weight decay", 1e-4, type=_non_negative)
    patience: int = _option(SCHEDULE, "stop when the validation score has not improved for this many validations", 20,
                            type=_positive_int)
    val_every: int = _option(SCHEDULE, "validate every this many epochs", 1, type=_positive_int)
    max_minutes: float | None = _option(SCHEDULE, "stop after this much training time and keep the best model so far "
                                                  "(default: no limit)", None, type=_positive_float)
    seed: int = _option(SCHEDULE, "random seed (split, initialisation, augmentation)", 0, type=int)

    patch_size: list[int] = _option(SAMPLING, "training patch in voxels (multiples of 2**(levels-1)); also the card's "
                                              "inference patch", _CARD.patch_size, type=_positive_int, nargs=3,
                                    metavar=("X", "Y", "Z"))
    label_probabilities: list[float] = _option(SAMPLING, "how often a patch is centred on background, liver, lesion",
                                               [0.2, 0.4, 0.4], type=_non_negative, nargs=3,
                                               metavar=("BG", "LIVER", "LESION"))
    augment: float = _option(SAMPLING, "augmentation strength: 0 none, 1 default, 2 aggressive", 1.0, type=_non_negative,
                             metavar="STRENGTH")
    synthetic_lesions: float = _option(SAMPLING, "probability of painting synthetic lesions into a training volume", 0.5,
                                       type=_fraction, metavar="P")

    init: str | None = _option(MODEL, "fine-tune from this model in trained/ (weights and card settings)", None,
                               metavar="MODEL", path=True)
    channels: list[int] = _option(MODEL, "UNet feature channels per level", _CARD.channels, type=_positive_int, nargs="+")
    spacing: list[float] = _option(MODEL, "voxel size the model works at, mm (one value or three)", _CARD.spacing_mm,
                                   type=_positive_float, nargs="+", metavar="MM")
    hu_window: list[float] = _option(MODEL, "HU clipped to this window, then scaled to [-1, 1]", _CARD.hu_window,
                                     type=float, nargs=2, metavar=("LOW", "HIGH"))
    first_stage: str | None = _option(MODEL, "make a two-stage cascade: this model (a name in trained/ or a model folder), "
                                        "trained at a coarse spacing on whole scans, finds the liver's region; the model "
                                        "trained here segments within it. The second stage trains as usual; the first "
                                        "stage's weights and card are copied in", None, metavar="MODEL",
                                path=True)
    roi_margin: float = _option(MODEL, "with --first-stage: how far beyond the first stage's liver the second stage may find "
                                       "liver", 20.0, type=_non_negative, metavar="MM")
    denoise: str = _option(MODEL, "noise reduction before the HU window", "none", choices=("none", "gaussian", "median"))
    network: str = _option(PAIR, "with --init of the pretrained pair: the network to fine-tune (the other is kept)", "lesion",
                           choices=("lesion", "liver"))
    train_layers: str = _option(PAIR, "with --init of the pretrained pair: what learns: head (the finest up block and the "
                                       "output), decoder (every up block and the output) or all", "decoder",
                                choices=("head", "decoder", "all"))

    resume: bool = _option(HARDWARE, "continue from --out's last checkpoint", False, flag=True)
    accelerator: str = _option(HARDWARE, "where to train, as segment --device: auto (a CUDA GPU when there is one), cpu, "
                                         "cuda", "auto", choices=DEVICES)
    devices: str = _option(HARDWARE, "number of devices, a list like 0,1, or auto", "auto")
    strategy: str = _option(HARDWARE, "auto, ddp, ddp_spawn, ... (Lightning strategies)", "auto")
    num_nodes: int = _option(HARDWARE, "machines in a multi-node (cluster) run", 1, type=_positive_int)
    precision: str = _option(HARDWARE, "as segment --precision: auto (mixed on a GPU, float32 on the CPU), mixed "
                                       "(bfloat16 where the device computes it, else float16), float32", "auto",
                             choices=PRECISIONS)
    threads: int = _option(HARDWARE, "CPU threads per process for PyTorch; 0: PyTorch's choice (all cores). "
                                     "1 wastes least on a machine busy with other work", 0, type=int)
    num_workers: int = _option(HARDWARE, "processes loading and augmenting volumes; -1: none on CPU, up to 4 on GPU", -1,
                               type=int)

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> TrainOptions:
        """The options of an ``argparse`` result built by ``add_arguments`` (other attributes are ignored)."""
        return cls(**{option.name: getattr(namespace, option.name) for option in fields(cls)})

    @property
    def excluded(self) -> list[str]:
        """The case names ``--exclude`` gives (separated by commas), sorted."""
        return sorted({name.strip() for name in (self.exclude or "").split(",") if name.strip()})

    def arguments(self) -> list[str]:
        """The command-line arguments that give these options: the required ones and every one off its default."""
        words: list[str] = []
        for option in fields(self):
            value, flag = getattr(self, option.name), _flag(option)
            if option.metadata["repeat"]:
                for item in value:
                    words += [flag, str(item)]
            elif option.metadata["flag"]:
                words += [flag] if value else []
            elif value != _default(option) or _required(option):
                words += [flag, *map(str, value if isinstance(value, list) else [value])]
        return words

    def portable(self) -> TrainOptions:
        """These options with every path reduced to the name of what it points at.

        A model card travels to other machines and into git, so it must not say where
        files lay on the one that trained it: data folders keep their names (each case is
        recorded relative to its folder), ``--out`` its folder name (``trained/NAME`` once
        shipped), ``--init`` and ``--first-stage`` the model's name.
        """
        def name(value: str) -> str:
            return Path(value).expanduser().resolve().name  # resolved first: "." and ".." have no name of their own

        reduced = {}
        for option in fields(self):
            value = getattr(self, option.name)
            if option.metadata["path"] and value is not None:
                reduced[option.name] = [name(item) for item in value] if isinstance(value, list) else name(value)
        return replace(self, **reduced)

    def command(self) -> str:
        """``python -m core train ...`` with these options, paths by name (``portable``), as a model card records it."""
        return shlex.join(["python", "-m", "core", "train", *self.portable().arguments()])

    def record(self) -> dict[str, object]:
        """The options by name, paths by name (``portable``), as a model card records them."""
        return asdict(self.portable())


def _flag(option: Field) -> str:
    return "--" + option.name.replace("_", "-")


def _required(option: Field) -> bool:
    return option.default is MISSING and option.default_factory is MISSING


def _default(option: Field) -> object:
    if option.default_factory is not MISSING:
        return option.default_factory()
    return None if option.default is MISSING else option.default


class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends "(default: ...)" to every option that has a default and does not describe it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{text} (default: {shown})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``TrainOptions``'s fields to ``parser`` as options, grouped; ``--help`` shows each default."""
    parser.formatter_class = _DefaultsFormatter
    groups: dict[str, argparse._ArgumentGroup] = {}
    for option in fields(TrainOptions):
        spec = option.metadata
        group = groups.get(spec["group"]) or groups.setdefault(spec["group"], parser.add_argument_group(spec["group"]))
        if spec["flag"]:
            group.add_argument(_flag(option), action="store_true", help=spec["help"])
            continue
        settings = {"type": spec["type"], "help": spec["help"]}
        if spec["repeat"]:
            settings["action"] = "append"
        for key in ("nargs", "metavar", "choices"):
            if spec[key] is not None:
                settings[key] = list(spec[key]) if key == "choices" else spec[key]
        if _required(option):
            settings["required"] = True
        else:
            settings["default"] = _default(option)
        group.add_argument(_flag(option), **settings)


class _Parser(argparse.ArgumentParser):
    """The train parser, raising ``LiverSegError`` instead of exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise LiverSegError(f"training options: {message}")


def parse(arguments: Sequence[str]) -> TrainOptions:
    """``TrainOptions`` from command-line arguments (without the ``train`` word).

    Raises:
        LiverSegError: an unknown option or an unusable value, with argparse's message.
    """
    parser = _Parser(prog="python -m core train", add_help=False)
    add_arguments(parser)
    return TrainOptions.from_namespace(parser.parse_args(list(arguments)))


# --------------------------------------------------------------------- the Train page's form

#: Options a job runner sets itself (``core.jobs``), so the Train page does not offer them.
#: ``cache_dir`` too: a folder chosen from the browser could point anywhere on the server.
RUNNER_OPTIONS = frozenset({"data", "out", "init", "first_stage", "resume", "devices", "accelerator", "strategy", "num_nodes",
                            "cache_dir"})


@dataclass(frozen=True)
class TrainingOption:
    """One option offered on the Train page, from ``TrainOptions``'s definition.

    Attributes:
        name: the option's name in ``TrainingRequest.options`` (``"patch_size"`` for ``--patch-size``).
        group: its group title (``"schedule"``, ...), for laying options out.
        kind: ``"int"``, ``"float"``, ``"choice"``, ``"flag"`` or ``"text"``.
        count: values it takes: 1, a fixed number (``--patch-size X Y Z``: 3), or ``None`` for one or more.
    """

    name: str
    group: str
    default: object
    help: str
    kind: str
    count: int | None = 1
    choices: list | None = None


def training_options() -> list[TrainingOption]:
    """The hyperparameters a user may set, with the CLI's defaults and help (nothing is defined twice)."""
    options = []
    for option in fields(TrainOptions):
        if option.name in RUNNER_OPTIONS:
            continue
        spec = option.metadata
        kind = "choice" if spec["choices"] else "flag" if spec["flag"] else KINDS[spec["type"]]
        count = 1 if spec["nargs"] is None else spec["nargs"] if isinstance(spec["nargs"], int) else None
        options.append(TrainingOption(option.name, spec["group"], _default(option), spec["help"], kind, count,
                                      list(spec["choices"]) if spec["choices"] else None))
    return options
