import threading
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

import core.inference.segmenter as inference
from core import config
from core.errors import LiverSegError
from core.inference.segmenter import OOM_NOTE, Segmenter, resolve_device
from core.inference.sliding_window import cpu_has_native_bfloat16
from core.model import registry
from core.model.card import ModelCard
from core.model.unet import UNet
from core.scan import Scan
from tests.helpers.phantom import make_phantom

# Intensities that stand in for the three classes, inside the card's window [-200, 250] HU.
CLASS_HU = {0: -100.0, 1: 100.0, 2: 250.0}
CARD = ModelCard(name="stand-in", channels=[8, 16], spacing_mm=[3.0, 3.0, 3.0], hu_window=[-200.0, 250.0], patch_size=[32, 32, 32])


class NearestIntensity(nn.Module):
    """A stand-in "network" that needs no training: each voxel is the class whose intensity is nearest.

    Lesion intensity is the brightest so that interpolation across the liver's border
    (background to liver) never passes through it.
    """

    def __init__(self, card: ModelCard, sharpness: float = 100.0) -> None:
        super().__init__()
        self.sharpness = sharpness
        low, high = card.hu_window
        scaled = [2 * (CLASS_HU[c] - low) / (high - low) - 1 for c in sorted(CLASS_HU)]
        self.register_buffer("centres", torch.tensor(scaled).view(1, -1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.sharpness * (x - self.centres) ** 2


def class_scan(axcodes: str, seed: int = 1, shape=(48, 40, 32), spacing=(4.0, 4.0, 5.0)) -> tuple[Scan, np.ndarray]:
    """The phantom in ``axcodes`` with each class drawn in its stand-in intensity."""
    scan, labels = make_phantom(shape, spacing=spacing, axcodes=axcodes, seed=seed, lesions=3)
    hu = np.choose(labels, [CLASS_HU[0], CLASS_HU[1], CLASS_HU[2]]).astype(np.float32)
    return Scan(hu, scan.affine, source=scan.source), labels


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter.from_network(NearestIntensity(CARD), CARD)


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "SAR", "ILA", "PIR", "LAS"])
def test_labels_stay_aligned_with_the_input_in_every_orientation(segmenter, axcodes):
    scan, truth = class_scan(axcodes)
    result = segmenter.segment(scan)
    assert result.labels.shape == scan.shape and result.labels.dtype == np.uint8
    assert dice(result.labels > 0, truth > 0) > 0.95
    assert dice(result.labels == 2, truth == 2) > 0.8
    # The phantom is asymmetric: the same labels mirrored along any axis would fail the check above.
    for axis in range(3):
        assert dice(np.flip(result.labels, axis) > 0, truth > 0) < 0.9


def test_result_reports_device_stages_and_progress(segmenter):
    scan, _ = class_scan("RAS")
    calls = []
    result = segmenter.segment(scan, progress=lambda stage, fraction: calls.append((stage, fraction)))
    assert result.device == "cpu" and result.model == "stand-in"
    assert list(result.seconds) == ["preprocess", "infer", "postprocess"] and all(s >= 0 for s in result.seconds.values())
    stages = [stage for stage, _ in calls]
    assert stages[0] == "preprocess" and stages[-1] == "postprocess"
    assert sorted(set(stages), key=stages.index) == ["preprocess", "infer", "postprocess"]
    for stage in ("preprocess", "infer", "postprocess"):
        fractions = [f for s, f in calls if s == stage]
        assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0


def test_post_processing_notes_reach_the_result(segmenter):
    scan, truth = class_scan("RAS")
    hu = scan.voxels.copy()
    hu[:3, :3, :3] = CLASS_HU[1]  # a corner of "liver" far from the organ
    result = segmenter.segment(Scan(hu, scan.affine))
    assert not result.labels[:3, :3, :3].any()
    assert any(note.startswith("removed 1 region(s) apart from the liver") for note in result.notes)


def test_resampling_only_the_box_around_the_organ_changes_nothing(monkeypatch):
    """Model voxels (6 mm) larger than the scan's (2 mm), as in a real CT, so the box needs its margin."""
    card = ModelCard(name="coarse", channels=[8, 16], spacing_mm=[6.0, 6.0, 6.0], patch_size=[16, 16, 16])
    segmenter = Segmenter.from_network(NearestIntensity(card), card)
    scan, _ = class_scan("PIR", shape=(80, 64, 48), spacing=(2.0, 2.0, 2.5))
    boxed = segmenter.segment(scan).labels
    assert boxed.any() and not boxed.all()
    monkeypatch.setattr(Scan, "box_around", lambda scan, mask, affine: tuple(slice(0, n) for n in scan.shape))
    np.testing.assert_array_equal(segmenter.segment(scan).labels, boxed)


