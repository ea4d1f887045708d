"""Shared by the V2 tests: sample tensors, request bodies, and the answer onnxruntime gives directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import tritonclient.http as triton

from app.media import encode_text
from app.v2 import v2_datatype

WORDS = ["sept", "deux", "neuf", "élan", "one", "zéro", "trois", "huit"]
MODALITY_INPUTS = ("image", "audio", "text")


def sample_inputs(rows: int = 2, seed: int = 0, mask: bool = True) -> dict[str, np.ndarray]:
    """All inputs of a fusion model, every modality present, distinct rows."""
    rng = np.random.default_rng(seed)
    inputs: dict[str, np.ndarray] = {
        "image": rng.integers(0, 256, (rows, 28, 28), dtype=np.uint8),
        "audio": rng.uniform(-1, 1, (rows, 16000)).astype(np.float32),
        "text": np.stack([encode_text(WORDS[(seed + i) % len(WORDS)]) for i in range(rows)]),
    }
    if mask:
        inputs["mask"] = np.ones((rows, 3), dtype=np.float32)
    return inputs


def reference(
    models_dir: Path, name: str, version: int, inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run the model file with onnxruntime directly; omitted modalities are zeros, masked out."""
    session = ort.InferenceSession(str(models_dir / name / str(version) / "model.onnx"))
    feed: dict[str, np.ndarray] = {}
    rows = next(iter(inputs.values())).shape[0]
    for node in session.get_inputs():
        if node.name in inputs:
            feed[node.name] = inputs[node.name]
        elif node.name == "mask":
            feed["mask"] = np.array([[m in inputs for m in MODALITY_INPUTS]] * rows, dtype=np.float32)
        else:
            dtype = np.float32 if node.type == "tensor(float)" else np.uint8
            feed[node.name] = np.zeros((rows, *node.shape[1:]), dtype=dtype)
    names = [o.name for o in session.get_outputs()]
    return {n: np.asarray(v) for n, v in zip(names, session.run(names, feed), strict=True)}


def json_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    """One V2 input with its data as a flat JSON list (BYTES as strings)."""
    datatype = v2_datatype(array.dtype)
    data = [v.decode() for v in array.ravel()] if datatype == "BYTES" else array.ravel().tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def json_request(inputs: dict[str, np.ndarray], **extra: Any) -> dict[str, Any]:
    """A whole JSON-only V2 infer request."""
    return {"inputs": [json_tensor(n, a) for n, a in inputs.items()], **extra}


def triton_inputs(inputs: dict[str, np.ndarray], binary: bool = True) -> list[triton.InferInput]:
    """tritonclient's own input objects for the arrays."""
    out = []
    for name, array in inputs.items():
        tensor = triton.InferInput(name, list(array.shape), v2_datatype(array.dtype))
        out.append(tensor.set_data_from_numpy(array, binary_data=binary))
    return out


def binary_request(inputs: dict[str, np.ndarray], **kwargs: Any) -> tuple[bytes, dict[str, str]]:
    """The body and headers tritonclient would send (binary inputs)."""
    body, json_size = triton.InferenceServerClient.generate_request_body(triton_inputs(inputs), **kwargs)
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    return body, headers


def read_result(body: bytes, headers: Any) -> triton.InferResult:
    """Parse a response body the way tritonclient does."""
    length = headers.get("inference-header-content-length")
    return triton.InferResult.from_response_body(body, header_length=None if length is None else int(length))


def texts(*words: str) -> np.ndarray:
    """A BYTES tensor of shape [len(words)]."""
    return np.array([w.encode() for w in words], dtype=object)
