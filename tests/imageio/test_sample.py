import nibabel as nib
import numpy as np

from core.imageio import sample


def test_sample_converts_with_the_known_label_counts(sample_paths):
    scan_path, labels_path = sample_paths
    image, labels = nib.load(scan_path), nib.load(labels_path)
    assert image.shape == labels.shape == (128, 128, 128)
    assert np.bincount(np.asarray(labels.dataobj).ravel()).tolist() == [1_481_801, 485_268, 130_083]
    assert nib.aff2axcodes(image.affine) == ("P", "L", "S")
    assert np.allclose(image.header.get_zooms(), 1.5)


def test_sample_is_idempotent_and_offline_once_cached(sample_paths, monkeypatch):
    scan_path, _ = sample_paths
    before = scan_path.stat().st_mtime_ns
    monkeypatch.setattr(sample, "fetch_wheel", lambda *args: (_ for _ in ()).throw(AssertionError("downloaded again")))
    assert sample.ensure_sample()[0] == scan_path
    assert scan_path.stat().st_mtime_ns == before


def test_conversion_from_the_cached_wheel_alone(sample_paths, tmp_path, monkeypatch):
    from core import config
    from core.imageio import wheels as wheels_module

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / sample.WHEEL_NAME).write_bytes((config.CACHE_DIR / "wheels" / sample.WHEEL_NAME).read_bytes())
    monkeypatch.setattr(wheels_module.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network used")))
    scan_path, labels_path = sample.ensure_sample(tmp_path)
    assert np.array_equal(np.asarray(nib.load(labels_path).dataobj), np.asarray(nib.load(sample_paths[1]).dataobj))