def test_cuda_out_of_memory_finishes_on_the_cpu(segmenter, monkeypatch):
    """The CUDA path is simulated: the sliding window raises OutOfMemoryError whenever asked for CUDA."""
    real = inference.sliding_window_probabilities
    asked = []

    def sliding_window(network, image, device="cpu", amp=False, **kwargs):
        asked.append((torch.device(device).type, amp))
        if torch.device(device).type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(network, image, device=device, amp=amp, **kwargs)

    monkeypatch.setattr(inference, "sliding_window_probabilities", sliding_window)
    on_gpu = Segmenter.from_network(NearestIntensity(CARD), CARD)
    on_gpu._second_stage.device = torch.device("cuda")  # what resolve_device("auto") gives on a GPU machine (no .to() here)
    scan, truth = class_scan("LPS")
    result = on_gpu.segment(scan)
    assert asked == [("cuda", True), ("cpu", False)]  # mixed precision on the GPU only
    assert result.device == "cpu" and OOM_NOTE in result.notes
    np.testing.assert_array_equal(result.labels, segmenter.segment(scan).labels)


def test_threads_can_share_one_segmenter(segmenter):
    scans = [class_scan(axcodes)[0] for axcodes in ("RAS", "PIR")]
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.update({i: segmenter.segment(scans[i]).labels})) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, scan in enumerate(scans):
        np.testing.assert_array_equal(results[i], segmenter.segment(scan).labels)


@pytest.mark.slow  # waits over a second on purpose
def test_a_segmentation_queued_behind_another_says_so(segmenter):
    scan, _ = class_scan("RAS")
    results = []
    with inference._ACCELERATOR:  # another session's inference, holding the accelerator
        worker = threading.Thread(target=lambda: results.append(segmenter.segment(scan)))
        worker.start()
        worker.join(timeout=3)
        assert worker.is_alive()  # it waits rather than running beside the other
    worker.join()
    assert any(note.startswith("waited ") for note in results[0].notes)


def test_a_saved_model_is_loaded_by_name_or_as_the_default(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "TRAINED_DIR", tmp_path)
    card = ModelCard(name="tiny", channels=[4, 8], spacing_mm=[6.0, 6.0, 6.0], patch_size=[16, 16, 16])
    registry.save_model(UNet(card.channels), card, tmp_path / "tiny")
    scan, _ = make_phantom((32, 28, 20), spacing=(4.0, 4.0, 5.0))
    for segmenter in (Segmenter("tiny", device="cpu"), Segmenter()):
        result = segmenter.segment(scan)
        assert result.model == "tiny" and result.labels.shape == scan.shape
    with pytest.raises(LiverSegError, match="no model named 'other'"):
        Segmenter("other")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when there is no GPU")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error():
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(LiverSegError, match="no CUDA GPU"):
        resolve_device("cuda")


@pytest.mark.parametrize("precision, cpu_amp", [("auto", False), ("mixed", True), ("float32", False)])
def test_precision_decides_mixed_precision_on_the_cpu(precision, cpu_amp, monkeypatch):
    real = inference.sliding_window_probabilities
    asked = []

    def sliding_window(network, image, amp=False, **kwargs):
        asked.append(amp)
        return real(network, image, amp=amp, **kwargs)

    monkeypatch.setattr(inference, "sliding_window_probabilities", sliding_window)
    Segmenter.from_network(NearestIntensity(CARD), CARD, precision=precision).segment(class_scan("RAS")[0])
    assert asked == [cpu_amp]


def test_an_unknown_precision_is_refused():
    with pytest.raises(LiverSegError, match="unknown precision 'half'"):
        Segmenter.from_network(NearestIntensity(CARD), CARD, precision="half")


COARSE = ModelCard(name="coarse", channels=[8, 16], spacing_mm=[8.0, 8.0, 8.0], hu_window=[-200.0, 250.0], patch_size=[32, 32, 32])
CASCADE = ModelCard(name="cascade", channels=CARD.channels, spacing_mm=CARD.spacing_mm, hu_window=CARD.hu_window,
                    patch_size=CARD.patch_size, cascade={"first_stage": asdict(COARSE), "weights": "first_stage.pt", "roi_margin_mm": 10.0})


