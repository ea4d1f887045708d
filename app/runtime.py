"""One loaded model version: an onnxruntime session, checked against its manifest, behind a batcher.

``load()`` refuses a model whose graph does not match what its manifest promises (names, dtypes,
shapes, the batch dimension, the onnx sha256; see :mod:`app.checks`) and runs it once on a batch
of two to check that it really answers one row per input row. ``predict()`` is the blocking
tensor call the batcher runs in the model's own thread; ``validate()`` checks a request's tensors
before they join a batch.

A request holds the runtime (:meth:`ModelRuntime.in_use`) from the moment it is looked up until
its answer is back, so that a runtime replaced by a newer version can :meth:`~ModelRuntime.drain`:
it is no longer handed out, and it closes only once every request that holds it has its answer.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pydantic import ValidationError

from app.batching import AdaptiveBatcher, Observer, Tensors
from app.checks import NUMPY_DTYPES, check_inputs, check_manifest, check_session
from app.coalitions import check_coalitions, coalitions_file, output_names
from app.config import Settings
from app.errors import ConfigError, ModelLoadError, NotReady
from app.manifest import Manifest, describe_manifest_errors, sha256_file

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_ORT_STATUS = re.compile(r"\[ONNXRuntimeError\] : \d+ : (\w+)")


def ort_status(exc: BaseException) -> str:
    """onnxruntime's status name (``INVALID_PROTOBUF``, ...) without the message, which names paths."""
    found = _ORT_STATUS.search(str(exc))
    return found.group(1) if found else type(exc).__name__


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
        self.detail = manifest_error
        """The full story behind ``reason`` (exception text, paths): for the server log only."""
        self._manifest_detail = manifest_error
        self._manifest_error = manifest_error or "manifest.json is missing"
        self.provider: str | None = None
        self._providers = providers
        self._cuda_required = cuda_required
        self._threads = (intra_op_threads, inter_op_threads)
        self._session: ort.InferenceSession | None = None
        self._output_names: list[str] = []
        self._batching = (max_batch_size, max_batch_delay_s, observe)
        self.batcher = self._new_batcher()
        self.coalitions: AdaptiveBatcher | None = None
        """The coalition graph's batcher (:mod:`app.coalitions`), when the model has a usable one."""
        self._coalition_session: ort.InferenceSession | None = None
        self._users = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    def from_directory(
        cls,
        path: Path,
        name: str,
        version: int,
        settings: Settings,
        providers: list[str],
        observe: Observer | None = None,
    ) -> ModelRuntime:
        """The (not yet loaded) runtime of ``<models>/<name>/<version>``, as the settings say.

        A manifest that cannot be read, or that names another model or version, leaves the
        runtime without one: :meth:`load` then refuses it with the reason.
        """
        manifest, error, detail = None, "", ""
        try:
            manifest = Manifest.read(path / "manifest.json")
            if (manifest.name, manifest.version) != (name, version):
                error = f"manifest says {manifest.name}:{manifest.version} but it lives in {name}/{version}"
                manifest = None
        except FileNotFoundError as exc:
            error, detail = "manifest.json is missing", str(exc)
        except OSError as exc:
            error, detail = f"manifest.json is unreadable ({type(exc).__name__})", str(exc)
        except ValidationError as exc:
            error, detail = "manifest.json is unreadable: " + describe_manifest_errors(exc), str(exc)
        except ValueError as exc:  # not UTF-8
            error, detail = "manifest.json is not UTF-8 text", str(exc)
        runtime = cls(
            name,
            version,
            path,
            manifest,
            providers=providers,
            cuda_required=settings.providers == "cuda",
            intra_op_threads=settings.intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
            max_batch_size=settings.max_batch_size,
            max_batch_delay_s=settings.max_batch_delay_s,
            observe=observe,
            manifest_error=error,
        )
        runtime.detail = runtime._manifest_detail = detail or error
        return runtime

    @property
    def ready(self) -> bool:
        """True once the session is loaded, checked and warmed up."""
        return self.state is ModelState.READY

    def load(self) -> None:
        """Create the session, check it against the manifest, warm it up (blocking).

        Raises:
            ModelLoadError: the reason the version is refused (also kept in ``reason``).
        """
        self.state, self.reason, self.detail = ModelState.LOADING, "", ""
        if self.batcher.closed:  # loaded again after an unload
            self.batcher = self._new_batcher()
        try:
            if self.manifest is None:
                raise ModelLoadError(self._manifest_error)
            onnx_path = self.path / "model.onnx"
            if not onnx_path.is_file():
                raise ModelLoadError("model.onnx is missing")
            expected = self.manifest.onnx_sha256
            if expected and sha256_file(onnx_path) != expected:
                raise ModelLoadError("model.onnx does not match the manifest's onnx_sha256")
            check_manifest(self.manifest)
            session = self._create_session(onnx_path)
            check_session(self.manifest, session)
            self._session = session
            self._output_names = [o.name for o in self.manifest.outputs]
            self.provider = session.get_providers()[0]
            self._warm_up()
            self._open_coalitions()
        except Exception as exc:
            self._session, self.provider = None, None
            self.state = ModelState.FAILED
            if not isinstance(exc, ModelLoadError):
                self.reason = f"{type(exc).__name__} while loading (the server log has the details)"
                self.detail = f"{type(exc).__name__}: {exc}"
            elif exc.__cause__ is not None:  # e.g. onnxruntime's message, which names the path
                self.reason, self.detail = str(exc), f"{exc}: {exc.__cause__}"
            else:
                self.reason = str(exc)
                self.detail = self._manifest_detail if self.manifest is None else self.reason
            raise ModelLoadError(self.reason) from exc
        self.state = ModelState.READY

    def predict(self, inputs: Tensors) -> Tensors:
        """Run the session on validated inputs (blocking; the batcher calls it in a thread)."""
        session = self._session
        if session is None:
            raise NotReady(f"model {self.name} version {self.version} is not loaded")
        return dict(zip(self._output_names, session.run(self._output_names, inputs), strict=True))

    def predict_coalitions(self, inputs: Tensors) -> Tensors:
        """Run the coalition graph on validated inputs (blocking; its batcher calls it in a thread)."""
        session = self._coalition_session
        if session is None or self.manifest is None:
            raise NotReady(f"model {self.name} version {self.version} has no coalition graph loaded")
        names = output_names(self.manifest)
        return dict(zip(names, session.run(names, inputs), strict=True))

    async def close(self) -> None:
        """Stop the batchers: requests still queued fail with 503, runs in flight finish first."""
        await self.batcher.close()
        if self.coalitions is not None:
            await self.coalitions.close()

    def unload(self) -> None:
        """Drop the sessions (call after :meth:`close` so no run is in flight)."""
        self._session, self.provider = None, None
        self._coalition_session, self.coalitions = None, None
        self.state = ModelState.UNLOADED

    def validate(self, inputs: Mapping[str, np.ndarray]) -> Tensors:
        """Check a request's tensors against the manifest before batching (:func:`check_inputs`).

        Raises:
            InvalidInput: naming the input and what the model wants instead.
        """
        return check_inputs(self.serving_manifest(), inputs)

    def serving_manifest(self) -> Manifest:
        """The manifest of a runtime that can answer now.

        Raises:
            NotReady: the version is loading, was refused (with the reason) or unloaded.
        """
        if not self.ready or self.manifest is None:
            detail = f": {self.reason}" if self.reason else ""
            raise NotReady(f"model {self.name!r} version {self.version} is {self.state.value}{detail}")
        return self.manifest

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Hold the runtime for one request: :meth:`drain` waits until every holder is done."""
        self._users += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._users -= 1
            if not self._users:
                self._idle.set()

    async def drain(self) -> None:
        """Wait until no request holds the runtime (call once it is no longer handed out)."""
        await self._idle.wait()

    def _new_batcher(
        self, run: Callable[[Tensors], Tensors] | None = None, suffix: str = ""
    ) -> AdaptiveBatcher:
        """A batcher over ``run`` (the model's ``predict`` by default) with this model's settings."""
        size, delay, observe = self._batching
        return AdaptiveBatcher(
            run or self.predict,
            name=f"{self.name}:{self.version}{suffix}",
            max_batch_size=size,
            max_delay_s=delay,
            observe=observe,
        )

    def _open_coalitions(self) -> None:
        """Load and check the coalition graph, if the manifest names one; log why if it is not used."""
        assert self.manifest is not None
        self._coalition_session, self.coalitions = None, None
        try:
            path = coalitions_file(self.manifest, self.path)
            if path is None:
                return
            session = self._create_session(path)
            check_coalitions(self.manifest, session, self.predict, self._probe())
        except Exception as exc:
            log.warning(
                "%s:%s explains with extra rows: its coalition graph is unusable (%s)",
                self.name,
                self.version,
                exc,
            )
            return
        self._coalition_session = session
        self.coalitions = self._new_batcher(self.predict_coalitions, ":coalitions")

    def _probe(self) -> Tensors:
        """Four rows of seeded random inputs, with masks that leave out one modality or none."""
        assert self.manifest is not None
        rng, rows, probe = np.random.default_rng(0), 4, {}
        for spec in self.manifest.inputs:
            dtype = NUMPY_DTYPES[spec.dtype]
            shape = [rows, *spec.shape[1:]]
            probe[spec.name] = (
                rng.integers(0, 128, shape).astype(dtype)
                if dtype == np.uint8
                else rng.random(shape).astype(dtype)
            )
        probe["mask"] = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=np.float32)
        return probe

    def _create_session(self, path: Path) -> ort.InferenceSession:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = self._threads
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), opts, providers=self._providers)
        except Exception as exc:
            if CUDA not in self._providers or self._cuda_required:
                raise ModelLoadError(f"onnxruntime cannot load model.onnx ({ort_status(exc)})") from exc
            log.warning("%s:%s does not start on CUDA (%s); using CPU", self.name, self.version, exc)
            session = None
        if session is None:
            try:
                session = ort.InferenceSession(str(path), opts, providers=[CPU])
            except Exception as exc:
                raise ModelLoadError(f"onnxruntime cannot load model.onnx ({ort_status(exc)})") from exc
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
