"""Calibration folded into the graph, conflict augmentation, and reproducible ONNX bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from training.calibration import calibrate, ece, fit_temperature
from training.export import example_inputs, export_model
from training.fusion import SUBSETS, build_model, subset_index
from training.graph import featurize, wrap
from training.train import NOISE, make_conflicts, noise_bank, per_modality_loss

LABELS = [str(i) for i in range(10)]


def _features(n: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    image = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    audio = (rng.standard_normal((n, 16000)) * 0.1).astype(np.float32)
    text = np.zeros((n, 64), np.uint8)
    text[:, :4] = rng.integers(97, 123, (n, 4))
    return featurize(image, audio, text), torch.ones(n, 3), torch.from_numpy(labels)


def test_fit_temperature_recovers_a_known_temperature() -> None:
    """Labels drawn from softmax(z); the logits shown are 3 z: the fitted T is about 3."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(8_000, 10, generator=gen) * 2.0
    labels = torch.multinomial(torch.softmax(z, dim=1), 1, generator=gen).squeeze(1)
    assert fit_temperature(3.0 * z, labels) == pytest.approx(3.0, rel=0.05)
    assert ece(z, labels) < 0.02 < ece(3.0 * z, labels)


def test_ece_of_a_confidently_wrong_model_is_its_confidence() -> None:
    logits = torch.tensor([[10.0, 0.0]] * 4)
    assert ece(logits, torch.tensor([1, 1, 1, 1])) == pytest.approx(1.0, abs=1e-3)
    assert ece(logits, torch.tensor([0, 0, 0, 0])) == pytest.approx(0.0, abs=1e-3)


def test_subset_index_follows_the_subset_order() -> None:
    masks = torch.tensor(SUBSETS, dtype=torch.float32)
    assert subset_index(masks).tolist() == list(range(len(SUBSETS)))


@pytest.mark.parametrize("name", ["late", "gated", "audio_only"])
def test_calibration_is_fitted_and_folded_into_the_onnx_graph(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    core = build_model(name, 10).eval()
    feats, mask, labels = _features(64)
    with torch.no_grad():
        result = calibrate(core, name, (feats, mask, labels))
    temps = core.get_buffer("temperature")
    assert not torch.all(temps == 1.0)  # an untrained model is mis-calibrated: something was fitted
    assert {"val_ece_before", "val_ece_after", "temperature"} <= set(result)
    if name in ("late", "gated"):  # both pool their branches' calibrated probabilities
        assert set(result["branches"]) == {"image", "audio", "text"} and result["branch_temperature_in_graph"]
        assert torch.equal(
            core.get_buffer("branch_temperature"),
            torch.tensor([result["branches"][m]["temperature"] for m in ("image", "audio", "text")]),
        )
    path = export_model(
        core, name=name, out=tmp_path, version=1, labels=LABELS, training={}, data_fingerprint=""
    )
    graph = wrap(core)
    feeds = example_inputs(graph, 14)
    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], feeds)[0]
    temps.fill_(1.0)  # the uncalibrated model, for comparison: the graph divides by the temperature
    with torch.no_grad():
        raw = graph(*(torch.from_numpy(v) for v in feeds.values()))
    raw_logits = (raw[0] if isinstance(raw, tuple) else raw).numpy()
    assert not np.allclose(got, raw_logits, atol=1e-3)


def test_late_fusion_is_not_vetoed_by_one_confident_branch() -> None:
    """Two branches agree on class 0, one is certain of class 1: the floored pool follows the
    two (the plain product of experts, the old rule, followed the one)."""
    model = build_model("late", 3)
    z = torch.tensor([[[4.0, 0.0, 0.0], [4.0, 0.0, 0.0], [-20.0, 20.0, -20.0]]])  # [1, 3 branches, 3]
    with torch.no_grad():
        for i, head in enumerate(model.heads):
            head.weight.zero_()
            head.bias.copy_(z[0, i])
    feats, _, _ = _features(1)
    with torch.no_grad():
        out = model.eval()(feats, torch.ones(1, 3))["logits"]
    assert int(out.argmax()) == 0


def test_conflicts_swap_one_present_modality_and_keep_the_label() -> None:
    feats, _, labels = _features(200)
    mask = torch.ones(200, 3)
    mask[:50, 1:] = 0.0  # 50 image-only rows: never touched
    bank = noise_bank(16, seed=0)
    out, targets = make_conflicts(feats, mask, labels, 1.0, bank, torch.Generator().manual_seed(0))
    changed = torch.stack(
        [(out[k] != feats[k]).flatten(1).any(dim=1) for k in ("image", "audio", "text")], dim=1
    )
    assert not changed[:50].any() and torch.equal(targets[:50], labels[:50].view(-1, 1).repeat(1, 3))
    assert torch.all(changed[50:].sum(dim=1) == 1)  # exactly one modality per multi-modality row
    swapped = (targets != labels.view(-1, 1)) & (targets != NOISE)
    assert swapped.any() and (targets == NOISE).any()
    assert torch.equal(swapped | (targets == NOISE), changed)


def test_per_modality_loss_ignores_noise_and_absent_modalities() -> None:
    logits = torch.randn(4, 3, 10, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[1, NOISE, 2]] * 4)
    present = torch.tensor([[1.0, 1.0, 0.0]] * 4)
    only_image = torch.nn.functional.cross_entropy(logits[:, 0], targets[:, 0])
    torch.testing.assert_close(per_modality_loss(logits, targets, present), only_image)


def test_exported_onnx_carries_no_paths_or_stack_traces(tmp_path: Path) -> None:
    torch.manual_seed(0)
    core = build_model("text_only", 10).eval()
    paths = [
        export_model(
            core, name="m", out=tmp_path / d, version=1, labels=LABELS, training={}, data_fingerprint=""
        )
        for d in ("a", "b")
    ]
    model = onnx.load(str(paths[0] / "model.onnx"))
    texts = [model.doc_string, model.graph.doc_string, *(p.value for p in model.metadata_props)]
    texts += [p.value for p in model.graph.metadata_props]
    for node in model.graph.node:
        texts += [node.doc_string, *(p.value for p in node.metadata_props)]
    assert not [t for t in texts if "/" in t or 'File "' in t]
    assert (paths[0] / "model.onnx").read_bytes() == (paths[1] / "model.onnx").read_bytes()
