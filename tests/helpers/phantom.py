"""``make_phantom``: a synthetic abdominal CT with its labels, for tests and demos.

Deterministic by seed, in realistic Hounsfield units, and anatomically
asymmetric (the liver on the patient's right, the spleen on the left, the spine
at the back, the liver above the kidneys) so that a flipped or swapped axis
shows. Made in RAS+ and then stored in whatever axis order the caller asks.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from core.scan import Scan
from core.segmentation import LESION, LIVER

# Tissue HU, from the usual abdominal CT values (portal venous phase).
AIR, FAT, MUSCLE, LIVER_HU, SPLEEN_HU, KIDNEY_HU, BONE_HU, LESION_HU = -1000, -100, 45, 60, 55, 150, 600, 15


def make_phantom(
    shape: tuple[int, int, int] = (96, 80, 64),
    spacing: tuple[float, float, float] = (4.0, 4.0, 5.0),
    seed: int = 0,
    lesions: int = 3,
    axcodes: str = "RAS",
    noise_hu: float = 12.0,
) -> tuple[Scan, np.ndarray]:
    """A phantom scan and its uint8 labels (0 background, 1 liver, 2 lesion).

    Args:
        shape: voxels along R-L, P-A and I-S (before reordering to ``axcodes``).
        spacing: voxel size in mm along those axes.
        seed: the same seed gives the same phantom.
        lesions: number of hypodense lesions placed inside the liver.
        axcodes: the stored orientation, e.g. ``"LPS"`` or ``"SAR"``.
        noise_hu: standard deviation of the Gaussian noise added.
    """
    rng = np.random.default_rng(seed)
    spacing_arr = np.asarray(spacing, dtype=float)
    extent = np.asarray(shape) * spacing_arr
    # Millimetres from the volume centre, RAS+: x grows towards the patient's Right,
    # y towards Anterior, z towards Superior.
    x, y, z = np.meshgrid(*[(np.arange(n) + 0.5) * s - e / 2 for n, s, e in zip(shape, spacing_arr, extent)], indexing="ij")
    half_width, half_depth = 0.45 * extent[0], 0.38 * extent[1]

    def ellipsoid(cx, cy, cz, rx, ry, rz):
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1

    hu = np.full(shape, AIR, dtype=np.float32)
    body = (x / half_width) ** 2 + (y / half_depth) ** 2 <= 1
    inner = (x / (half_width - 12)) ** 2 + (y / (half_depth - 12)) ** 2 <= 1
    hu[body] = MUSCLE
    hu[body & ~inner] = FAT
    hu[inner] = FAT + 20  # visceral fat and bowel, between fat and soft tissue

    liver = ellipsoid(0.35 * half_width, 0.1 * half_depth, 0.15 * extent[2], 0.45 * half_width, 0.6 * half_depth, 0.3 * extent[2])
    liver &= x > -0.2 * half_width  # a flat medial edge: the liver is not symmetric
    spleen = ellipsoid(-0.6 * half_width, -0.3 * half_depth, 0.15 * extent[2], 0.18 * half_width, 0.3 * half_depth, 0.15 * extent[2])
    kidneys = np.zeros(shape, bool)
    for side in (-1, 1):
        kidneys |= ellipsoid(side * 0.4 * half_width, -0.55 * half_depth, -0.2 * extent[2], 0.12 * half_width, 0.2 * half_depth, 0.18 * extent[2])
    spine = ((x / 14) ** 2 + ((y + 0.8 * half_depth) / 14) ** 2) <= 1
    hu[liver] = LIVER_HU
    hu[spleen & ~liver] = SPLEEN_HU
    hu[kidneys & ~liver] = KIDNEY_HU
    hu[spine] = BONE_HU

    labels = np.zeros(shape, np.uint8)
    labels[liver] = LIVER
    inside = np.argwhere(liver)
    for _ in range(lesions if len(inside) else 0):
        centre = inside[rng.integers(len(inside))] * spacing_arr - extent / 2 + spacing_arr / 2
        radius = rng.uniform(6, 16)
        lesion = liver & ellipsoid(*centre, radius, radius * rng.uniform(0.7, 1.3), radius * rng.uniform(0.7, 1.3))
        labels[lesion] = LESION
        hu[lesion] = LESION_HU + rng.uniform(-15, 15)
    hu += rng.normal(0, noise_hu, shape).astype(np.float32)

    affine = np.diag([*spacing_arr, 1.0])
    affine[:3, 3] = -extent / 2 + spacing_arr / 2
    return _reorient(Scan(hu, affine, source=f"phantom-seed{seed}"), labels, axcodes)


def _reorient(scan: Scan, labels: np.ndarray, axcodes: str) -> tuple[Scan, np.ndarray]:
    """Store the RAS+ phantom in the axis order and directions of ``axcodes``."""
    transform = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(tuple(axcodes)))
    voxels = nib.orientations.apply_orientation(scan.voxels, transform)
    affine = scan.affine @ nib.orientations.inv_ornt_aff(transform, scan.shape)
    reordered = nib.orientations.apply_orientation(labels, transform)
    return (
        Scan(np.ascontiguousarray(voxels, dtype=np.float32), affine, source=scan.source),
        np.ascontiguousarray(reordered, dtype=np.uint8),
    )
