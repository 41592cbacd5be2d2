"""How a number, or its absence, reads wherever a person reads it: pages, the report, logs and tables.

One dash for a value that is not defined (a lesion Dice against a liver-only reference,
a burden without a liver), so that "missing" never reads three different ways.
"""

from __future__ import annotations

#: Shown where a value is not defined.
MISSING = "–"


def number(value: object, digits: int = 3) -> str:
    """``value`` as text: ``None`` as ``MISSING``, a float to ``digits`` decimals, anything else as it is."""
    if value is None:
        return MISSING
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def cell(value: object) -> str:
    """A table cell: counts as they are, scores (0-1) to 3 decimals, millimetres, millilitres and percentages
    from 10 up to 1 decimal (a 37.769 mm distance reads 37.8: the voxels are coarser than that)."""
    return number(value, 1 if isinstance(value, float) and abs(value) >= 10 else 3)
