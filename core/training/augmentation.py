"""Training augmentation with TorchIO, including synthetic liver lesions.

Applied to whole preprocessed subjects (after ``core.inference.preprocessing.preprocessing``,
so intensities are the card's HU window scaled to [-1, 1]) before patches are
sampled, in this order:

1. ``SyntheticLesions``: lesions painted into the liver with label 2 (Hu et al.,
   CVPR 2023). First, so that the spatial and intensity transforms deform and
   degrade them exactly like real tissue, and so that the label sampler can
   centre patches on them. Contrasts are given in HU and converted with the
   card's window.
2. ``RandomHUShift``: a random shift and scale of the HU values around soft tissue.
   Contrast phase moves the liver from about 50 HU (no contrast) to 120 HU (portal
   venous); without this a model trained on one phase fails on the other.
3. Spatial: ``RandomAffine`` (rotation, scaling, translation) and
   ``RandomElasticDeformation``; images linear, labels nearest.
4. Intensity: ``RandomGamma``, ``RandomBiasField``, ``RandomNoise``, ``RandomBlur``.
   Gamma and the multiplicative bias field assume non-negative intensities, so
   they run on the window mapped to [0, 1] and the result is mapped back and
   clamped to [-1, 1], the range inference sees.

One ``strength`` knob scales every range and probability: 0 turns augmentation
off, 1 is the default, 2 is aggressive.
"""

from __future__ import annotations

import numpy as np
import torch
import torchio as tio
from scipy import ndimage

from core.segmentation import BACKGROUND, LESION, LIVER

#: Lesion radius range in mm: from small metastases to large primary tumours (LiTS spans both).
RADIUS_MM = (4.0, 30.0)
#: Contrast to the surrounding liver, HU: most liver lesions are hypodense in portal venous phase.
HYPODENSE_HU = (15.0, 90.0)
HYPERDENSE_HU = (15.0, 60.0)
#: Texture: standard deviation of the smoothed noise inside a lesion, HU.
TEXTURE_HU = (3.0, 15.0)


