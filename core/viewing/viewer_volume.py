"""The scan and its label maps packed once for the browser's viewer, which draws every picture itself.

Why raw voxels and not pictures: every display change (window, overlay, opacity, plane,
zoom) used to rerun the page and redraw a plane's JPEGs on the server, 4-5 s on a
512 x 512 x 129 scan. Here the browser gets the CT once (int16 HU, zlib-compressed)
and the labels once per result and reference (uint8 codes), and ``widgets/slice_viewer.js``
cuts any plane, windows and colours it, and reads HU and labels under the mouse
without asking the server.

Two packs, not one: the CT stays the same while the labels change (a reference
uploaded), and the page mounts each pack as its own element, so Streamlit's message
cache sends an unchanged pack only once.

Memory stays bounded whatever the scan: at most ``MAX_VOXELS`` voxels reach the browser
(a 512 x 512 x 129 scan at full resolution); a larger scan is thinned by one integer step
along its two longest axes (a 512 x 512 x 500 scan: every other voxel in-plane), and the
header says so (``step``).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib

import numpy as np

from core.viewing.slices import DisplayVolume

#: Voxels sent to the browser, at most: 48 M int16 are 96 MB there, and about 30 MB on the wire.
MAX_VOXELS = 48_000_000
#: HU the viewer can show: air to dense bone; outside this range the CT is clipped (a metal implant reads 3071 HU).
HU_RANGE = (-1024, 3071)
#: Label codes: the model's label, plus 3 x the reference's label when there is one (so 0-8).
REFERENCE_FACTOR = 3


def thinning_step(shape: tuple[int, ...], max_voxels: int = MAX_VOXELS) -> int:
    """The smallest step along the two longest axes that brings ``shape`` within ``max_voxels``."""
    longest = sorted(range(3), key=lambda axis: -shape[axis])[:2]
    step = 1
    while math.prod(math.ceil(n / step) if axis in longest else n for axis, n in enumerate(shape)) > max_voxels:
        step += 1
    return step


def _thinned(array: np.ndarray, step: int) -> np.ndarray:
    if step == 1:
        return array
    longest = sorted(range(3), key=lambda axis: -array.shape[axis])[:2]
    return array[tuple(slice(None, None, step) if axis in longest else slice(None) for axis in range(3))]


def _pack(header: dict, array: np.ndarray) -> bytes:
    """``uint32 header length, header JSON, zlib body``; the header's ``id`` names the body (a hash), so a
    browser decodes a pack once however often the page is drawn. Level 1: a 512 x 512 x 129 CT packs in
    about half a second, and higher levels gain little on CT noise."""
    body = zlib.compress(np.ascontiguousarray(array).tobytes(), 1)
    header = {**header, "id": hashlib.blake2b(body, digest_size=12).hexdigest()}
    head = json.dumps(header).encode()
    return struct.pack("<I", len(head)) + head + body


def _steps(shape: tuple[int, ...], max_voxels: int) -> list[int]:
    step = thinning_step(shape, max_voxels)
    longest = sorted(range(3), key=lambda axis: -shape[axis])[:2]
    return [step if axis in longest else 1 for axis in range(3)]


def pack_voxel(volume: DisplayVolume, canonical_voxel, max_voxels: int = MAX_VOXELS) -> tuple[int, int, int]:
    """A canonical voxel index on the packs' (possibly thinned) grid."""
    steps = _steps(volume.hu.shape, max_voxels)
    return tuple(int(canonical_voxel[axis]) // steps[axis] for axis in range(3))  # type: ignore[return-value]


def geometry(volume: DisplayVolume, max_voxels: int = MAX_VOXELS) -> dict:
    """Shape, voxel size and position of what is sent, in canonical (R, A, S) order, for the viewer's header."""
    step = thinning_step(volume.hu.shape, max_voxels)
    shape = _thinned(volume.hu, step).shape
    steps = _steps(volume.hu.shape, max_voxels)
    spacing = volume.spacing
    return {
        "shape": list(shape),
        "step": step,
        "spacingMm": [float(spacing[axis]) * steps[axis] for axis in range(3)],
        # RAS+ mm of voxel i along an axis: origin + i * delta (the nearest axis's component for an oblique scan).
        "originMm": [float(volume.affine[axis, 3]) for axis in range(3)],
        "deltaMm": [float(volume.affine[axis, axis]) * steps[axis] for axis in range(3)],
    }


def ct_pack(volume: DisplayVolume, max_voxels: int = MAX_VOXELS) -> bytes:
    """The CT as int16 little-endian HU, C order over (R, A, S), clipped to ``HU_RANGE``."""
    step = thinning_step(volume.hu.shape, max_voxels)
    hu = np.clip(_thinned(volume.hu, step), *HU_RANGE).astype("<i2")
    return _pack({"kind": "ct", **geometry(volume, max_voxels), "huRange": list(HU_RANGE)}, hu)


def label_pack(volume: DisplayVolume, max_voxels: int = MAX_VOXELS) -> bytes:
    """The model's labels, plus ``REFERENCE_FACTOR`` x the reference's where there is one, as uint8 on the CT's grid."""
    step = thinning_step(volume.hu.shape, max_voxels)
    codes = _thinned(volume.labels, step).astype(np.uint8)
    if volume.reference is not None:
        codes = codes + REFERENCE_FACTOR * _thinned(volume.reference, step).astype(np.uint8)
    return _pack({"kind": "labels", "shape": list(codes.shape), "hasReference": volume.reference is not None}, codes)


def unpack(data: bytes) -> tuple[dict, np.ndarray]:
    """A pack read back (what the browser does), for tests: the header and the flat body."""
    (length,) = struct.unpack_from("<I", data)
    header = json.loads(data[4:4 + length])
    dtype = "<i2" if header["kind"] == "ct" else np.uint8
    return header, np.frombuffer(zlib.decompress(data[4 + length:]), dtype).reshape(header["shape"])
