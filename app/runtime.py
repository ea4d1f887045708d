"""One loaded model version: an onnxruntime session, checked against its manifest, behind a batcher.

``load()`` refuses a model whose graph does not match what its manifest promises (names, dtypes,
shapes, the batch dimension, the onnx sha256) and runs it once on a batch of two to check that it
really answers one row per input row. ``predict()`` is the blocking tensor call the batcher runs in
the model's own thread; ``validate()`` checks a request's tensors before they join a batch.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.batching import AdaptiveBatcher, Observer, Tensors
from app.errors import ConfigError, InvalidInput, ModelLoadError, NotReady
from app.manifest import Manifest, TensorSpec, sha256_file

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
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


class ModelState(enum.StrEnum):
    """Where one model version stands. The V2 repository index reports these."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


def resolve_providers(setting: str) -> list[str]:
    """Turn ``FUSION_PROVIDERS`` into the provider list sessions are created with.

    Raises:
        ConfigError: ``cuda`` or an explicit provider that this onnxruntime build does not offer.
    """
    available = ort.get_available_providers()
    if setting == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    wanted = {"cpu": [CPU], "cuda": [CUDA, CPU]}.get(setting) or setting.split(",")
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ConfigError(
            f"FUSION_PROVIDERS={setting}: {missing} not available in this onnxruntime build "
            f"(it offers {available}). Install onnxruntime-gpu and a CUDA device for CUDA, "
            "or set FUSION_PROVIDERS=auto or cpu."
        )
    return wanted


