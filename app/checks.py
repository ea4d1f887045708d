"""The checks between a manifest, its ONNX graph and the tensors a request brings.

Two moments: at load, :func:`check_manifest` and :func:`check_session` refuse a model whose card
does not describe its graph; before batching, :func:`check_inputs` refuses a request the graph
cannot take. It is the one input validator: ``/v1`` and ``/v2`` both end here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnxruntime as ort

from app.batching import Tensors
from app.errors import InvalidInput, ModelLoadError
from app.manifest import Manifest, TensorSpec

NUMPY_DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype(np.uint8),
    "float32": np.dtype(np.float32),
    "int64": np.dtype(np.int64),
    "bool": np.dtype(np.bool_),
}
ORT_DTYPES = {
    "tensor(uint8)": "uint8",
    "tensor(float)": "float32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def check_inputs(manifest: Manifest, inputs: Mapping[str, np.ndarray]) -> Tensors:
    """Names, dtypes, shapes, batch size and finite values against the manifest, before batching.

    onnxruntime does not always reject a wrong shape, and one bad request in a batch would fail
    its batch-mates, so everything is checked here. NaN and infinity are refused because the
    model answers them with NaN logits, which JSON cannot carry.

    Returns:
        The inputs in manifest order, C-contiguous, ready to be concatenated into a batch.

    Raises:
        InvalidInput: naming the input and what the model wants instead.
    """
    specs = {t.name: t for t in manifest.inputs}
    unknown = sorted(set(inputs) - set(specs))
    missing = [n for n in specs if n not in inputs]
    if unknown or missing:
        raise InvalidInput(
            f"model {manifest.name} takes inputs {list(specs)}"
            + (f"; unknown: {unknown}" if unknown else "")
            + (f"; missing: {missing}" if missing else "")
        )
    rows: int | None = None
    out: Tensors = {}
    for name, spec in specs.items():
        array = inputs[name]
        if not isinstance(array, np.ndarray):
            raise InvalidInput(f"input {name!r} must be an array, not {type(array).__name__}")
        if array.dtype != NUMPY_DTYPES[spec.dtype]:
            raise InvalidInput(f"input {name!r} has dtype {array.dtype}; the model wants {spec.dtype}")
        if array.ndim != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
        ):
            raise InvalidInput(
                f"input {name!r} has shape {list(array.shape)}; the model wants {spec.shape} (-1 = any)"
            )
        if array.shape[0] == 0:
            raise InvalidInput(f"input {name!r} has no rows")
        if rows is not None and array.shape[0] != rows:
            raise InvalidInput(f"inputs have different batch sizes ({rows} and {array.shape[0]} in {name!r})")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(f"input {name!r} holds NaN or infinite values")
        rows = array.shape[0]
        out[name] = np.ascontiguousarray(array)
    return out


def check_manifest(m: Manifest) -> None:
    """Dim 0 of every tensor is the batch; modality inputs agree with the decode parameters.

    Raises:
        ModelLoadError: listing every problem.
    """
    problems = [
        f"{t.name!r} dim 0 is {t.shape[0]}, not -1 (the batch)"
        for t in (*m.inputs, *m.outputs)
        if t.shape[0] != -1
    ]
    want = {
        n: (t.dtype, t.shape) for n in ("image", "audio", "text", "mask") for t in [m.decode.input_spec(n)]
    }
    for spec in m.inputs:
        if (spec.dtype, spec.shape) != want[spec.name]:
            problems.append(
                f"input {spec.name!r} is {spec.dtype} {spec.shape}; decoding makes {want[spec.name]}"
            )
    if problems:
        raise ModelLoadError("manifest: " + "; ".join(problems))


def check_session(m: Manifest, session: ort.InferenceSession) -> None:
    """The graph has exactly the manifest's inputs and at least its outputs, same dtypes and shapes.

    Raises:
        ModelLoadError: listing every difference.
    """
    graph_inputs = {i.name: i for i in session.get_inputs()}
    graph_outputs = {o.name: o for o in session.get_outputs()}
    problems = []
    if set(graph_inputs) != {t.name for t in m.inputs}:
        problems.append(
            f"graph inputs {sorted(graph_inputs)} != manifest inputs {sorted(t.name for t in m.inputs)}"
        )
    for kind, specs, nodes in (("input", m.inputs, graph_inputs), ("output", m.outputs, graph_outputs)):
        for spec in specs:
            node = nodes.get(spec.name)
            if node is None:
                if kind == "output":
                    problems.append(f"output {spec.name!r} is not in the graph (it has {sorted(nodes)})")
                continue
            problems += _compare(kind, spec, node)
    if problems:
        raise ModelLoadError("manifest does not match model.onnx: " + "; ".join(problems))


def _compare(kind: str, spec: TensorSpec, node: ort.NodeArg) -> list[str]:
    dtype = ORT_DTYPES.get(node.type, node.type)
    problems = (
        []
        if dtype == spec.dtype
        else [f"{kind} {spec.name!r} is {dtype} in the graph, {spec.dtype} in the manifest"]
    )
    shape = list(node.shape)
    fixed = [d if isinstance(d, int) and d > 0 else -1 for d in shape]
    if len(fixed) != len(spec.shape) or any(
        g != -1 and g != w for w, g in zip(spec.shape, fixed, strict=True)
    ):
        problems.append(f"{kind} {spec.name!r} has shape {shape} in the graph, {spec.shape} in the manifest")
    return problems
