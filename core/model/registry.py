"""The models on disk: list, load, register, remove, and which one is the default.

Each model is a folder ``config.TRAINED_DIR/NAME/`` holding ``model.pt`` (a state
dict, loaded only as weights) and ``card.json``; a two-stage cascade also holds its
first stage's weights, ``first_stage.pt``, and describes both stages in its one card;
the pretrained pair holds its two networks' files, which its card names
(``core.model.pretrained`` converts them at set-up). The default model's name is kept
in ``config.TRAINED_DIR/default.json`` (``{"model": NAME}``); without that file, or
when it names a model that is gone, the newest shipped model is the default
(then the newest of any kind), so a fresh checkout works with no set-up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from core import config
from core.atomic import atomic_path, write_atomically
from core.errors import LiverSegError
from core.model.card import CARD_FILE, FIRST_STAGE_WEIGHTS_FILE, PRETRAINED_PAIR, WEIGHTS_FILE, ModelCard
from core.model.multipathway_unet import NetworkPair
from core.model.unet import UNet

DEFAULT_FILE = "default.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def model_files(card: ModelCard) -> list[str]:
    """The files that make up the model ``card`` describes, in its folder, the card last.

    The one list that saving, registering, archiving (``core.model.archive``) and sizing use:
    the weights (the pretrained pair's two files), a cascade's first stage, the card.
    """
    if card.architecture == PRETRAINED_PAIR:
        return [*card.pair_weights.values(), CARD_FILE]
    return [WEIGHTS_FILE] + ([FIRST_STAGE_WEIGHTS_FILE] if card.cascade else []) + [CARD_FILE]


def _trained_dir() -> Path:
    # Looked up at each call, not imported once, so that a test can point config.TRAINED_DIR elsewhere.
    return config.TRAINED_DIR


def list_cards() -> list[ModelCard]:
    """Cards of every model folder, newest first. Folders without a readable card are skipped."""
    root = _trained_dir()
    cards = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not _NAME.fullmatch(folder.name) or not (folder / CARD_FILE).is_file():
            continue
        try:
            card = ModelCard.load(folder)
        except LiverSegError:
            continue  # load_network(name) on this folder explains what is wrong with it
        card.name = folder.name  # the folder is the name; a copied card may say otherwise
        cards.append(card)
    return sorted(cards, key=lambda card: (card.created, card.name), reverse=True)


def model_dir(name: str) -> Path:
    """The folder of model ``name``; a clear error if there is no such model."""
    if not _NAME.fullmatch(name or ""):
        raise LiverSegError(f"{name!r} is not a model name; use letters, digits, '.', '_' or '-'")
    folder = _trained_dir() / name
    if not (folder / CARD_FILE).is_file():
        known = ", ".join(card.name for card in list_cards()) or "none"
        raise LiverSegError(f"no model named {name!r} in {_trained_dir()} (available: {known}); choose one of those or train one")
    return folder


def load_network(name: str) -> tuple[UNet | NetworkPair, ModelCard]:
    """The network of model ``name`` with its weights, in eval mode on the CPU, and its card.

    For a cascade this is the second stage; ``load_model`` gives both.
    """
    folder = model_dir(name)
    card = _named_card(folder, name)
    if card.architecture == PRETRAINED_PAIR:
        return _networks(folder, card)[0], card
    return _weights(folder / WEIGHTS_FILE, card, name), card


def load_model(name: str | None = None) -> tuple[UNet | NetworkPair, ModelCard, UNet | None]:
    """Model ``name`` (``None``: the default model) as network, card and a cascade's first stage (or ``None``).

    The card is read once: the default is chosen from the cards already read for the choice.
    """
    if name is None:
        card = _default_card(list_cards())
        name = card.name
    else:
        card = _named_card(model_dir(name), name)
    return _networks(model_dir(name), card)


def load_folder(folder: Path) -> tuple[UNet | NetworkPair, ModelCard, UNet | None]:
    """A model from any folder (a training output, a cross-validation fold): network, card, first stage."""
    return _networks(Path(folder), ModelCard.load(folder))


def _named_card(folder: Path, name: str) -> ModelCard:
    card = ModelCard.load(folder)
    card.name = name  # the folder is the name; a copied card may say otherwise
    return card


def _networks(folder: Path, card: ModelCard) -> tuple[UNet | NetworkPair, ModelCard, UNet | None]:
    if card.architecture == PRETRAINED_PAIR:
        pair = NetworkPair()
        for network, file in card.pair_weights.items():
            _load_state(getattr(pair, network), folder / file, card, f"the {network} network")
        return pair.eval(), card, None
    first_stage = card.first_stage
    network = _weights(folder / WEIGHTS_FILE, card, card.name)
    return network, card, None if first_stage is None else _weights(folder / FIRST_STAGE_WEIGHTS_FILE, first_stage, card.name)


def _weights(weights: Path, card: ModelCard, name: str) -> UNet:
    """The UNet that ``card`` describes with the state dict in ``weights``, in eval mode."""
    network = UNet(card.channels, num_classes=len(card.labels))
    _load_state(network, weights, card, f"channels {card.channels}, {len(card.labels)} labels", name)
    return network.eval()


def _load_state(network: torch.nn.Module, weights: Path, card: ModelCard, what: str, name: str | None = None) -> None:
    """``network`` given the state dict in ``weights``, with a message that says what to do when it cannot be."""
    name = name or card.name
    if not weights.is_file():
        remedy = ("run make (it fetches and converts the pretrained weights once) or python -m core pretrained"
                  if card.architecture == PRETRAINED_PAIR else "retrain it or remove the folder")
        raise LiverSegError(f"model {name!r} has no weights file {weights.name} in {weights.parent}; {remedy}")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle, zip, EOF and runtime errors for damaged files
        raise LiverSegError(
            f"the weights of model {name!r} ({weights}) cannot be read ({type(error).__name__}); "
            "the file is damaged or not a state dict: restore it or retrain the model"
        ) from None
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LiverSegError(
            f"the weights of model {name!r} ({weights.name}) do not match its card ({what}): {first_line}; "
            "fix card.json or retrain the model"
        ) from None


def save_model(network: torch.nn.Module, card: ModelCard, folder: Path, first_stage: torch.nn.Module | None = None) -> None:
    """Write ``network``'s state dict (and a cascade's first stage, ``first_stage``) and ``card`` into ``folder``.

    Each file is written atomically and the card last, so a folder with a card is complete.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if (first_stage is None) != (card.cascade is None):
        raise ValueError("a cascade card needs its first stage's network, and only a cascade card takes one")
    networks = {WEIGHTS_FILE: network, FIRST_STAGE_WEIGHTS_FILE: first_stage}
    if card.architecture == PRETRAINED_PAIR:
        networks = {file: getattr(network, key) for key, file in card.pair_weights.items()}
    for file in model_files(card)[:-1]:
        with atomic_path(folder / file) as temporary:
            torch.save({key: value.detach().cpu() for key, value in networks[file].state_dict().items()}, temporary)
    card.save(folder)


