"""The one place a training request is checked before a job starts, and the command built from it.

Everything in a request may come from a browser: the model name, the data folders, the
models it starts from, the device and every option. Each is checked here as the typed
value it must be (a whole number is an ``int``, never a string that parses as one), folders
must lie inside the configured data folders (``core.server.paths``), and no value may start
with ``-``, so that nothing sent can be read as another option. The job's command is then
written out from the checked ``TrainOptions``, never from the strings that were sent.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import Field, fields
from pathlib import Path

from core.devices import DEVICES
from core.errors import LiverSegError
from core.jobs.records import NAME_PATTERN, TrainingRequest
from core.server.paths import inside_data_dirs
from core.training.options import KINDS, RUNNER_OPTIONS, TrainOptions

_OPTIONS = {option.name: option for option in fields(TrainOptions)}
#: The Python types a value of each kind of option may be sent as (a whole number is also a number).
_TYPES = {"int": (int,), "float": (int, float), "text": (str,)}


def check_request(request: TrainingRequest) -> TrainingRequest:
    """``request`` with its data folders resolved and every value checked and typed.

    Raises:
        LiverSegError: what is wrong with which value, in words the Train page can show.
    """
    if not isinstance(request.name, str) or not NAME_PATTERN.fullmatch(request.name):
        raise LiverSegError(f"model name {request.name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if not isinstance(request.data, list) or not request.data:
        raise LiverSegError("choose at least one folder of training data (a list of folders)")
    if request.device not in DEVICES:
        raise LiverSegError(f"device {request.device!r}: choose one of {', '.join(DEVICES)}")
    from core.model.registry import model_dir  # torch: only once a request is checked, not when the page loads

    for model in (request.init, request.first_stage):
        if model is not None:
            model_dir(_text("model", model))  # a clear LiverSegError for an unknown model (and refuses paths)
    data = []
    for folder in request.data:
        real = inside_data_dirs(_text("training data", folder))
        if not real.is_dir():
            raise LiverSegError(f"training data {real} is a file; choose the folder that holds the cases")
        data.append(str(real))
    if not isinstance(request.options, dict):
        raise LiverSegError("training options must be given by name")
    options = {name: _typed(name, value) for name, value in request.options.items()}
    return TrainingRequest(request.name, data, request.init, request.device, options, request.first_stage)


def training_options(request: TrainingRequest, output: Path) -> TrainOptions:
    """The typed options of a request that ``check_request`` passed, writing the model to ``output``."""
    return TrainOptions(data=list(request.data), out=str(output), init=request.init, first_stage=request.first_stage,
                        accelerator=request.device, devices="1" if request.device == "cuda" else "auto",
                        **request.options)  # type: ignore[arg-type]


def training_command(request: TrainingRequest, output: Path) -> list[str]:
    """The exact ``python -m core train`` command line of a checked ``request``."""
    return [sys.executable, "-m", "core", "train", *training_options(request, output).arguments()]


def _text(what: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LiverSegError(f"{what} {value!r}: give a name")
    if value.startswith("-"):
        raise LiverSegError(f"{what} {value!r}: a value may not start with '-'")
    return value


def _typed(name: str, value: object) -> object:
    """``value`` for option ``name`` checked against its definition in ``TrainOptions``: type, count, range, choices."""
    option = _OPTIONS.get(name)
    if option is None:
        raise LiverSegError(f"training option {name!r} does not exist; see python -m core train --help")
    if name in RUNNER_OPTIONS:
        raise LiverSegError(f"training option {name!r} is set by the job runner; use the request's own field")
    spec = option.metadata
    if spec["flag"]:
        if not isinstance(value, bool):
            raise LiverSegError(f"training option {name!r} is on or off: give true or false, not {value!r}")
        return value
    if value is None and option.default is None:
        return None
    count = spec["nargs"]
    if count is None:
        return _one(name, option, value)
    if not isinstance(value, (list, tuple)) or not value or (isinstance(count, int) and len(value) != count):
        wanted = f"{count} values" if isinstance(count, int) else "one value or more"
        raise LiverSegError(f"training option {name!r} takes {wanted}, as a list; not {value!r}")
    return [_one(name, option, item) for item in value]


def _one(name: str, option: Field, value: object) -> object:
    """One value of option ``name``, of the type its command-line definition converts to, in its range."""
    spec = option.metadata
    convert = spec["type"]
    kind = KINDS[convert]
    if isinstance(value, bool) or not isinstance(value, _TYPES[kind]):
        raise LiverSegError(f"training option {name!r} takes {kind} values, not {value!r}")
    if isinstance(value, str):
        _text(f"training option {name!r}", value)
    if spec["choices"] is not None and value not in spec["choices"]:
        raise LiverSegError(f"training option {name!r}: choose one of {', '.join(spec['choices'])}, not {value!r}")
    try:
        return convert(str(value))  # the same range check the command line applies
    except (argparse.ArgumentTypeError, ValueError) as error:
        raise LiverSegError(f"training option {name!r}: {error}") from None
