"""A model as one file to download: ``NAME.zip`` holding ``NAME/model.pt`` and ``NAME/card.json``.

Unzipped into another installation's ``trained/`` folder, it is a model there.
"""

from __future__ import annotations

import io
import zipfile

from core.model import registry
from core.model.card import CARD_FILE, WEIGHTS_FILE


def model_archive(name: str) -> bytes:
    """The zip of model ``name``'s weights and card (``LiverSegError`` for an unknown model)."""
    folder = registry.model_dir(name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # model.pt is itself a zip of tensors that barely compresses: store it, deflate the card.
        archive.write(folder / WEIGHTS_FILE, f"{name}/{WEIGHTS_FILE}", compress_type=zipfile.ZIP_STORED)
        archive.write(folder / CARD_FILE, f"{name}/{CARD_FILE}", compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def model_size_bytes(name: str) -> int:
    """Bytes on disk of model ``name``'s weights and card."""
    folder = registry.model_dir(name)
    return sum((folder / file).stat().st_size for file in (WEIGHTS_FILE, CARD_FILE))
