"""The friendly API: model listing and metadata, predict (JSON or multipart). Thin: parse, call, render."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from app.api.deps import ApiKeyDep, ServiceDep
from app.api.parsing import parse_predict
from app.explain import EXPLAIN_METHODS
from app.schemas import (
    ModelList,
    ModelMetadata,
    ModelReadiness,
    PredictionsResponse,
    PredictResponse,
    error_responses,
)
from app.service import ModelSummary, ModelView, path_version


def _plain(value: Any) -> Any:
    """numpy scalars and arrays, should an answer ever carry one, as JSON numbers and lists."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise NotImplementedError(f"cannot encode {type(value).__name__} as JSON")


_ENCODER = msgspec.json.Encoder(enc_hook=_plain)
FORMATS = {
    "image": ["png", "jpeg", "bmp", "gif", "tiff", "webp", "array"],
    "audio": ["wav", "flac", "ogg", "array"],
    "text": ["utf-8"],
}


router = APIRouter(prefix="/v1", tags=["v1"], dependencies=[ApiKeyDep], responses=error_responses(401, 503))
NameParam = Path(description="Model name", examples=["late"])
VersionParam = Path(description="Model version (a positive integer)", examples=["1"])


@router.get("/models", response_model=ModelList, summary="Every model, its versions and readiness")
async def list_models(service: ServiceDep) -> dict[str, Any]:
    return {"models": [_summary(s) for s in service.models()]}


@router.get(
    "/models/{name}",
    response_model=ModelMetadata,
    responses=error_responses(404),
    summary="Metadata of the default version",
)
async def model_metadata(service: ServiceDep, name: str = NameParam) -> dict[str, Any]:
    return _metadata(await service.describe(name))


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    responses=error_responses(404),
    summary="Metadata of one version (loaded on first use; not a positive integer: 404)",
)
async def version_metadata(
    service: ServiceDep, name: str = NameParam, version: str = VersionParam
) -> dict[str, Any]:
    return _metadata(await service.describe(name, path_version(name, version)))


@router.get(
    "/models/{name}/ready",
    response_model=ModelReadiness,
    responses=error_responses(404),
    summary="200 when the default version is ready, else 503",
)
async def model_ready(service: ServiceDep, name: str = NameParam) -> dict[str, Any]:
    runtime = await service.ready_runtime(name)  # NotReady (503) naming the state and the reason
    return {"name": name, "version": runtime.version, "ready": True}


@router.post(
    "/models/{name}/predict",
    summary="Classify one sample or several (any non-empty subset of image, audio, text)",
    response_model=None,
    responses={
        200: {"model": PredictResponse | PredictionsResponse, "description": "One answer, or {predictions}"},
        **error_responses(400, 404, 413, 422),
    },
)
async def predict(request: Request, service: ServiceDep, name: str = NameParam) -> Response:
    service.lookup(name)  # 404/503 before reading a body meant for nothing
    samples, options, many = await parse_predict(request)
    answers = await service.predict(name, samples, options)
    if many:
        return _json({"predictions": [a.to_dict() for a in answers]})
    return _json(answers[0].to_dict())


def _json(content: dict[str, Any]) -> Response:
    """The answer as compact UTF-8 JSON, as ``JSONResponse`` writes it, by msgspec (a few times
    faster; answers hold only finite numbers: probabilities and contributions)."""
    return Response(_ENCODER.encode(content), media_type="application/json")


def _summary(summary: ModelSummary) -> dict[str, Any]:
    runtime = summary.runtime
    manifest = runtime.manifest if runtime else None
    return {
        "name": summary.name,
        "versions": summary.versions,
        "latest": summary.latest,
        "fusion": manifest.fusion if manifest else None,
        "modalities": list(manifest.modalities) if manifest else [],
        "ready": bool(runtime and runtime.ready),
        "provider": runtime.provider if runtime else None,
    }


def _metadata(view: ModelView) -> dict[str, Any]:
    runtime = view.runtime
    meta: dict[str, Any] = {
        "name": runtime.name,
        "version": runtime.version,
        "versions": view.versions,
        "fusion": None,
        "description": "",
        "modalities": {},
        "labels": [],
        "provider": runtime.provider,
        "ready": runtime.ready,
        "state": runtime.state.value,
        "reason": runtime.reason,
        "explain": None,
        "explain_methods": [],
        "gate_weights": False,
        "coalition_graph": False,
        "metrics": {},
        "inputs": [],
        "outputs": [],
        "spec": None,
    }
    m = runtime.manifest
    if m is not None:
        meta |= {
            "fusion": m.fusion,
            "description": m.description,
            "modalities": {
                mod: {"formats": FORMATS[mod], "tensor": m.input(mod).model_dump()} for mod in m.modalities
            },
            "labels": m.labels,
            # What predict does (app.explain), not the manifest's historical explain.method
            "explain": EXPLAIN_METHODS[0] if m.has_mask else "none",
            "explain_methods": list(EXPLAIN_METHODS) if m.has_mask else [],
            "gate_weights": m.explain.method == "gate_weights",
            "coalition_graph": runtime.coalitions is not None,
            "metrics": m.metrics,
            "inputs": [t.model_dump() for t in m.inputs],
            "outputs": [t.model_dump() for t in m.outputs],
            "spec": m.decode.describe(),
        }
    return meta
