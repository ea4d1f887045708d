"""Fusion models: mask semantics, determinism, front ends, export parity and the manifest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from app.manifest import Manifest, sha256_file
from training.export import ExportError, check_parity, export_model
from training.frontends import FRAMES, HOP, N_FFT, N_MELS, LogMel
from training.fusion import GATE_RANGE, LATE_EPSILON, Unimodal, build_model
from training.graph import featurize, wrap
from training.train import SUBSETS, TrainConfig, drop_modalities, train_model

LABELS = [str(i) for i in range(10)]


def _synthetic(n: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Features whose label is written into the image, so a few steps of training learn it."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    image = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
    for i, y in enumerate(labels):
        image[i, 2 * y : 2 * y + 4, 4:24] = 255
    audio = (rng.standard_normal((n, 16000)) * 0.05).astype(np.float32)
    text = np.zeros((n, 64), np.uint8)
    text[:, :3] = rng.integers(97, 123, (n, 3))
    return featurize(image, audio, text), torch.ones(n, 3), torch.from_numpy(labels)


def test_late_fusion_with_one_modality_is_that_branch_floored() -> None:
    torch.manual_seed(0)
    model = build_model("late", 10).eval()
    feats, _, _ = _synthetic(8)
    with torch.no_grad():
        for i in range(3):
            mask = torch.zeros(8, 3)
            mask[:, i] = 1.0
            out = model(feats, mask, branches=True)
            branch = torch.softmax(out["per_modality"][:, i], dim=1)
            expected = torch.log((1 - LATE_EPSILON) * branch + LATE_EPSILON / 10)
            torch.testing.assert_close(out["logits"], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["early", "intermediate"])
def test_per_modality_paths_are_the_one_modality_answers(name: str) -> None:
    """The auxiliary losses train exactly what a one-modality request is answered with."""
    torch.manual_seed(0)
    model = build_model(name, 10).eval()
    feats, _, _ = _synthetic(5)
    with torch.no_grad():
        per = model(feats, torch.ones(5, 3), branches=True)["per_modality"]
        for i in range(3):
            mask = torch.zeros(5, 3)
            mask[:, i] = 1.0
            torch.testing.assert_close(per[:, i], model(feats, mask)["logits"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["early", "intermediate", "late", "gated"])
def test_masked_modality_has_no_effect(name: str) -> None:
    """Changing the content of a masked modality must not change the answer."""
    torch.manual_seed(0)
    model = build_model(name, 10).eval()
    feats, _, _ = _synthetic(6)
    other, _, _ = _synthetic(6, seed=1)
    mask = torch.tensor([[1.0, 0.0, 1.0]] * 6)
    swapped = dict(feats, audio=other["audio"])
    with torch.no_grad():
        torch.testing.assert_close(model(feats, mask)["logits"], model(swapped, mask)["logits"])
        full = torch.ones(6, 3)
        assert not torch.allclose(model(feats, full)["logits"], model(swapped, full)["logits"])


def test_gate_weights_are_a_distribution_over_present_modalities() -> None:
    model = build_model("gated", 10).eval()
    feats, _, _ = _synthetic(7)
    mask = torch.tensor(SUBSETS, dtype=torch.float32)
    with torch.no_grad():
        w = model(feats, mask)["weights"]
    torch.testing.assert_close(w.sum(dim=1), torch.ones(7))
    assert torch.all(w[mask == 0] == 0)


def test_gates_are_bounded_so_no_modality_outweighs_two_others() -> None:
    """Whatever the gate network says, two present modalities' weights differ by at most
    exp(2 * GATE_RANGE) < 2: a single modality never carries more weight than two others."""
    model = build_model("gated", 10).eval()
    feats, _, _ = _synthetic(64)
    with torch.no_grad():
        for p in model.score.parameters():  # a gate network pushed to its extremes
            p.mul_(50.0)
        w = model(feats, torch.ones(64, 3))["weights"]
    ratio, bound = w.max(dim=1).values / w.min(dim=1).values, math.exp(2 * GATE_RANGE)
    assert float(ratio.max()) <= bound + 1e-6 < 2.0
    assert float(ratio.max()) > 1.0 + 0.9 * (bound - 1.0)  # the bound is reached: the gates do act


def test_modality_dropout_keeps_a_non_empty_subset_of_what_is_present() -> None:
    gen = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]).repeat(100, 1)
    dropped = drop_modalities(mask, 1.0, gen)
    assert torch.all(dropped <= mask)
    assert torch.all(dropped.sum(dim=1) >= 1)
    assert (dropped != mask).any()  # something was really dropped


def test_logmel_matches_a_reference_stft() -> None:
    """The Conv1d DFT front end equals torch.stft's power spectrum through the same mel matrix,
    each band's mean over time removed."""
    rng = np.random.default_rng(0)
    audio = torch.from_numpy((rng.standard_normal((2, 16000)) * 0.3).astype(np.float32))
    fe = LogMel()
    ours = fe(audio)
    assert ours.shape == (2, 1, N_MELS, FRAMES)
    window = torch.hann_window(N_FFT, periodic=True)
    spec = torch.stft(audio, N_FFT, HOP, window=window, center=False, return_complex=True).abs() ** 2
    log = torch.log(torch.matmul(fe.mel, spec) + 1e-6)
    ref = (log - log.mean(dim=2, keepdim=True)) / 4.0
    torch.testing.assert_close(ours.squeeze(1), ref, atol=2e-3, rtol=1e-3)


