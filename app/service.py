"""The inference pipeline. Knows nothing about HTTP: routers (v1, v2) call it and render the result.

Two entry points share one path into each model's batcher:

- :meth:`InferenceService.infer`: tensors in, tensors out (the KServe V2 endpoints).
- :meth:`InferenceService.predict`: friendly samples in (media, arrays, text), answers out:
  limits -> decode (:mod:`app.inputs`) -> validate -> batch -> run -> split ->
  postprocess (:mod:`app.outputs`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from app.batching import Tensors
from app.config import Settings
from app.errors import BadRequest, PayloadTooLarge
from app.inputs import Limits, Sample, assemble, check_modalities, decode_samples
from app.metrics import Metrics
from app.outputs import Prediction, postprocess
from app.repository import ModelRepository
from app.runtime import ModelRuntime

# Payloads above this many bytes are decoded in a worker thread so that one big image or clip
# does not stall the event loop; small ones (the common case) are cheaper to decode inline.
INLINE_DECODE_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class PredictOptions:
    """Per-request options of the friendly API.

    Attributes:
        top_k: how many labels to return, most probable first (clamped to the label count).
        explain: compute per-modality contributions (see :mod:`app.outputs`).
        version: model version to use; ``None`` = the default (newest loaded) version.
    """

    top_k: int = 3
    explain: bool = False
    version: int | None = None


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
            self._decode_hists = {m: metrics.decode.labels(m) for m in ("image", "audio", "text")}

    async def model(self, name: str, version: int | None = None) -> ModelRuntime:
        """The runtime of a model version for metadata (loaded on first use, may be not ready).

        Raises:
            NotFound: unknown model or version. NotReady: server starting or model unloaded.
        """
        return await self.repository.get(name, version)

    async def infer(self, name: str, version: int | None, inputs: Mapping[str, np.ndarray]) -> Tensors:
        """Run raw tensors through the model's batcher: ``{input: [N, ...]} -> {output: [N, ...]}``.

        ``inputs`` must hold exactly the manifest's inputs with its dtypes and shapes (dim 0 is
        the batch, the same for all). Output rows are views of the batch run, in input order.

        Raises:
            NotFound: unknown model or version (404).
            NotReady: server starting, model loading, refused or unloaded (503).
            InvalidInput: missing/unknown input, wrong dtype or shape (422).
            InferenceFailed: the model failed on valid input (500).
        """
        runtime = await self.repository.get_ready(name, version)
        return await runtime.batcher.submit(runtime.validate(inputs))

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
        runtime = await self.repository.get_ready(name, options.version)
        manifest = runtime.manifest
        assert manifest is not None
        check_modalities(samples, manifest)
        size = sum(raw.size for sample in samples for raw in sample.values())
        if size > INLINE_DECODE_BYTES:
            decoded = await asyncio.to_thread(
                decode_samples, samples, manifest, self.limits, self._observe_decode
            )
        else:
            decoded = decode_samples(samples, manifest, self.limits, self._observe_decode)
        leave_one_out = options.explain and manifest.explain.method == "leave_one_out"
        inputs, layout = assemble(manifest, decoded, leave_one_out)
        outputs = await runtime.batcher.submit(runtime.validate(inputs))
        return postprocess(manifest, outputs, layout, top_k=options.top_k, explain=options.explain)

    def _observe_decode(self, modality: str, seconds: float) -> None:
        hist = self._decode_hists.get(modality)
        if hist is not None:
            hist.observe(seconds)