class SyntheticLesions(tio.Transform):
    """Paint random liver lesions into the image and mark them 2 in the label map.

    After Hu et al., "Label-free liver tumor segmentation" (CVPR 2023): each lesion
    is an ellipsoid whose surface is deformed by smooth noise, filled with the
    liver's own intensity shifted by a contrast (hypodense in most cases, sometimes
    hyperdense or a hypodense core with an enhancing rim), given a texture of
    smoothed noise, and blended in through a blurred edge so that it has no
    artificial step. Lesions are confined to the liver (voxels labelled 1 or 2).

    Args:
        hu_window: the card's window, to convert HU contrasts to the [-1, 1] scale.
        max_lesions: 1 to this many lesions per subject.
        image_name: the image key in the subject.
        label_name: the label map key.
        p: probability of painting at all.
    """

    def __init__(
        self,
        hu_window: tuple[float, float],
        max_lesions: int = 4,
        image_name: str = "image",
        label_name: str = "label",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.hu_window = tuple(float(v) for v in hu_window)
        self.max_lesions = max_lesions
        self.image_name = image_name
        self.label_name = label_name
        self.args_names = ["hu_window", "max_lesions", "image_name", "label_name"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        image, label = subject[self.image_name], subject[self.label_name]
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
        data = image.data[0].numpy().astype(np.float32, copy=True)
        labels = label.data[0].numpy().copy()
        liver = labels > BACKGROUND
        if not liver.any():
            return subject
        low, high = self.hu_window
        hu_per_unit = (high - low) / 2.0  # [-1, 1] spans the window
        liver_level = float(np.median(data[labels == LIVER] if (labels == LIVER).any() else data[liver]))
        spacing = np.asarray(image.spacing, dtype=float)
        for _ in range(int(rng.integers(1, self.max_lesions + 1))):
            self._paint(data, labels, liver, liver_level, hu_per_unit, spacing, rng)
        image.set_data(torch.from_numpy(np.clip(data, -1.0, 1.0))[np.newaxis])
        label.set_data(torch.from_numpy(labels)[np.newaxis].to(label.data.dtype))
        return subject

    def _paint(self, data, labels, liver, liver_level, hu_per_unit, spacing, rng) -> None:
        inside = np.argwhere(liver)
        centre = inside[rng.integers(len(inside))]
        radius_mm = np.exp(rng.uniform(*np.log(RADIUS_MM)))
        radii = radius_mm * rng.uniform(0.7, 1.3, size=3) / spacing  # voxels, per axis
        reach = np.ceil(radii * 1.5).astype(int) + 2
        lo = np.maximum(centre - reach, 0)
        hi = np.minimum(centre + reach + 1, data.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        grid = np.meshgrid(*[np.arange(a, b) - c for a, b, c in zip(lo, hi, centre)], indexing="ij")
        # A random rotation, so that lesions are not all aligned with the axes.
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        offsets = np.stack([g.ravel() for g in grid]) * spacing[:, None]
        rotated = (rotation @ offsets) / (radii * spacing)[:, None]
        distance = np.sqrt((rotated**2).sum(0)).reshape(grid[0].shape)
        # Smooth noise bends the ellipsoid's surface: lobulated, irregular outlines.
        bumps = ndimage.gaussian_filter(rng.normal(size=distance.shape), sigma=max(1.0, float(radii.mean()) / 2))
        bumps *= rng.uniform(0.1, 0.35) / (bumps.std() + 1e-6)
        distance = distance + bumps
        edge = rng.uniform(0.08, 0.3)  # width of the blurred edge, as a fraction of the radius
        alpha = np.clip((1.0 - distance) / edge, 0.0, 1.0) * liver[box]
        if not (alpha > 0.5).any():
            return
        kind = rng.choice(["hypodense", "hyperdense", "rim"], p=[0.8, 0.1, 0.1])
        if kind == "hyperdense":
            contrast = rng.uniform(*HYPERDENSE_HU)
        else:
            contrast = -rng.uniform(*HYPODENSE_HU)
        fill = np.full(distance.shape, liver_level + contrast / hu_per_unit, dtype=np.float32)
        if kind == "rim":
            rim = np.clip(1.0 - np.abs(distance - 0.85) / 0.15, 0.0, 1.0)
            fill += rim * rng.uniform(30.0, 80.0) / hu_per_unit
        texture = ndimage.gaussian_filter(rng.normal(size=distance.shape), sigma=rng.uniform(0.7, 2.0))
        fill += texture / (texture.std() + 1e-6) * rng.uniform(*TEXTURE_HU) / hu_per_unit
        region = data[box]
        # Keep the scan's own noise and structure under the lesion, only shifted: a real lesion
        # is imaged through the same scanner noise as the liver around it.
        data[box] = region + alpha * (fill - liver_level - (region - liver_level) * 0.5)
        labels[box][alpha > 0.5] = LESION


class RandomHUShift(tio.Transform):
    """Shift and scale intensities as if in HU: ``hu' = (hu - centre) * scale + centre + shift``.

    Works on the window-scaled image ([-1, 1]) with the shift converted through the
    window, and clamps back to [-1, 1]. Labels are untouched.

    Args:
        hu_window: the card's window.
        shift_hu: the shift is drawn from [-shift_hu, shift_hu].
        scale: the scale is drawn from [1 - scale, 1 + scale].
        centre_hu: the HU value the scale keeps fixed (soft tissue).
    """

    def __init__(self, hu_window: tuple[float, float], shift_hu: float = 60.0, scale: float = 0.15,
                 centre_hu: float = 40.0, image_name: str = "image", **kwargs) -> None:
        super().__init__(**kwargs)
        self.hu_window, self.shift_hu, self.scale, self.centre_hu = tuple(hu_window), shift_hu, scale, centre_hu
        self.image_name = image_name
        self.args_names = ["hu_window", "shift_hu", "scale", "centre_hu", "image_name"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        low, high = self.hu_window
        hu_per_unit = (high - low) / 2.0
        centre = (self.centre_hu - low) / hu_per_unit - 1.0
        shift = float(torch.empty(1).uniform_(-self.shift_hu, self.shift_hu)) / hu_per_unit
        scale = float(torch.empty(1).uniform_(1 - self.scale, 1 + self.scale))
        image = subject[self.image_name]
        image.set_data(((image.data - centre) * scale + centre + shift).clamp(-1.0, 1.0))
        return subject


def augmentation(strength: float, hu_window: tuple[float, float], synthetic_lesions: float) -> tio.Compose:
    """The training augmentation, scaled by ``strength`` (0 = none).

    Args:
        strength: scales ranges and probabilities; 1 is the default.
        hu_window: the card's HU window (for the synthetic lesions' contrast).
        synthetic_lesions: probability of painting synthetic lesions into a subject.
    """
    transforms: list[tio.Transform] = []
    if synthetic_lesions > 0:
        transforms.append(SyntheticLesions(hu_window, p=min(1.0, synthetic_lesions)))
    if strength > 0:
        s = float(strength)
        p = min(1.0, 0.3 * s)
        transforms += [
            RandomHUShift(hu_window, shift_hu=60.0 * s, scale=0.15 * s, p=min(1.0, 0.8 * s)),
            tio.RandomAffine(
                scales=0.15 * s,
                degrees=15 * s,
                translation=10 * s,
                default_pad_value=-1.0,  # air after scaling: the window's lower end
                p=min(1.0, 0.5 * s),
            ),
            tio.RandomElasticDeformation(num_control_points=7, max_displacement=6 * s, p=0.5 * p),
            tio.RescaleIntensity(out_min_max=(0.0, 1.0), in_min_max=(-1.0, 1.0)),
            tio.RandomGamma(log_gamma=0.3 * s, p=p),
            tio.RandomBiasField(coefficients=0.3 * s, p=p),
            tio.RandomNoise(std=(0.0, 0.03 * s), p=p),
            tio.RandomBlur(std=(0.0, 1.5 * s), p=p),
            tio.RescaleIntensity(out_min_max=(-1.0, 1.0), in_min_max=(0.0, 1.0)),
            tio.Clamp(out_min=-1.0, out_max=1.0),
        ]
    return tio.Compose(transforms)


def describe(strength: float, synthetic_lesions: float) -> dict:
    """The augmentation settings for the model card."""
    return {
        "strength": strength,
        "synthetic_lesions_probability": synthetic_lesions,
        "synthetic_lesions": "Hu et al. CVPR 2023 style: noise-deformed ellipsoids, "
        f"radius {RADIUS_MM[0]:g}-{RADIUS_MM[1]:g} mm, hypodense {HYPODENSE_HU[0]:g}-{HYPODENSE_HU[1]:g} HU "
        "(80%), hyperdense or rim-enhancing (10% each), smoothed-noise texture, blurred edge",
        "transforms": "RandomHUShift (+-60 HU x strength, scale +-15%), RandomAffine, RandomElasticDeformation, "
        "RandomGamma, RandomBiasField, RandomNoise, RandomBlur"
        if strength > 0
        else "none",
    }
