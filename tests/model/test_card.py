import json

import pytest

from core import config
from core.errors import LiverSegError
from core.model.card import ModelCard


def test_round_trip(tmp_path):
    card = ModelCard(name="m", spacing_mm=[1.5, 1.5, 2.0], metrics={"liver_dice": 0.9})
    card.save(tmp_path)
    assert ModelCard.load(tmp_path) == card


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"hu_window": [100, -100]}, "hu_window"),
        ({"patch_size": [90, 96, 96]}, "multiples of 8"),
        ({"spacing_mm": [0, 1, 1]}, "spacing_mm"),
        ({"denoise": "wavelet"}, "denoise"),
    ],
)
def test_invalid_card_says_what_is_wrong(fields, message):
    with pytest.raises(LiverSegError, match=message):
        ModelCard(name="bad", **fields)


def test_missing_or_corrupt_card_is_a_clear_error(tmp_path):
    with pytest.raises(LiverSegError, match="no model card"):
        ModelCard.load(tmp_path)
    (tmp_path / "card.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(LiverSegError, match="not valid JSON"):
        ModelCard.load(tmp_path)
    (tmp_path / "card.json").write_text(json.dumps({"name": "x", "colour": "red"}), encoding="utf-8")
    with pytest.raises(LiverSegError, match="unknown or missing"):
        ModelCard.load(tmp_path)


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in config.TRAINED_DIR.glob("*/card.json")))
def test_shipped_cards_hold_no_machine_path(folder, machine_paths):
    """A card in git names data folders, cases and outputs relative to them, never where they lay on a machine."""
    card = json.loads((config.TRAINED_DIR / folder / "card.json").read_text(encoding="utf-8"))
    assert machine_paths(card) == []