def test_logmel_ignores_gain_and_a_constant_colouring() -> None:
    """Scaling a clip (a quieter recording) moves every log-mel band by the same constant, which
    the per-band mean removal takes out: the features do not change (up to the log's 1e-6
    floor, which near-empty bins of a single-bin band reach)."""
    rng = np.random.default_rng(1)
    audio = torch.from_numpy((rng.standard_normal((1, 16000)) * 0.3).astype(np.float32))
    fe = LogMel()
    torch.testing.assert_close(fe(audio * 0.5), fe(audio), atol=1e-2, rtol=0)
    assert float((fe(audio * 0.05) - fe(audio)).abs().mean()) < 0.02  # the features span about +-2


def test_a_steady_tone_is_flat_after_the_mean_removal_and_kept_without_it() -> None:
    """Why ``audio_normalize`` is a spec choice: a tone that fills the window is constant in time,
    so removing each band's mean leaves nothing of its pitch; the fixed centring keeps it."""
    from tests.media_fixtures import tone

    clips = torch.from_numpy(np.stack([tone(1.0, 16000, freq=f, amplitude=0.4) for f in (300, 900)]))
    flat = LogMel()(clips.float())
    assert float(flat.abs().amax()) < 0.05
    kept = LogMel(normalize=False)(clips.float())
    assert float((kept[0] - kept[1]).abs().amax()) > 1.0  # the two pitches differ


def test_training_is_deterministic_and_learns() -> None:
    train, val = _synthetic(256), _synthetic(128, seed=3)
    cfg = TrainConfig(model="intermediate", epochs=3, batch_size=32, seed=7, threads=1)
    m1, info1 = train_model(cfg, 10, train, val, progress=False)
    m2, info2 = train_model(cfg, 10, train, val, progress=False)
    assert info1["history"] == info2["history"]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert info1["best_val"] > 0.5  # label is drawn in the image: far above the 0.1 of chance


@pytest.mark.parametrize("name", ["gated", "late", "text_only"])
def test_export_parity_and_manifest(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    core = build_model(name, 10).eval()
    path = export_model(
        core,
        name=name,
        out=tmp_path,
        version=None,
        labels=LABELS,
        training={"model": name},
        data_fingerprint="abc",
    )
    assert path == tmp_path / name / "1"
    manifest = Manifest.read(path / "manifest.json")
    assert manifest.onnx_sha256 == sha256_file(path / "model.onnx")
    assert manifest.metrics["parity_max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    for spec in manifest.inputs:
        assert spec.name in got
        assert got[spec.name][1][1:] == spec.shape[1:]
    assert [o.name for o in session.get_outputs()] == [o.name for o in manifest.outputs]
    if name == "gated":
        assert manifest.explain.method == "gate_weights"
    if isinstance(core, Unimodal):
        assert [s.name for s in manifest.inputs] == ["text"] and not manifest.has_mask
    # a second export goes to the next version and leaves the first untouched
    again = export_model(
        core, name=name, out=tmp_path, version=None, labels=LABELS, training={}, data_fingerprint=""
    )
    assert again.name == "2" and (path / "model.onnx").exists()


def test_parity_failure_stops_export(tmp_path: Path) -> None:
    core = build_model("image_only", 10).eval()
    graph = wrap(core)
    path = export_model(
        core, name="x", out=tmp_path, version=1, labels=LABELS, training={}, data_fingerprint=""
    )
    with torch.no_grad():  # the torch model drifts away from the exported graph
        core.head[1].bias.add_(1.0)
    with pytest.raises(ExportError, match="differs from torch"):
        check_parity(graph, path / "model.onnx")


def test_manifest_rejects_inconsistent_cards(tmp_path: Path) -> None:
    good = {
        "name": "m",
        "version": 1,
        "fusion": "late",
        "modalities": ["image"],
        "inputs": [{"name": "image", "dtype": "uint8", "shape": [-1, 28, 28]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 2]}],
        "labels": ["a", "b"],
    }
    Manifest.model_validate(good)
    bad_cases = [
        ({"labels": ["a"]}, "labels"),
        ({"modalities": ["audio"]}, "no input tensor"),
        ({"outputs": [{"name": "probs", "dtype": "float32", "shape": [-1, 2]}]}, "logits output"),
        ({"explain": {"method": "gate_weights", "output": "weights"}}, "explain output"),
        ({"inputs": [{"name": "image", "dtype": "uint8", "shape": [-1, 0]}]}, "shape"),
        ({"surprise": 1}, "Extra inputs"),
    ]
    for change, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            Manifest.model_validate({**good, **change})
    p = tmp_path / "manifest.json"
    p.write_text(json.dumps(good))
    assert Manifest.read(p).name == "m"
