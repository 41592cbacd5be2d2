"""Turning what a form's widgets hold into the typed values a training request sends (``core.jobs.requests``)."""

from __future__ import annotations

from core.training.options import TrainingOption

_NUMBERS = {"int": int, "float": float}


def typed_words(option: TrainingOption, text: str) -> list[object]:
    """The words of a text field for an option that takes several values, each as the option's type.

    A word that is not a number of that type is sent as it is, so that the request's check
    (``core.jobs.requests``) names the option and the value in its message.
    """
    convert = _NUMBERS.get(option.kind)
    values: list[object] = []
    for word in text.split():
        try:
            values.append(convert(word) if convert else word)
        except ValueError:
            values.append(word)
    return values
