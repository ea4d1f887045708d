"""Drop the DFT bins that no mel band reads from an exported graph.

:class:`training.frontends.LogMel` computes every bin of the STFT (``n_fft // 2 + 1``, as
cos and sin rows of one strided Conv), squares and adds them, and multiplies by the mel
filterbank. With the bands over 0-4 kHz at 16 kHz, only bins 1..63 of 129 have a non-zero
weight: half the Conv's rows (the most expensive op of every audio graph) feed a zero.

The pass finds ``Conv(audio) -> Slice(cos), Slice(sin) -> Pow, Pow -> Add -> MatMul(mel)``,
keeps the contiguous range of bins the mel matrix reads, and rewrites the Conv weight, the two
Slices' bounds and the mel matrix. The outputs are the same numbers up to float summation order
(checked by export's parity test against torch). Training is untouched: it runs the full front
end once over the data set, so a retrained model's bytes depend only on this pass.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from app.manifest import Manifest, sha256_file


def _producer_users(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _const(inits: dict[str, onnx.TensorProto], name: str) -> np.ndarray | None:
    return numpy_helper.to_array(inits[name]) if name in inits else None


def _scalar(inits: dict[str, onnx.TensorProto], name: str) -> int | None:
    """The integer held by a one-element initializer ``name``, else ``None``."""
    value = _const(inits, name)
    return int(value.item()) if value is not None and value.size == 1 else None


def prune_dft_bins(model: onnx.ModelProto) -> int:
    """Prune every log-mel front end of ``model`` in place; returns the DFT rows removed (0: none)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    users = _producer_users(graph)
    removed = 0
    stale: set[str] = set()
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        weight = _const(inits, conv.input[1]) if len(conv.input) > 1 else None
        # The DFT conv: one input channel, no bias, an even number of rows (cos, then sin).
        if weight is None or len(conv.input) > 2 or weight.ndim != 3 or weight.shape[1] != 1:
            continue
        rows = weight.shape[0]
        slices = users.get(conv.output[0], [])
        if rows % 2 or len(slices) != 2 or any(s.op_type != "Slice" or len(s.input) < 3 for s in slices):
            continue
        starts = [_scalar(inits, s.input[1]) for s in slices]
        # Slice(data, starts, ends, axes, steps): both along the bin axis of [B, 2F, T], step 1
        axes = [_scalar(inits, s.input[3]) if len(s.input) > 3 and s.input[3] else 0 for s in slices]
        steps = [_scalar(inits, s.input[4]) if len(s.input) > 4 and s.input[4] else 1 for s in slices]
        if any(_scalar(inits, s.input[2]) is None for s in slices) or steps != [1, 1]:
            continue
        if any(a not in (1, -2) for a in axes):
            continue
        n_freqs = rows // 2
        if sorted(x if x is not None else -1 for x in starts) != [0, n_freqs]:
            continue
        cos, sin = slices if starts[0] == 0 else slices[::-1]
        pows = [users.get(s.output[0], []) for s in (cos, sin)]
        if any(len(p) != 1 or p[0].op_type != "Pow" for p in pows):
            continue
        adds = [users.get(p[0].output[0], []) for p in pows]
        if any(len(a) != 1 or a[0].op_type != "Add" for a in adds) or adds[0][0] is not adds[1][0]:
            continue
        matmuls = users.get(adds[0][0].output[0], [])
        if len(matmuls) != 1 or matmuls[0].op_type != "MatMul":
            continue
        mel = _const(inits, matmuls[0].input[0])
        if mel is None or mel.ndim != 2 or mel.shape[1] != n_freqs:
            continue
        used = np.flatnonzero(mel.any(axis=0))
        if used.size == 0:
            continue
        lo, hi = int(used[0]), int(used[-1]) + 1
        if hi - lo == n_freqs:
            continue
        kept = np.concatenate([weight[lo:hi], weight[n_freqs + lo : n_freqs + hi]])
        _replace(graph, inits, conv, 1, kept, f"{conv.output[0]}_pruned_weight")
        _replace(
            graph, inits, matmuls[0], 0, np.ascontiguousarray(mel[:, lo:hi]), f"{conv.output[0]}_pruned_mel"
        )
        width = hi - lo
        for node, begin in ((cos, 0), (sin, width)):  # Slice(data, starts, ends, ...): inputs 1, 2
            bound = helper.tensor_dtype_to_np_dtype(inits[node.input[1]].data_type)
            for slot, value, what in ((1, begin, "start"), (2, begin + width, "end")):
                _replace(
                    graph, inits, node, slot, np.array([value], bound), f"{node.output[0]}_pruned_{what}"
                )
        stale |= {conv.output[0], cos.output[0], sin.output[0], adds[0][0].output[0]}
        stale |= {p[0].output[0] for p in pows}
        removed += rows - 2 * width
    # Shapes recorded for the rewired tensors (the bin axis) are wrong now; onnxruntime re-infers them.
    keep = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    _drop_unused(graph)
    return removed


