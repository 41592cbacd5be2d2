"""The one exception type for problems a user can cause and fix, and the rule that keeps machine paths out of it."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[^\s'\"(),;]+")


def without_paths(text: str) -> str:
    """``text`` with every absolute path shortened to its last component.

    What users read on a shared server must not show where files live on it (a
    temporary folder, another user's home, the data mount): the name says which
    file is meant, the folder above it only says something about the machine.
    """
    return _ABSOLUTE_PATH.sub(lambda match: PurePosixPath(match.group()).name, text)


class LiverSegError(Exception):
    """Bad input or configuration: the message says what is wrong and what to do.

    The command line prints it as one ``error: ...`` line and exits with 2;
    the pages show it in an error box. Anything else is a bug. The message is
    stored without absolute paths (``without_paths``), the same rule that
    ``core.reasons`` applies to the libraries' messages.
    """

    def __init__(self, message: str) -> None:
        super().__init__(without_paths(message))
