"""The pretrained liver and lesion networks: fetched once at set-up, checked, converted to PyTorch.

Their card (``trained/kul-liver-lesion-v1/card.json``, ``pretrained``) names the source: the
wheel of ``pyliverlesionseg 0.3`` on the package index (KU Leuven, Apache-2.0; Tang et al.,
Eur J Nucl Med Mol Imaging 47, 2020), which ships both networks as Keras 2.2 weight files
(HDF5), each file's path in the wheel and its sha256. The wheel is downloaded without its
dependencies (it needs TensorFlow 1 and Python < 3.7, neither installed here) and never
installed: ``h5py`` reads the two files and their convolutions become the state dicts of
``core.model.multipathway_unet``. Keras numbers layers as it builds them (``conv3d_1``,
``conv3d_2``, ...), the order ``MultiPathwayUNet.creation_order`` gives; every shape is
checked on the way. The converted files sit beside the card; afterwards all works offline.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from core import config
from core.atomic import atomic_path
from core.errors import LiverSegError
from core.imageio.wheels import fetch_wheel
from core.model.card import PRETRAINED_PAIR, ModelCard
from core.model.multipathway_unet import ARCHITECTURES, MultiPathwayUNet


def keras_convolutions(data: bytes) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[float, ...]]:
    """The (kernel, bias) of every ``conv3d_N`` layer of a Keras 2 weight file, by N, and its recorded voxel size."""
    import h5py  # only needed at set-up

    def text(value: str | bytes) -> str:
        return value.decode() if isinstance(value, bytes) else value

    with h5py.File(io.BytesIO(data), "r") as weights:
        layers = {}
        for name in map(text, weights.attrs["layer_names"]):
            match = re.fullmatch(r"conv3d_(\d+)", name)
            if match:
                group = weights[name]
                kernel, bias = (np.asarray(group[text(weight)]) for weight in group.attrs["weight_names"])
                layers[int(match.group(1))] = (kernel, bias)
        voxel_size = tuple(float(v) for v in np.asarray(weights["header/voxel_size"]))
    return [layers[number] for number in sorted(layers)], voxel_size


def state_dict(network: str, description: dict, data: bytes) -> dict[str, torch.Tensor]:
    """The pair's ``network`` (``"liver"``, ``"lesion"``) as a PyTorch state dict, from its Keras file's bytes.

    ``description``: the card's ``pretrained.networks[network]`` (``member``, ``sha256``, ``spacing_mm``).
    """
    file = Path(description["member"]).name
    digest = hashlib.sha256(data).hexdigest()
    if digest != description["sha256"]:
        raise LiverSegError(f"{file} has sha256 {digest[:12]}..., not {description['sha256'][:12]}... as the model card "
                            f"says; delete {config.CACHE_DIR.name}/wheels and run make again")
    layers, voxel_size = keras_convolutions(data)
    if voxel_size != tuple(description["spacing_mm"]):
        raise LiverSegError(f"{file} was trained at {voxel_size} mm, not {description['spacing_mm']} as the model card says")
    model = MultiPathwayUNet(ARCHITECTURES[network])
    convolutions = model.creation_order()
    if len(layers) != len(convolutions):
        raise LiverSegError(f"{file} has {len(layers)} convolutions where the {network} network has {len(convolutions)}")
    with torch.no_grad():
        for convolution, (kernel, bias) in zip(convolutions, layers):
            # Keras keeps kernels as (x, y, z, in, out), PyTorch as (out, in, x, y, z); both correlate: no flip.
            weight = torch.from_numpy(kernel).permute(4, 3, 0, 1, 2)
            if weight.shape != convolution.weight.shape or bias.shape != tuple(convolution.bias.shape):
                raise LiverSegError(f"{file}: a kernel of shape {kernel.shape} where the {network} network has "
                                    f"{tuple(convolution.weight.shape)}")
            convolution.weight.copy_(weight)
            convolution.bias.copy_(torch.from_numpy(bias))
    return {key: value.contiguous() for key, value in model.state_dict().items()}


def ensure_converted(folder: Path, cache_dir: Path | None = None) -> list[Path]:
    """The converted weights of the pretrained pair whose card is in ``folder``, fetching and converting
    what is missing; idempotent, and offline once done."""
    card = ModelCard.load(folder)
    if card.architecture != PRETRAINED_PAIR:
        raise LiverSegError(f"model {card.name!r} is not a pretrained pair")
    targets = {key: Path(folder) / file for key, file in card.pair_weights.items()}
    missing = [key for key, path in targets.items() if not path.is_file()]
    if missing:
        source = card.pretrained["source"]
        wheels = (cache_dir or config.CACHE_DIR) / "wheels"
        wheel = fetch_wheel(source["package"], source["wheel"], wheels, "the pretrained networks", ignore_requires_python=True)
        with zipfile.ZipFile(wheel) as archive:
            for key in missing:
                description = card.pretrained["networks"][key]
                weights = state_dict(key, description, archive.read(description["member"]))
                with atomic_path(targets[key]) as temporary:
                    torch.save(weights, temporary)
    return list(targets.values())


def ensure_all_converted() -> list[Path]:
    """``ensure_converted`` for every pretrained pair in ``config.TRAINED_DIR`` (``make`` calls it at set-up)."""
    folders = [card_file.parent for card_file in sorted(config.TRAINED_DIR.glob("*/card.json"))]
    return [path for folder in folders if ModelCard.load(folder).architecture == PRETRAINED_PAIR
            for path in ensure_converted(folder)]
