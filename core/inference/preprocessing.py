"""The model card's TorchIO transforms, shared by inference and training.

Resampling to the card's spacing, canonical RAS+ orientation, optional noise
reduction, then the HU window scaled to [-1, 1]. Training adds augmentation
after these; inference inverts only the geometry (``core.inference.segmenter``).
"""

from __future__ import annotations

import numpy as np
import torch
import torchio as tio
from scipy import ndimage

from core.imageio.sitk_image import median_3
from core.model.card import ModelCard


class Denoise(tio.IntensityTransform):
    """Noise reduction on the HU values: a Gaussian (sigma 0.5 voxel) or a 3x3x3 median filter."""

    def __init__(self, method: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.method = method
        self.args_names = ["method"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for image in self.get_images(subject):
            array = image.data[0].numpy()
            if self.method == "median":
                smoothed = median_3(array)
            else:
                smoothed = ndimage.gaussian_filter(array, sigma=0.5)
            image.set_data(torch.from_numpy(np.ascontiguousarray(smoothed))[np.newaxis])
        return subject


def preprocessing(card: ModelCard) -> tio.Compose:
    """The deterministic transforms that bring a scan onto the model's grid and scale."""
    low, high = card.hu_window
    # Resampling first: reorienting a full-resolution scan copies all of it (a 512x512x129 DICOM
    # series took 1.1 s this way round, 0.2 s the other, for the same labels), the coarse grid is small.
    transforms: list[tio.Transform] = [tio.Resample(tuple(card.spacing_mm)), tio.ToCanonical()]
    if card.denoise:
        transforms.append(Denoise(card.denoise))
    transforms += [
        tio.Clamp(out_min=low, out_max=high),
        tio.RescaleIntensity(out_min_max=(-1.0, 1.0), in_min_max=(low, high)),
    ]
    return tio.Compose(transforms)