def default_model(cards: list[ModelCard] | None = None) -> str:
    """The model used when none is named: the saved choice, else the newest shipped, else the newest.

    ``cards``: ``list_cards()`` when the caller has read them already (a page lists them too).
    """
    return _default_card(list_cards() if cards is None else cards).name


def _default_card(cards: list[ModelCard]) -> ModelCard:
    if not cards:
        raise LiverSegError(
            f"no trained model in {_trained_dir()}; train one (python -m core train, or the Train page) "
            "or set LIVERSEG_TRAINED_DIR to a folder of models"
        )
    by_name = {card.name: card for card in cards}
    try:
        chosen = json.loads((_trained_dir() / DEFAULT_FILE).read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError, AttributeError):
        chosen = None  # no choice saved (or an unreadable one): fall back below
    if isinstance(chosen, str) and chosen in by_name:
        return by_name[chosen]
    shipped = [card for card in cards if card.shipped]
    return (shipped or cards)[0]


def set_default_model(name: str) -> None:
    """Make ``name`` the default model (kept in ``TRAINED_DIR/default.json``)."""
    model_dir(name)
    write_atomically(_trained_dir() / DEFAULT_FILE, json.dumps({"model": name}).encode())


def remove_model(name: str) -> None:
    """Delete a locally trained model. Shipped models, and models a queued or running job needs, are refused."""
    folder = model_dir(name)
    if ModelCard.load(folder).shipped:
        raise LiverSegError(f"model {name!r} ships with LiverSeg and cannot be removed; choose another default instead")
    from core.jobs.runner import JobRunner  # here, not above: the jobs register their models through this module

    users = JobRunner().models_in_use().get(name)
    if users:
        raise LiverSegError(f"model {name!r} is needed by training job(s) {', '.join(users)}; wait for them to end "
                            "or cancel them on the Train page, then remove it")
    # Rename first so that no reader ever sees a half-deleted model folder.
    doomed = Path(tempfile.mkdtemp(prefix=f".removing-{name}-", dir=folder.parent))
    os.replace(folder, doomed)
    shutil.rmtree(doomed)


def register_model(folder: Path) -> str:
    """Copy a model folder's files (``model_files``) into ``TRAINED_DIR`` under a new unique name.

    The name is the card's name, with ``-2``, ``-3``... appended when taken. The weights
    are checked against the card first, and the copy appears all at once (built in a
    hidden temporary folder, then renamed), so a model is never visible half-written.
    Nothing else (checkpoints, logs) is copied. Returns the name given.
    """
    source = Path(folder)
    card = ModelCard.load(source)
    root = _trained_dir()
    root.mkdir(parents=True, exist_ok=True)
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", card.name).strip(".-_")[:56] or "model"
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root))
    try:
        for file in model_files(card):  # the model's own files only: no checkpoints, logs or progress
            if (source / file).is_file():  # a missing one: load_folder below says which, in words
                shutil.copy2(source / file, staging / file)
        load_folder(staging)  # refuse weights that do not fit the card before anything is visible
        name = _claim_name(root, base)
        try:
            card.name, card.shipped = name, False
            card.save(staging)
            os.replace(staging, root / name)  # onto the empty claimed folder: atomic on POSIX
        except BaseException:
            (root / name).rmdir()
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return name


def _claim_name(root: Path, base: str) -> str:
    """Create the empty folder ``root/base`` (or ``base-2``, ...): mkdir is atomic, so two callers never get one name."""
    for suffix in range(1, 10_000):
        name = base if suffix == 1 else f"{base}-{suffix}"
        try:
            (root / name).mkdir()
        except FileExistsError:
            continue
        return name
    raise LiverSegError(f"too many models named {base!r} in {root}; remove some first")
