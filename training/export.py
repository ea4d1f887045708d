"""Export a trained model to ``models/<name>/<version>/{model.onnx, manifest.json}``.

The export is checked before anything is written to the repository: onnxruntime must reproduce
the torch logits (max abs diff <= 1e-4) at batch 1 and 17 with mixed masks, or export fails.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from app.contract import next_version
from app.manifest import Explain, FusionKind, Manifest, TensorSpec, sha256_file
from training.coalitions import FILE as COALITIONS_FILE
from training.coalitions import write_coalitions
from training.graph import FusionGraph, UnimodalGraph, wrap
from training.prune import prune_dft_bins
from training.train import SUBSETS

PARITY_TOL = 1e-4
DESCRIPTIONS = {
    "early": "Data-level fusion: pixels, log-mel frames and byte embeddings in one vector, one MLP.",
    "intermediate": "Feature-level fusion: one CNN encoder per modality, masked features concatenated.",
    "late": "Decision-level fusion: a calibrated classifier per modality, floored pool of their answers.",
    "gated": "Gated attention fusion: softmax gates over projected modality features (exported).",
    "unimodal": "Unimodal baseline on a single modality.",
}


class ExportError(RuntimeError):
    """The exported graph does not reproduce the trained model."""


def example_inputs(graph: FusionGraph | UnimodalGraph, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors of the graph's input spec; for fusions, masks cycle through all non-empty subsets."""
    rng = np.random.default_rng(seed)
    spec = graph.spec
    image_shape = tuple(spec.input_spec("image").shape[1:])
    length = spec.text_bytes
    full: dict[str, np.ndarray] = {
        "image": rng.integers(0, 256, (batch, *image_shape), dtype=np.uint8),
        "audio": (rng.standard_normal((batch, spec.audio_samples)) * 0.2).clip(-1, 1).astype(np.float32),
        "text": np.where(rng.random((batch, length)) < 0.3, rng.integers(1, 256, (batch, length)), 0).astype(
            np.uint8
        ),
    }
    if isinstance(graph, UnimodalGraph):
        return {graph.modality: full[graph.modality]}
    subsets = np.array(SUBSETS, dtype=np.float32)
    return {**full, "mask": subsets[np.arange(batch) % len(SUBSETS)]}


def input_names(graph: FusionGraph | UnimodalGraph) -> list[str]:
    return [graph.modality] if isinstance(graph, UnimodalGraph) else ["image", "audio", "text", "mask"]


def export_onnx(graph: FusionGraph | UnimodalGraph, path: Path) -> None:
    """torch.onnx (dynamo) export: one file, dynamic batch dimension, contract input names."""
    graph.eval()
    names = input_names(graph)
    args = tuple(torch.from_numpy(v) for v in example_inputs(graph, 2).values())
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = tuple({0: batch} for _ in names)
    # torch warns on every export that torchvision ops are not registered and that a pytree
    # API is deprecated: noise that buries the training progress, and nothing to act on.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*axis name", category=UserWarning)
        program = torch.onnx.export(
            graph,
            args,
            dynamo=True,
            external_data=False,
            input_names=names,
            output_names=["logits", *graph.extra_outputs],
            dynamic_shapes=dynamic,
            optimize=True,
            verbose=False,
        )
        if program is None:
            raise ExportError("torch.onnx.export returned no program")
        program.save(str(path), external_data=False)
    model = onnx.load(str(path))
    strip_provenance(model)
    prune_dft_bins(model)  # the DFT rows no mel band reads (half of them at 0-4 kHz)
    onnx.save(model, str(path))