class ModelRuntime:
    """One model version: ``load()``, ``predict()``, ``unload()``, ``ready``; ``batcher`` in front.

    Args:
        manifest: the parsed card, or ``None`` when it could not be read (``load()`` then fails
            with ``manifest_error``).
        providers: from :func:`resolve_providers`. With ``auto`` (``cuda_required=False``) a model
            whose session does not really start on CUDA falls back to CPU.
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        manifest: Manifest | None,
        *,
        providers: list[str],
        cuda_required: bool = False,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        max_batch_size: int = 32,
        max_batch_delay_s: float = 0.0,
        observe: Observer | None = None,
        manifest_error: str = "",
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.manifest = manifest
        self.state = ModelState.UNLOADED
        self.reason = manifest_error
        self._manifest_error = manifest_error or "manifest.json is missing"
        self.provider: str | None = None
        self._providers = providers
        self._cuda_required = cuda_required
        self._threads = (intra_op_threads, inter_op_threads)
        self._session: ort.InferenceSession | None = None
        self._output_names: list[str] = []
        self._batching = (max_batch_size, max_batch_delay_s, observe)
        self.batcher = self._new_batcher()

    @property
    def ready(self) -> bool:
        """True once the session is loaded, checked and warmed up."""
        return self.state is ModelState.READY

    def load(self) -> None:
        """Create the session, check it against the manifest, warm it up (blocking).

        Raises:
            ModelLoadError: the reason the version is refused (also kept in ``reason``).
        """
        self.state, self.reason = ModelState.LOADING, ""
        if self.batcher.closed:  # loaded again after an unload
            self.batcher = self._new_batcher()
        try:
            if self.manifest is None:
                raise ModelLoadError(self._manifest_error)
            onnx_path = self.path / "model.onnx"
            if not onnx_path.is_file():
                raise ModelLoadError(f"{onnx_path} is missing")
            expected = self.manifest.onnx_sha256
            if expected and sha256_file(onnx_path) != expected:
                raise ModelLoadError("model.onnx does not match the manifest's onnx_sha256")
            _check_manifest(self.manifest)
            session = self._create_session(onnx_path)
            _check_session(self.manifest, session)
            self._session = session
            self._output_names = [o.name for o in self.manifest.outputs]
            self.provider = session.get_providers()[0]
            self._warm_up()
        except Exception as exc:
            self._session, self.provider = None, None
            self.state = ModelState.FAILED
            self.reason = str(exc) if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
            raise ModelLoadError(self.reason) from exc
        self.state = ModelState.READY

    def predict(self, inputs: Tensors) -> Tensors:
        """Run the session on validated inputs (blocking; the batcher calls it in a thread)."""
        session = self._session
        if session is None:
            raise NotReady(f"model {self.name} version {self.version} is not loaded")
        return dict(zip(self._output_names, session.run(self._output_names, inputs), strict=True))

    def unload(self) -> None:
        """Drop the session (call after ``batcher.close()`` so no run is in flight)."""
        self._session, self.provider = None, None
        self.state = ModelState.UNLOADED

    def validate(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        """Check names, dtypes, shapes and batch size against the manifest, before batching.

        onnxruntime does not always reject a wrong shape, and one bad request in a batch would
        fail its batch-mates, so everything is checked here.

        Raises:
            InvalidInput: naming the input and what the model wants instead.
        """
        assert self.manifest is not None
        specs = {t.name: t for t in self.manifest.inputs}
        unknown = sorted(set(inputs) - set(specs))
        missing = [n for n in specs if n not in inputs]
        if unknown or missing:
            raise InvalidInput(
                f"model {self.name} takes inputs {list(specs)}"
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
                raise InvalidInput(
                    f"inputs have different batch sizes ({rows} and {array.shape[0]} in {name!r})"
                )
            rows = array.shape[0]
            out[name] = np.ascontiguousarray(array)
        return out

    def _new_batcher(self) -> AdaptiveBatcher:
        size, delay, observe = self._batching
        return AdaptiveBatcher(
            self.predict,
            name=f"{self.name}:{self.version}",
            max_batch_size=size,
            max_delay_s=delay,
            observe=observe,
        )

    def _create_session(self, path: Path) -> ort.InferenceSession:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = self._threads
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), opts, providers=self._providers)
        except Exception as exc:
            if CUDA not in self._providers or self._cuda_required:
                raise ModelLoadError(f"onnxruntime cannot load model.onnx: {exc}") from exc
            log.warning("%s:%s does not start on CUDA (%s); using CPU", self.name, self.version, exc)
            session = None
        if session is None:
            try:
                session = ort.InferenceSession(str(path), opts, providers=[CPU])
            except Exception as exc:
                raise ModelLoadError(f"onnxruntime cannot load model.onnx: {exc}") from exc
        if self._cuda_required and session.get_providers()[0] != CUDA:
            raise ModelLoadError(
                f"FUSION_PROVIDERS=cuda but the session started on {session.get_providers()[0]}"
            )
        return session

    def _warm_up(self) -> None:
        """Run a batch of two (all modalities present) and check every output's shape."""
        assert self.manifest is not None
        dummy: Tensors = {}
        for spec in self.manifest.inputs:
            shape = [2, *spec.shape[1:]]
            fill = 1 if spec.name == "mask" else 0
            dummy[spec.name] = np.full(shape, fill, dtype=NUMPY_DTYPES[spec.dtype])
        outputs = self.predict(dummy)
        for spec in self.manifest.outputs:
            got = list(outputs[spec.name].shape)
            if (
                len(got) != len(spec.shape)
                or got[0] != 2
                or any(want not in (-1, g) for want, g in zip(spec.shape[1:], got[1:], strict=True))
            ):
                raise ModelLoadError(
                    f"output {spec.name!r} has shape {got} for 2 input rows; the manifest says {spec.shape}"
                )


def _check_manifest(m: Manifest) -> None:
    """Dim 0 of every tensor is the batch; modality inputs agree with the decode parameters."""
    problems = [
        f"{t.name!r} dim 0 is {t.shape[0]}, not -1 (the batch)"
        for t in (*m.inputs, *m.outputs)
        if t.shape[0] != -1
    ]
    want = {
        "image": ("uint8", [-1, m.decode.image_size, m.decode.image_size]),
        "audio": ("float32", [-1, m.decode.audio_samples]),
        "text": ("uint8", [-1, m.decode.text_bytes]),
        "mask": ("float32", [-1, 3]),
    }
    for spec in m.inputs:
        if (spec.dtype, spec.shape) != want[spec.name]:
            problems.append(
                f"input {spec.name!r} is {spec.dtype} {spec.shape}; decoding makes {want[spec.name]}"
            )
    if problems:
        raise ModelLoadError("manifest: " + "; ".join(problems))


def _check_session(m: Manifest, session: ort.InferenceSession) -> None:
    """The graph has exactly the manifest's inputs and at least its outputs, same dtypes and shapes."""
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