class Nothing(nn.Module):
    """A first stage that finds no liver anywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.ones_like(x), torch.zeros_like(x), torch.zeros_like(x)], dim=1) * 10


def test_a_cascade_locates_first_then_segments_within_the_region(segmenter):
    cascade = Segmenter.from_network(NearestIntensity(CASCADE), CASCADE, first_stage=NearestIntensity(COARSE))
    scan, truth = class_scan("LPS")
    far = scan.voxels.copy()
    far[:4, :4, :4] = CLASS_HU[1]  # liver-like, 100+ mm from the liver: outside the first stage's region
    calls = []
    result = cascade.segment(Scan(far, scan.affine), progress=lambda stage, fraction: calls.append(stage))
    assert list(result.seconds) == ["first_stage", "preprocess", "infer", "postprocess"] and calls[0] == "first_stage"
    assert dice(result.labels > 0, truth > 0) > 0.95 and dice(result.labels == 2, truth == 2) > 0.8
    assert not result.labels[:4, :4, :4].any()
    # Outside the region nothing was even computed: no "removed region" note, unlike one stage alone.
    assert not any(note.startswith("removed") for note in result.notes)
    assert any(note.startswith("removed 1 region") for note in segmenter.segment(Scan(far, scan.affine)).notes)


def test_a_cascade_whose_first_stage_finds_nothing_searches_the_whole_scan(segmenter):
    cascade = Segmenter.from_network(NearestIntensity(CASCADE), CASCADE, first_stage=Nothing())
    scan, _ = class_scan("RAS")
    result = cascade.segment(scan)
    assert "the first stage found no liver, so the second searched the whole scan" in result.notes
    np.testing.assert_array_equal(result.labels, segmenter.segment(scan).labels)


def test_a_cascade_card_and_its_first_stage_come_together():
    with pytest.raises(LiverSegError, match="needs its first stage"):
        Segmenter.from_network(NearestIntensity(CASCADE), CASCADE)
    with pytest.raises(LiverSegError, match="only a cascade takes one"):
        Segmenter.from_network(NearestIntensity(CARD), CARD, first_stage=Nothing())


@pytest.mark.parametrize(("precision", "cpu_bfloat16"), [("auto", True), ("float32", False), ("mixed", True)])
def test_pretrained_pair_gpu_out_of_memory_finishes_on_the_cpu(monkeypatch, precision, cpu_bfloat16):
    """The pair's CUDA path, simulated: every input asked for on CUDA runs out of memory; the scan finishes on the
    CPU, says so, and keeps the precision rules (on the CPU a bfloat16 copy where the card records it was measured
    and the CPU computes it natively, run as it is; mixed precision on the GPU unless float32 is asked for)."""
    from core.model.multipathway_unet import NetworkPair
    from tests.inference.test_pretrained_pair import _small_body, _stand_in

    card = ModelCard.load(config.TRAINED_DIR / "kul-liver-lesion-v1")
    stand_in, asked = _stand_in([]), []

    def forward(network, array, device, amp):
        asked.append((device.type, amp, next(network.parameters()).dtype))
        if device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return stand_in("liver" if network.architecture.padding == "same" else "lesion", array)

    monkeypatch.setattr(inference, "_forward", forward)
    on_gpu = Segmenter.from_network(NetworkPair(), card, precision=precision)
    on_gpu._pair.device = torch.device("cuda")  # what resolve_device("auto") gives on a GPU machine (no .to() here)
    result = on_gpu.segment(Scan(_small_body(), np.diag([3.0, 3.0, 3.0, 1.0])))
    cpu_dtype = torch.bfloat16 if cpu_bfloat16 and cpu_has_native_bfloat16() else torch.float32
    assert asked[0] == ("cuda", precision != "float32", torch.float32) and set(asked[1:]) == {("cpu", False, cpu_dtype)}
    assert result.device == "cpu" and OOM_NOTE in result.notes
    assert (result.labels == 1).any() and result.model == "kul-liver-lesion-v1"


@pytest.mark.parametrize(("precision", "cpu_bfloat16"), [("auto", True), ("float32", False), ("mixed", True)])
def test_pretrained_pair_on_the_cpu_runs_a_bfloat16_copy_where_measured_and_native(monkeypatch, precision, cpu_bfloat16):
    """On a CPU the pair runs as a bfloat16 copy (no autocast) where its card records bfloat16 keeps the labels
    and the CPU computes it natively; the network handed in (shared, perhaps being fine-tuned) stays float32."""
    from core.model.multipathway_unet import NetworkPair
    from tests.inference.test_pretrained_pair import _small_body, _stand_in

    card = ModelCard.load(config.TRAINED_DIR / "kul-liver-lesion-v1")
    stand_in, asked = _stand_in([]), set()

    def forward(network, array, device, amp):
        asked.add((device.type, amp, next(network.parameters()).dtype))
        return stand_in("liver" if network.architecture.padding == "same" else "lesion", array)

    monkeypatch.setattr(inference, "_forward", forward)
    pair = NetworkPair()
    Segmenter.from_network(pair, card, device="cpu", precision=precision).segment(Scan(_small_body(), np.diag([3.0, 3.0, 3.0, 1.0])))
    cpu_dtype = torch.bfloat16 if cpu_bfloat16 and cpu_has_native_bfloat16() else torch.float32
    assert asked == {("cpu", False, cpu_dtype)}
    assert next(pair.parameters()).dtype == torch.float32
