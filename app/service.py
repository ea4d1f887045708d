"""The inference pipeline. Knows nothing about HTTP: routers (v1, v2) call it and render the result.

It is also the routers' only door to the models: listing, metadata, readiness, the model lookup
and repository control (index, load, unload) go through it, so a route parses, calls, renders.

Every entry point holds one runtime from lookup to answer (:meth:`ModelRepository.serving`), so
a request is checked against the manifest of the model that runs it, and a reload lets it finish.
All share one path into each model's batcher, through the one validator (:mod:`app.checks`):

- :meth:`InferenceService.predict`: friendly samples in (media, arrays, text), answers out:
  limits -> decode (:mod:`app.inputs`) -> validate -> batch -> run -> split ->
  postprocess (:mod:`app.outputs`).
- :meth:`InferenceService.infer_v2`: a KServe V2 request body in, the response body out:
  parse (:mod:`app.v2.codec`) -> adapt (:mod:`app.v2.adapt`) -> validate -> batch -> encode.
- :meth:`InferenceService.infer`: model tensors in, tensors out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from app.batching import Tensors
from app.coalitions import widen
from app.config import Settings
from app.contract import parse_version
from app.decode_cost import adapt_v2, decode_request, parse_v2
from app.errors import BadRequest, ModelLoadError, NotFound, NotReady, PayloadTooLarge
from app.explain import AnswerPlan, ExplainMethod
from app.inputs import Limits, Sample, assemble, check_modalities
from app.media import MODALITIES
from app.metrics import Metrics
from app.outputs import Prediction, postprocess
from app.repository import IndexEntry, ModelRepository
from app.runtime import ModelRuntime, ModelState
from app.v2 import (
    check_outputs,
    encode_infer_response,
)
from app.v2.explain import EXPLANATION, run_explained, trust_plan


def path_version(name: str, text: str) -> int:
    """A version as a URL path names it; anything but a positive integer names no version (404).

    Both APIs answer the same: ``/v1/.../versions/0`` and ``/v2/.../versions/x`` are 404, like a
    version that is not on disk (a body field such as ``options.version`` is checked by its
    schema instead: 422).
    """
    version = parse_version(text)
    if version is None:
        raise NotFound(f"model {name!r} has no version {text!r}: versions are positive integers")
    return version


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """One row of the model listing: ``runtime`` is the default version's, ``None`` if never loaded."""

    name: str
    versions: list[int]
    latest: int
    runtime: ModelRuntime | None


@dataclass(frozen=True, slots=True)
class ModelView:
    """One model version for the metadata endpoints, with every version a request may name."""

    runtime: ModelRuntime
    versions: list[int]


@dataclass(frozen=True, slots=True)
class PredictOptions:
    """Per-request options of the friendly API.

    Attributes:
        top_k: how many labels to return, most probable first (clamped to the label count).
        explain: compute contributions, opinions and agreement (see :mod:`app.explain`).
        version: model version to use; ``None`` = the default (newest loaded) version.
        explain_method: ``shapley`` or ``leave_one_out`` (with ``explain``).
        min_confidence: abstain below this fused probability; ``None`` = the server's default.
        abstain_on_conflict: abstain when the present modalities' own answers disagree.
    """

    top_k: int = 3
    explain: bool = False
    version: int | None = None
    explain_method: ExplainMethod = "shapley"
    min_confidence: float | None = None
    abstain_on_conflict: bool = False


