"""core.model.archive: the Models page's "Download" zip holds every file of a model, and unzipped it is a model again."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from core import config, pipeline
from core.inference.segmenter import Segmenter
from core.model import registry
from core.model.archive import model_archive, model_size_bytes
from core.model.card import ModelCard
from core.segmentation import LIVER
from tests.helpers.phantom import make_phantom

CASCADE = "liverseg-cascade-v1"


@pytest.mark.slow  # the shipped cascade on a phantom
def test_the_default_cascades_zip_unpacked_into_an_empty_models_folder_segments(tmp_path, monkeypatch):
    shipped = registry.model_dir(CASCADE)
    archive = model_archive(CASCADE)  # what the Models page's Download button serves
    with zipfile.ZipFile(io.BytesIO(archive)) as unpacked:
        assert sorted(unpacked.namelist()) == [f"{CASCADE}/{name}" for name in ("card.json", "first_stage.pt", "model.pt")]
        unpacked.extractall(tmp_path / "trained")
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path / "trained")
    assert [card.name for card in registry.list_cards()] == [CASCADE]
    scan, _ = make_phantom(shape=(48, 40, 32))
    result = pipeline.run(scan, Segmenter(CASCADE))
    assert result.labels.shape == scan.shape and result.segmentation.model == CASCADE
    assert "first_stage" in result.segmentation.seconds  # the first stage came from the zip too
    assert np.count_nonzero(result.labels == LIVER) > 0
    assert model_size_bytes(CASCADE) == sum(path.stat().st_size for path in shipped.iterdir()
                                            if path.name in registry.model_files(ModelCard.load(shipped)))


def test_one_list_of_files_for_either_kind_of_model():
    single = ModelCard(name="single")
    cascade = ModelCard.load(registry.model_dir(CASCADE))
    assert registry.model_files(single) == ["model.pt", "card.json"]
    assert registry.model_files(cascade) == ["model.pt", "first_stage.pt", "card.json"]