def _replace(
    graph: onnx.GraphProto,
    inits: dict[str, onnx.TensorProto],
    node: onnx.NodeProto,
    slot: int,
    value: np.ndarray,
    name: str,
) -> None:
    """Point ``node.input[slot]`` at a new initializer ``name`` (the old one may be shared)."""
    tensor = numpy_helper.from_array(value, name)
    graph.initializer.append(tensor)
    inits[name] = tensor
    node.input[slot] = name


def _reads(graph: onnx.GraphProto) -> set[str]:
    """Every name a node of ``graph`` or of its subgraphs (If, Loop, Scan bodies) reads."""
    names: set[str] = set()
    for node in graph.node:
        names.update(node.input)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                names |= _reads(sub)
    return names


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Remove initializers that no node reads any more (the replaced full-size ones)."""
    read = _reads(graph) | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def random_feeds(session: ort.InferenceSession, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Inputs of the session's spec: random pixels and bytes, waveform around speech level, full mask."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in session.get_inputs():
        shape = [batch, *spec.shape[1:]]
        if spec.name == "mask":
            feeds[spec.name] = np.ones(shape, np.float32)
        elif spec.type == "tensor(uint8)":
            feeds[spec.name] = rng.integers(0, 256, shape).astype(np.uint8)
        else:
            feeds[spec.name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return feeds


def single_thread_session(model: Path | str | bytes) -> ort.InferenceSession:
    """A CPU onnxruntime session on one thread (intra and inter op), warnings off: the setting of
    every latency figure in the report."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(
        model if isinstance(model, bytes) else str(model), opts, providers=["CPUExecutionProvider"]
    )


def median_run_ms(session: ort.InferenceSession, feeds: dict[str, np.ndarray], repeats: int = 50) -> float:
    """Median wall time of one ``session.run`` on ``feeds``, after 5 warm-up runs, in ms."""
    for _ in range(5):
        session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e3, 3)


def optimize_version(model_dir: Path) -> dict[str, Any]:
    """Apply the export-time passes to an exported ``models/<name>/<version>`` in place.

    The pruned graph must give the same outputs as the file it replaces (max abs diff <=
    :data:`training.export.PARITY_TOL` at batch 1 and 17), or nothing is written. The coalition
    graph is re-cut from it, and the manifest's hashes and size follow the new file (latency:
    :func:`measure_latencies`). Returns ``{"model", "removed", "max_abs_diff"}``.
    """
    from training.coalitions import write_coalitions
    from training.export import PARITY_TOL, ExportError

    path = model_dir / "model.onnx"
    model = onnx.load(str(path))
    removed = prune_dft_bins(model)
    record: dict[str, Any] = {"model": str(model_dir), "removed": removed, "max_abs_diff": 0.0}
    manifest = Manifest.read(model_dir / "manifest.json")
    if removed:
        with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
            new = Path(tmp) / "model.onnx"
            onnx.save(model, str(new))
            before, after = single_thread_session(path), single_thread_session(new)
            worst = 0.0
            for batch in (1, 17):
                feeds = random_feeds(before, batch, seed=batch)
                for a, b in zip(before.run(None, feeds), after.run(None, feeds), strict=True):
                    worst = max(worst, float(np.abs(np.asarray(a) - np.asarray(b)).max()))
            if not worst <= PARITY_TOL:
                raise ExportError(f"{path}: the pruned graph differs by {worst:.2e} > {PARITY_TOL:g}")
            record["max_abs_diff"] = worst
            if manifest.explain.coalitions:
                sha = write_coalitions(new, Path(tmp) / manifest.explain.coalitions)
                manifest.explain = manifest.explain.model_copy(update={"coalitions_sha256": sha})
            for file in Path(tmp).iterdir():
                os.replace(file, model_dir / file.name)
    manifest.onnx_sha256 = sha256_file(path)
    if "test_accuracy" in manifest.metrics:  # an evaluated model: its report row follows the file
        manifest.metrics = {**manifest.metrics, "onnx_bytes": path.stat().st_size}
    manifest.write(model_dir / "manifest.json")
    return record


def measure_latencies(
    model_dirs: list[Path], rounds: int = 7, repeats: int = 20
) -> dict[Path, dict[str, float]]:
    """Latency at batch 1 and 64 (one thread) of each model, written into its manifest's metrics.

    The models take turns, ``rounds`` times, and each keeps the median of its rounds' medians:
    a shared machine drifts between slow and fast phases that last seconds, and measuring one
    model after another would hand one model a slow phase and the next a fast one.
    """
    sessions = {d: single_thread_session(d / "model.onnx") for d in model_dirs}
    samples: dict[Path, dict[str, list[float]]] = {d: {"batch_1": [], "batch_64": []} for d in model_dirs}
    for _ in range(rounds):
        for d, session in sessions.items():
            for batch in (1, 64):
                samples[d][f"batch_{batch}"].append(
                    median_run_ms(session, random_feeds(session, batch, seed=batch), repeats)
                )
    result = {d: {k: round(float(np.median(v)), 3) for k, v in per.items()} for d, per in samples.items()}
    for d, latency in result.items():
        manifest = Manifest.read(d / "manifest.json")
        if "test_accuracy" in manifest.metrics:
            manifest.metrics = {**manifest.metrics, "latency_ms": latency}
            manifest.write(d / "manifest.json")
    return result