class InferenceService:
    """The pipeline over a :class:`ModelRepository`."""

    def __init__(
        self, repository: ModelRepository, settings: Settings, metrics: Metrics | None = None
    ) -> None:
        self.repository = repository
        self.settings = settings
        self.metrics = metrics
        self.limits = Limits(
            max_image_pixels=settings.max_image_pixels,
            max_audio_seconds=settings.max_audio_seconds,
            max_text_chars=settings.max_text_chars,
        )
        self._decode_hists = {}
        if metrics is not None:
            self._decode_hists = {m: metrics.decode.labels(m) for m in MODALITIES}

    # -- the model catalogue: listing, metadata, readiness -----------------------------------------
    def check_ready(self) -> None:
        """Server readiness: started, and every model that should answer can.

        Raises:
            NotReady: still starting, or a model's default version is not loaded (named).
        """
        self.repository.require_started()
        missing = self.repository.not_serving()
        if missing:
            raise NotReady(f"models that should be serving are not loaded: {missing}")

    def lookup(self, name: str) -> None:
        """Check that ``name`` can take requests, before a body meant for it is read.

        Raises:
            NotFound: unknown model. NotReady: server starting or model unloaded.
        """
        self.repository.require(name)

    def models(self) -> list[ModelSummary]:
        """Every model with its versions and the runtime of its default version (not loading any)."""
        repo, summaries = self.repository, []
        for name in repo.names():
            versions = repo.versions(name)
            latest = repo.default_version(name) or versions[-1]
            summaries.append(ModelSummary(name, versions, latest, repo.peek(name, latest)))
        return summaries

    async def describe(self, name: str, version: int | None = None) -> ModelView:
        """A model version for metadata: loaded on first use, may be not ready (state and reason).

        Raises:
            NotFound: unknown model or version. NotReady: server starting or model unloaded.
        """
        runtime = await self.repository.get(name, version)
        return ModelView(runtime, self.repository.versions(name))

    async def ready_runtime(self, name: str, version: int | None = None) -> ModelRuntime:
        """Per-model readiness: the runtime of a version that can answer now.

        Raises:
            NotFound: unknown model or version. NotReady: not loaded, with the state and reason.
        """
        return await self.repository.get_ready(name, version)

    # -- repository control -----------------------------------------------------------------------
    def index(self, *, only_ready: bool = False) -> list[IndexEntry]:
        """Every version on disk or serving, with its state (rescans the models directory)."""
        entries = self.repository.index()
        return [e for e in entries if e.state == ModelState.READY] if only_ready else entries

    async def load(self, name: str) -> ModelRuntime:
        """(Re)load the newest version of ``name`` and serve it once ready (see the repository).

        Raises:
            NotFound: no version folder of ``name`` on disk.
            NotReady: refused at load (the short reason; the old version keeps serving).
        """
        try:
            return await self.repository.load(name)
        except ModelLoadError as exc:
            raise NotReady(f"model {name!r} could not be loaded: {exc}") from exc

    async def unload(self, name: str) -> None:
        """Unload every version of ``name``; it answers 503 until loaded again."""
        await self.repository.unload(name)

    async def infer(self, name: str, version: int | None, inputs: Mapping[str, np.ndarray]) -> Tensors:
        """Run raw tensors through the model's batcher: ``{input: [N, ...]} -> {output: [N, ...]}``.

        ``inputs`` must hold exactly the manifest's inputs with its dtypes and shapes (dim 0 is
        the batch, the same for all). Output rows are views of the batch run, in input order.

        Raises:
            NotFound: unknown model or version (404).
            NotReady: server starting, model loading, refused or unloaded (503).
            InvalidInput: missing/unknown input, wrong dtype or shape, NaN or infinity (422).
            InferenceFailed: the model failed on valid input (500).
        """
        async with self.repository.serving(name, version) as runtime:
            return await runtime.batcher.submit(runtime.validate(inputs))

    async def infer_v2(
        self, name: str, version: int | None, body: bytes, *, header_length: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """A V2 inference request body -> the response body and its headers.

        Args:
            name: the model.
            version: the version the path names, ``None`` for the default one.
            body: the request body, already decompressed.
            header_length: the ``Inference-Header-Content-Length`` header, if sent.

        Raises:
            V2Error: a malformed request, or one the model cannot take (400).
            PayloadTooLarge: more rows than ``max_instances``, or text over its limit (413).
            NotFound, NotReady, InferenceFailed: as for :meth:`infer`.
        """
        # max_instances is checked from the shapes, before any data is read
        parsed = await parse_v2(body, header_length, self.settings.max_instances)
        async with self.repository.serving(name, version) as runtime:
            manifest = runtime.serving_manifest()
            plan = trust_plan(manifest, parsed.parameters, self.settings.min_confidence)
            check_outputs(parsed, [o.name for o in manifest.outputs] + ([EXPLANATION] if plan else []))
            inputs = await adapt_v2(runtime, parsed, self.settings.max_text_chars)
            outputs = await run_explained(runtime.batcher.submit, manifest, inputs, plan, runtime.coalitions)
        return encode_infer_response(
            parsed, outputs, model_name=name, model_version=runtime.version, labels=manifest.labels
        )

    async def predict(
        self, name: str, samples: Sequence[Sample], options: PredictOptions
    ) -> list[Prediction]:
        """Answer each sample, in order. Missing modalities go in as zeros with mask 0.

        Raises:
            BadRequest: no samples, a sample with no modality, unreadable payload (400).
            PayloadTooLarge: too many samples or a payload over a limit (413).
            InvalidInput: a modality the model does not take (422).
            NotFound, NotReady, InferenceFailed: as for :meth:`infer`.
        """
        if not samples:
            raise BadRequest("the request has no samples: send image, audio and/or text")
        if len(samples) > self.settings.max_instances:
            raise PayloadTooLarge(
                f"{len(samples)} instances, more than the limit of {self.settings.max_instances}"
            )
        async with self.repository.serving(name, options.version) as runtime:
            manifest = runtime.serving_manifest()
            check_modalities(samples, manifest)
            decoded = await decode_request(samples, manifest, self.limits, self._observe_decode)
            plan = AnswerPlan.of(manifest, options, self.settings.min_confidence)
            if plan.extra_rows and runtime.coalitions is not None:  # one pass: see app.coalitions
                inputs, layout = assemble(manifest, decoded)
                coalitions = await runtime.coalitions.submit(runtime.validate(inputs))
                outputs, layout = widen(manifest, coalitions, layout, plan)
            else:
                inputs, layout = assemble(manifest, decoded, plan.coalitions if plan.extra_rows else None)
                outputs = await runtime.batcher.submit(runtime.validate(inputs))
        return postprocess(manifest, outputs, layout, top_k=options.top_k, plan=plan)

    def _observe_decode(self, modality: str, seconds: float) -> None:
        hist = self._decode_hists.get(modality)
        if hist is not None:
            hist.observe(seconds)
