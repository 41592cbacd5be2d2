"""A library's exception as a short reason for a one-line ``LiverSegError`` message.

nibabel, SimpleITK and zipfile explain failures well but in several lines and with
full paths (a temporary folder, another user's home). Users get the first line,
with every absolute path shortened to its file name.
"""

from __future__ import annotations

from core.errors import without_paths


def reason(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message, paths reduced to file names."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return without_paths(text)[:200]
