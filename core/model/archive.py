"""A model as one file to download: ``NAME.zip`` holding ``NAME/`` with every file of the model (``registry.model_files``).

Unzipped into another installation's ``trained/`` folder, it is a model there.
"""

from __future__ import annotations

import io
import zipfile

from core.model import registry
from core.model.card import CARD_FILE, ModelCard


def model_archive(name: str) -> bytes:
    """The zip of model ``name``'s files (``registry.model_files``) under ``NAME/`` (``LiverSegError`` for an unknown model)."""
    folder = registry.model_dir(name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in registry.model_files(ModelCard.load(folder)):
            # Weights are themselves zips of tensors that barely compress: store them, deflate the card.
            compression = zipfile.ZIP_DEFLATED if file == CARD_FILE else zipfile.ZIP_STORED
            archive.write(folder / file, f"{name}/{file}", compress_type=compression)
    return buffer.getvalue()


def model_size_bytes(name: str) -> int:
    """Bytes on disk of model ``name``'s files (``registry.model_files``)."""
    folder = registry.model_dir(name)
    return sum((folder / file).stat().st_size for file in registry.model_files(ModelCard.load(folder)))
