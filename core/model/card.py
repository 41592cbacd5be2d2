"""``ModelCard``: the single source of a model's architecture, grid, window, labels and files.

A model lives in ``trained/NAME/`` as its weights (state dicts, loaded only as weights)
beside ``card.json``: ``model.pt`` for a UNet (and ``first_stage.pt`` for a cascade's first
stage), or the two networks' files for the pretrained pair. Preprocessing, inference and
training read these settings from the card; nothing hard-codes them twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.atomic import write_atomically
from core.errors import LiverSegError
from core.segmentation import LABEL_NAMES

CARD_FILE = "card.json"
WEIGHTS_FILE = "model.pt"
#: A cascade's first stage keeps its weights beside the second stage's.
FIRST_STAGE_WEIGHTS_FILE = "first_stage.pt"
#: The project's own UNet (one stage or a cascade), and the pretrained liver and lesion networks
#: of Tang et al. 2020 (``core.model.multipathway_unet``, ``core.inference.pretrained_pair``).
UNET, PRETRAINED_PAIR = "unet", "pretrained-pair"
PAIR_NETWORKS = ("liver", "lesion")


@dataclass
class ModelCard:
    """What a model is, what it expects, and what it was trained and measured on.

    Attributes:
        name: folder name under ``trained/``.
        channels: feature channels per UNet level (the architecture).
        spacing_mm: isotropic or per-axis voxel size the model works at (RAS order).
        hu_window: HU clipped to this range, then scaled to [-1, 1].
        patch_size: sliding-window patch, in voxels at ``spacing_mm``.
        denoise: optional noise reduction before the window: ``None``, ``"gaussian"`` or ``"median"``.
        labels: label value -> name.
        shipped: shipped models cannot be removed from the app.
        created: ISO timestamp.
        training: data (files, checksums, licences), split, augmentation, epochs, time,
            hardware, command to reproduce.
        metrics: validation metrics, per held-out case and summarised.
        cascade: ``None`` for a single-stage model. For a two-stage cascade (nnU-Net's
            lowres -> fullres, TotalSegmentator's fast -> full): ``{"first_stage": {...},
            "weights": "first_stage.pt", "roi_margin_mm": mm}``, where ``first_stage`` is the first
            stage's own card (its fields as here), which finds the liver on the whole scan at
            its coarse spacing; this card's own settings are the second stage's, which
            segments liver and lesions only within ``roi_margin_mm`` of what the first found.
        lesion_threshold: a predicted lesion is kept only when its mean lesion probability
            (its confidence) is at least this; chosen on held-out cases (see ``metrics``).
        architecture: ``"unet"`` (``channels``, ``patch_size``, ``cascade`` apply) or
            ``"pretrained-pair"`` (``pretrained`` applies; ``spacing_mm`` is the liver network's).
        pretrained: for the pretrained pair: ``source`` (package, wheel, licence, citation, what the
            authors trained on), ``networks`` (``{"liver": {"weights": FILE, "member": PATH in the
            wheel, "sha256": ...}, "lesion": {...}}``), and ``cpu_bfloat16`` (bfloat16 on a CPU was
            measured to keep the labels: the figures; absent where it was not measured).
        purpose: what the model is for, in one sentence a visitor understands (the Models page shows it).
    """

    name: str
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    spacing_mm: list[float] = field(default_factory=lambda: [2.0, 2.0, 2.0])
    hu_window: list[float] = field(default_factory=lambda: [-200.0, 250.0])
    patch_size: list[int] = field(default_factory=lambda: [96, 96, 96])
    denoise: str | None = None
    labels: dict[str, str] = field(default_factory=lambda: {str(value): name for value, name in LABEL_NAMES.items()})
    shipped: bool = False
    created: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    cascade: dict | None = None
    lesion_threshold: float = 0.5
    architecture: str = UNET
    pretrained: dict | None = None
    purpose: str = ""

    def __post_init__(self) -> None:
        problems = self._pair_problems() if self.architecture == PRETRAINED_PAIR else self._unet_problems()
        if len(self.spacing_mm) != 3 or min(self.spacing_mm) <= 0:
            problems.append("spacing_mm must be three positive numbers")
        if len(self.hu_window) != 2 or self.hu_window[0] >= self.hu_window[1]:
            problems.append("hu_window must be [low, high] with low < high")
        if self.denoise not in (None, "gaussian", "median"):
            problems.append("denoise must be null, 'gaussian' or 'median'")
        if not 0.0 <= self.lesion_threshold < 1.0:
            problems.append("lesion_threshold must be in [0, 1)")
        if problems:
            raise LiverSegError(f"model card {self.name!r} is invalid: {'; '.join(problems)}")

    def _unet_problems(self) -> list[str]:
        problems = [] if self.architecture == UNET else [f"architecture must be {UNET!r} or {PRETRAINED_PAIR!r}"]
        divisor = 2 ** (len(self.channels) - 1)
        if len(self.patch_size) != 3 or any(p % divisor for p in self.patch_size):
            problems.append(f"patch_size must be three multiples of {divisor}")
        if self.cascade is not None:
            problems += self._cascade_problems()
        return problems

    def _pair_problems(self) -> list[str]:
        networks = (self.pretrained or {}).get("networks")
        if not isinstance(networks, dict) or set(networks) != set(PAIR_NETWORKS):
            return [f"pretrained.networks must describe {' and '.join(PAIR_NETWORKS)}"]
        if any(not isinstance(networks[key].get("weights"), str) for key in PAIR_NETWORKS):
            return ["each pretrained network needs its weights file"]
        return [] if self.cascade is None else ["the pretrained pair is not a cascade"]

    @property
    def pair_weights(self) -> dict[str, str]:
        """The pretrained pair's weight file per network (``{}`` for a UNet)."""
        if self.architecture != PRETRAINED_PAIR:
            return {}
        return {key: self.pretrained["networks"][key]["weights"] for key in PAIR_NETWORKS}

    @property
    def cpu_bfloat16_measured(self) -> bool:
        """Whether bfloat16 on a CPU was measured to keep this model's labels (``pretrained.cpu_bfloat16``)."""
        return bool((self.pretrained or {}).get("cpu_bfloat16"))

    def _cascade_problems(self) -> list[str]:
        cascade = self.cascade or {}
        problems = []
        if not isinstance(cascade.get("first_stage"), dict):
            return ["cascade.first_stage must be the first stage's card"]
        try:
            ModelCard(**cascade["first_stage"])
        except (LiverSegError, TypeError) as error:
            problems.append(f"cascade.first_stage is not a valid card ({error})")
        if not isinstance(cascade.get("roi_margin_mm"), (int, float)) or cascade["roi_margin_mm"] < 0:
            problems.append("cascade.roi_margin_mm must be a distance in mm, 0 or more")
        if cascade.get("weights") != FIRST_STAGE_WEIGHTS_FILE:
            problems.append(f"cascade.weights must be {FIRST_STAGE_WEIGHTS_FILE!r}")
        return problems

    @property
    def cross_validated(self) -> bool:
        """Whether the card's metrics come from a cross-validation (``core.training.cross_validation``)."""
        return "cross_validation" in (self.metrics or {})

    @property
    def roi_margin_mm(self) -> float | None:
        """How far beyond the first stage's liver a cascade's second stage may look (``None``: one stage)."""
        return None if self.cascade is None else float(self.cascade["roi_margin_mm"])

    def headline_metrics(self) -> dict[str, float]:
        """The card's summary numbers: numeric values of its ``compare-models`` mean (every model compared
        on the same cases by the same rule), else its cross-validation's mean, its ``summary``, or its top level."""
        metrics = self.metrics or {}
        source = ((metrics.get("comparison") or {}).get("mean") or (metrics.get("cross_validation") or {}).get("mean")
                  or metrics.get("summary") or metrics.get("mean") or metrics)
        return {key: value for key, value in source.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}

    def headline_rule(self) -> str:
        """How the headline numbers were measured, in a sentence for the reader."""
        metrics = self.metrics or {}
        if metrics.get("comparison"):
            cases = ", ".join(row["case"] for row in metrics["comparison"]["cases"] if row["measured"] != "trained on it")
            return (f"Mean over {cases}: every labelled case, each scored where this model never saw it (for a case it "
                    "was trained on, by its leave-one-case-out fold); the same cases and rule for every model compared.")
        if self.cross_validated:
            return "Mean of a leave-one-case-out cross-validation: each case scored by a model trained without it."
        return "Measured on held-out cases the model was not trained on."

    def cases_text(self) -> str | None:
        """``"trained on 3 cases, 1 held out"`` from the card's data records (their ``role``), ``None`` without records."""
        data = (self.training or {}).get("data")
        if self.architecture == PRETRAINED_PAIR and not data:
            return "trained by its authors on their own clinical scans"
        if not isinstance(data, list):
            return None
        held_out = sum(isinstance(item, dict) and item.get("role") == "validation" for item in data)
        trained = len(data) - held_out
        return f"trained on {trained} case{'s' if trained != 1 else ''}" + (f", {held_out} held out" if held_out else "")

    def grid_text(self) -> str:
        """``"voxels of 2 × 2 × 2 mm · patches of 64 × 64 × 64 voxels"``."""
        if self.architecture == PRETRAINED_PAIR:
            return "liver at 3 × 3 × 3 mm on the whole abdomen · lesions at 1 × 1 × 3 mm in tiles of 180 × 172 × 86 voxels"
        return (f"voxels of {' × '.join(f'{value:g}' for value in self.spacing_mm)} mm · "
                f"patches of {' × '.join(str(value) for value in self.patch_size)} voxels")

    def architecture_text(self) -> str:
        """The network and its grid in words, for the Models page."""
        if self.architecture == PRETRAINED_PAIR:
            source = (self.pretrained or {}).get("source", {})
            return (f"two pretrained 3D U-Nets ({source.get('package', 'pretrained')}): the whole liver at 3 mm on the "
                    "abdomen, then lesions at 1 × 1 × 3 mm inside the liver")
        return f"UNet, channels {self.channels}, {self.grid_text()}; noise reduction: {self.denoise or 'none'}"

    @property
    def first_stage(self) -> ModelCard | None:
        """The first stage's card for a cascade, ``None`` for a single-stage model."""
        return ModelCard(**self.cascade["first_stage"]) if self.cascade else None

    @classmethod
    def load(cls, folder: Path) -> ModelCard:
        path = Path(folder) / CARD_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LiverSegError(f"no model card at {path}; a model folder needs {CARD_FILE} beside {WEIGHTS_FILE}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise LiverSegError(f"model card {path} is not valid JSON ({error}); restore it from git or retrain") from None
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown or "name" not in data:
            raise LiverSegError(f"model card {path} has unknown or missing fields ({sorted(unknown) or 'name'})")
        return cls(**data)

    def save(self, folder: Path) -> None:
        """Write ``card.json`` atomically: readers see the old card or the new one, never half."""
        write_atomically(Path(folder) / CARD_FILE, json.dumps(asdict(self), indent=2).encode())