def strip_provenance(model: onnx.ModelProto) -> None:
    """Drop every doc string and metadata entry, in place, recursively.

    torch writes each node's stack trace (``File "/abs/path/...", line N``), its fx node and
    module path into ``metadata_props``, and the exported program's signature into the graph's:
    the bytes of a model then depend on the folder it was trained in. None of it is needed to
    run the graph, so a model exported from any checkout is byte-identical.
    """

    def graph(g: onnx.GraphProto) -> None:
        g.doc_string = ""
        del g.metadata_props[:]
        for v in [*g.input, *g.output, *g.value_info, *g.initializer]:
            v.doc_string = ""
            del v.metadata_props[:]
        for node in g.node:
            node.doc_string = ""
            del node.metadata_props[:]
            for attr in node.attribute:
                attr.doc_string = ""
                if attr.HasField("g"):
                    graph(attr.g)
                for sub in attr.graphs:
                    graph(sub)

    model.doc_string = ""
    del model.metadata_props[:]
    graph(model.graph)
    for fn in model.functions:
        fn.doc_string = ""
        del fn.metadata_props[:]
        for node in fn.node:
            node.doc_string = ""
            del node.metadata_props[:]


def check_parity(graph: FusionGraph | UnimodalGraph, path: Path) -> float:
    """Max abs logit difference torch vs onnxruntime at batch 1 and 17; raises over tolerance."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (1, 17):
        feeds = example_inputs(graph, batch, seed=batch)
        with torch.no_grad():
            ref = graph(*(torch.from_numpy(v) for v in feeds.values()))
        ref_logits = (ref[0] if isinstance(ref, tuple) else ref).numpy()
        got = session.run(["logits"], feeds)[0]
        if got.shape != ref_logits.shape:
            raise ExportError(f"{path}: onnx logits shape {got.shape} != torch {ref_logits.shape}")
        worst = max(worst, float(np.abs(got - ref_logits).max()))
    if not worst <= PARITY_TOL:
        raise ExportError(f"{path}: onnxruntime differs from torch by {worst:.2e} > {PARITY_TOL:g}")
    return worst


def export_model(
    core: nn.Module,
    *,
    name: str,
    out: Path,
    version: int | None,
    labels: list[str],
    training: dict[str, Any],
    data_fingerprint: str,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Export, check parity, write the manifest; returns ``models/<name>/<version>``.

    Everything is written to a temporary folder first, so a failed export never leaves a
    half-written version that a running server could pick up.
    """
    graph = wrap(core)
    kind = str(core.kind)
    version = version or next_version(out / name)
    target = out / name / str(version)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(graph, onnx_path)
        diff = check_parity(graph, onnx_path)
        modalities = [graph.modality] if isinstance(graph, UnimodalGraph) else ["image", "audio", "text"]
        outputs = [TensorSpec(name="logits", dtype="float32", shape=[-1, len(labels)])]
        outputs += [TensorSpec(name=n, dtype="float32", shape=[-1, 3]) for n in graph.extra_outputs]
        explain = (
            Explain(method="gate_weights", output="weights")
            if "weights" in graph.extra_outputs
            else Explain(method="leave_one_out" if isinstance(graph, FusionGraph) else "none")
        )
        if isinstance(graph, FusionGraph):  # explanations in one pass of the encoders
            sha = write_coalitions(onnx_path, Path(tmp) / COALITIONS_FILE)
            explain = explain.model_copy(update={"coalitions": COALITIONS_FILE, "coalitions_sha256": sha})
        manifest = Manifest(
            name=name,
            version=version,
            fusion=cast(FusionKind, kind),
            description=DESCRIPTIONS[kind],
            modalities=modalities,  # type: ignore[arg-type]
            inputs=[graph.spec.input_spec(n) for n in input_names(graph)],
            outputs=outputs,
            explain=explain,
            decode=graph.spec,
            labels=labels,
            metrics={**(metrics or {}), "parity_max_abs_diff": diff},
            training=training,
            data_fingerprint=data_fingerprint,
            onnx_sha256=sha256_file(onnx_path),
            created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        manifest.write(Path(tmp) / "manifest.json")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp, target)
        Path(tmp).mkdir()  # TemporaryDirectory cleans up the (now empty) original path
    return target
