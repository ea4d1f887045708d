"""The DFT-bin pruning pass: smaller front end, same outputs, and the committed models carry it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

import training.export
from app.manifest import Manifest, sha256_file
from training.export import export_model
from training.frontends import N_MELS, mel_filterbank
from training.fusion import build_model
from training.pipeline import latest_models
from training.prune import measure_latencies, optimize_version, prune_dft_bins, random_feeds

LABELS = [str(i) for i in range(10)]
REPO_MODELS = Path(__file__).resolve().parents[2] / "models"


def _dft_conv(model: onnx.ModelProto) -> np.ndarray:
    """The weight of the Conv that reads the waveform (one input channel, kernel n_fft)."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    convs = [inits.get(n.input[1]) for n in model.graph.node if n.op_type == "Conv"]
    weights = [w for w in convs if w is not None and w.ndim == 3 and w.shape[1] == 1]
    assert len(weights) == 1
    return weights[0]


def _run(path: Path, batch: int, seed: int) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, random_feeds(session, batch, seed))


def test_export_keeps_only_the_bins_a_mel_band_reads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = export_model(
        build_model("audio_only", 10).eval(), name="a", out=tmp_path, version=1, labels=LABELS,
        training={}, data_fingerprint="",
    )  # fmt: skip
    used = np.flatnonzero(mel_filterbank(129, N_MELS, 16_000).any(axis=0))
    assert (used[0], used[-1]) == (1, 63)  # bands over 20 Hz - 4 kHz at 16 kHz: bins 1..63 of 129
    weight = _dft_conv(onnx.load(str(path / "model.onnx")))
    assert weight.shape == (2 * len(used), 1, 256)  # cos and sin rows of those bins only, not 258
    # export's own parity check (torch vs onnxruntime) passed on the pruned graph
    assert Manifest.read(path / "manifest.json").metrics["parity_max_abs_diff"] <= 1e-4


def test_optimize_rewrites_an_unpruned_version_with_the_same_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model exported before the pass (simulated by switching it off) is pruned in place."""
    monkeypatch.setattr(training.export, "prune_dft_bins", lambda model: 0)
    torch.manual_seed(0)
    path = export_model(
        build_model("late", 10).eval(), name="late", out=tmp_path, version=1, labels=LABELS,
        training={}, data_fingerprint="", metrics={"test_accuracy": 0.5, "onnx_bytes": 1},
    )  # fmt: skip
    assert _dft_conv(onnx.load(str(path / "model.onnx"))).shape[0] == 258
    before = [_run(path / "model.onnx", b, seed=b) for b in (1, 9)]
    size_before = (path / "model.onnx").stat().st_size

    done = optimize_version(path)

    assert done["removed"] == 258 - 126
    assert _dft_conv(onnx.load(str(path / "model.onnx"))).shape[0] == 126
    for b, ref in zip((1, 9), before, strict=True):
        for got, want in zip(_run(path / "model.onnx", b, seed=b), ref, strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    manifest = Manifest.read(path / "manifest.json")
    assert manifest.onnx_sha256 == sha256_file(path / "model.onnx")
    assert manifest.explain.coalitions_sha256 == sha256_file(path / str(manifest.explain.coalitions))
    assert manifest.metrics["onnx_bytes"] == (path / "model.onnx").stat().st_size < size_before
    latency = measure_latencies([path], rounds=2, repeats=3)[path]
    assert set(latency) == {"batch_1", "batch_64"} and 0 < latency["batch_1"] < latency["batch_64"]
    assert Manifest.read(path / "manifest.json").metrics["latency_ms"] == latency
    assert not [p for p in path.iterdir() if p.is_dir()]  # no temporary folder left behind
    # a second run finds nothing to do and leaves the bytes alone
    sha = manifest.onnx_sha256
    assert optimize_version(path)["removed"] == 0
    assert sha256_file(path / "model.onnx") == sha


def test_a_filterbank_that_reads_every_bin_is_left_alone() -> None:
    """Only the Conv -> Slice, Slice -> Pow -> Add -> MatMul(mel) pattern with unread bins changes."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((10, 1, 8)).astype(np.float32)
    full = np.ones((3, 5), np.float32)
    consts = {
        "w": weight, "mel": full, "ax": np.array([1]), "zero": np.array([0]), "half": np.array([5]),
        "end": np.array([10]), "two": np.array([2.0], np.float32),
    }  # fmt: skip
    nodes = [
        helper.make_node("Unsqueeze", ["audio", "ax"], ["u"]),
        helper.make_node("Conv", ["u", "w"], ["s"], strides=[4]),
        helper.make_node("Slice", ["s", "zero", "half", "ax"], ["re"]),
        helper.make_node("Slice", ["s", "half", "end", "ax"], ["im"]),
        helper.make_node("Pow", ["re", "two"], ["r2"]),
        helper.make_node("Pow", ["im", "two"], ["i2"]),
        helper.make_node("Add", ["r2", "i2"], ["p"]),
        helper.make_node("MatMul", ["mel", "p"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("audio", onnx.TensorProto.FLOAT, ["B", 32])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert prune_dft_bins(model) == 0
    assert numpy_helper.to_array(model.graph.initializer[0]).shape == (10, 1, 8)
    # the same graph whose bands read bins 1..2 only keeps rows 1, 2, 6, 7
    reads_two = full.copy()
    reads_two[:, [0, 3, 4]] = 0
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(reads_two, "mel"))
    x = rng.standard_normal((2, 32)).astype(np.float32)

    def run() -> np.ndarray:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"audio": x})[0]

    want = run()
    assert prune_dft_bins(model) == 6
    got = run()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("model_dir", latest_models(REPO_MODELS), ids=lambda p: p.parent.name)
def test_the_committed_models_carry_the_pass(model_dir: Path) -> None:
    """What `make train` exports today: a committed graph the pass would still shrink is stale."""
    model = onnx.load(str(model_dir / "model.onnx"))
    assert prune_dft_bins(model) == 0
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["onnx_sha256"] == sha256_file(model_dir / "model.onnx")
    assert manifest["metrics"]["onnx_bytes"] == (model_dir / "model.onnx").stat().st_size
