"""Text a user supplied (file names), shown as the characters it holds, never as Markdown.

Streamlit renders Markdown in ``st.markdown``, ``st.success``, ``st.warning``, ``st.spinner``
and most labels: an upload named ``[click me](https://evil.example/x).nii.gz`` would become
a live link on a page other people trust, ``:red[...]`` a coloured directive, ``$...$`` a formula.
"""

from __future__ import annotations

import re

#: Every character Markdown, Streamlit's directives (``:material/...:``) and its formulas (``$``) give a meaning to.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&])")


def plain(text: str) -> str:
    """``text`` with each Markdown character escaped, so that it reads exactly as written."""
    return _SPECIAL.sub(r"\\\1", text)
