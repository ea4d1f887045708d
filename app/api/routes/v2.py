"""The Open Inference Protocol (KServe V2) over HTTP, for tensor clients such as ``tritonclient``.

Thin: :mod:`app.v2` parses and builds the bodies, :class:`~app.service.InferenceService` runs
the tensors through the same batcher as ``/v1``. Health is open; everything else needs the API
key when one is set. Errors are ``{"error": ...}``: 400 malformed, 404 unknown, 503 not ready.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from app.api.deps import ApiKeyDep, RepositoryDep, ServiceDep
from app.errors import InvalidInput, ModelLoadError, NotFound, NotReady
from app.manifest import Manifest
from app.runtime import ModelRuntime
from app.schemas import ErrorBody
from app.service import INLINE_DECODE_BYTES, InferenceService
from app.v2 import (
    HEADER_LENGTH,
    V2Error,
    check_outputs,
    encode_infer_response,
    parse_infer_request,
    to_model_inputs,
)
from app.v2.compression import compress, decompress, negotiate
from app.v2.schemas import (
    INFER_REQUEST_SCHEMA,
    ModelMetadata,
    ModelReady,
    RepositoryModel,
    ServerMetadata,
    model_metadata,
)

EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "parameters"]
"""What ``GET /v2`` lists: the binary tensor data extension, Triton's classification extension,
repository control (index, load, unload) and request ``parameters`` echoed in the response."""
STATES = {"ready": "READY", "loading": "LOADING", "failed": "UNAVAILABLE", "unloaded": "UNAVAILABLE"}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


health = APIRouter(prefix="/v2", tags=["v2"])
api = APIRouter(prefix="/v2", tags=["v2"], dependencies=[ApiKeyDep], responses=_errors(401, 503))
NameParam = Path(description="Model name", examples=["late"])
VersionParam = Path(description="Model version (a positive integer)", examples=["1"])


@health.get("/health/live", summary="The process is up")
async def live() -> dict[str, bool]:
    return {"live": True}


@health.get("/health/ready", summary="Every model has been loaded (503 until then)", responses=_errors(503))
async def ready(repository: RepositoryDep) -> dict[str, bool]:
    if not repository.ready:
        raise NotReady("not ready: models are still loading")
    return {"ready": True}


@api.get("", response_model=ServerMetadata, summary="Server name, version and protocol extensions")
async def server_metadata(request: Request) -> ServerMetadata:
    return ServerMetadata(name="fusionserve", version=request.app.version, extensions=EXTENSIONS)


@api.get("/models/{name}", response_model=ModelMetadata, responses=_errors(404))
async def metadata(service: ServiceDep, name: str = NameParam) -> ModelMetadata:
    """Inputs and outputs (datatype, shape; -1 is the batch) of the default version."""
    return _metadata(service, await service.model(name))


@api.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=_errors(404))
async def version_metadata(
    service: ServiceDep, name: str = NameParam, version: str = VersionParam
) -> ModelMetadata:
    """Inputs and outputs of one version (loaded on first use)."""
    return _metadata(service, await service.model(name, _version(name, version)))


@api.get("/models/{name}/ready", response_model=ModelReady, responses=_errors(404))
async def model_ready(service: ServiceDep, name: str = NameParam) -> ModelReady:
    """200 when the default version can answer, else 503."""
    return _ready(await service.model(name))


@api.get("/models/{name}/versions/{version}/ready", response_model=ModelReady, responses=_errors(404))
async def version_ready(
    service: ServiceDep, name: str = NameParam, version: str = VersionParam
) -> ModelReady:
    """200 when this version can answer, else 503."""
    return _ready(await service.model(name, _version(name, version)))


INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "JSON, or a JSON header of Inference-Header-Content-Length bytes + binary outputs"},
    **_errors(400, 404, 413),
}
INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": INFER_REQUEST_SCHEMA},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "JSON header of Inference-Header-Content-Length bytes, then binary inputs",
            },
        },
    }
}


@api.post(
    "/models/{name}/infer",
    summary="Run the default version on tensors",
    response_class=Response,
    responses=INFER_RESPONSES,
    openapi_extra=INFER_BODY,
)
async def infer(request: Request, service: ServiceDep, name: str = NameParam) -> Response:
    return await _infer(request, service, name, None)


@api.post(
    "/models/{name}/versions/{version}/infer",
    summary="Run one version on tensors",
    response_class=Response,
    responses=INFER_RESPONSES,
    openapi_extra=INFER_BODY,
)
async def version_infer(
    request: Request, service: ServiceDep, name: str = NameParam, version: str = VersionParam
) -> Response:
    return await _infer(request, service, name, _version(name, version))


@api.post("/repository/index", response_model=list[RepositoryModel], summary="Every version on disk")
async def repository_index(request: Request, repository: RepositoryDep) -> list[RepositoryModel]:
    """Rescans the models directory. Body (optional): ``{"ready": true}`` lists only ready ones."""
    only_ready = (await _json_object(request)).get("ready", False)
    if not isinstance(only_ready, bool):
        raise V2Error(f"ready must be true or false, got {only_ready!r}")
    rows = [
        RepositoryModel(
            name=e.name, version=str(e.version), state=STATES.get(e.state, "UNAVAILABLE"), reason=e.reason
        )
        for e in repository.index()
    ]
    return [r for r in rows if r.state == "READY"] if only_ready else rows


@api.post("/repository/models/{name}/load", response_model=ModelReady, responses=_errors(404))
async def load(request: Request, repository: RepositoryDep, name: str = NameParam) -> ModelReady:
    """(Re)load the newest version on disk (one copied in after start included) and serve it."""
    params = (await _json_object(request)).get("parameters") or {}
    if not isinstance(params, dict) or params:
        raise V2Error("load takes no parameters: copy the version into the models directory, then load")
    try:
        runtime = await repository.load(name)
    except ModelLoadError as exc:
        raise NotReady(f"model {name!r} could not be loaded: {exc}") from exc
    return ModelReady(name=name, version=str(runtime.version), ready=True)


@api.post("/repository/models/{name}/unload", response_model=ModelReady, responses=_errors(404))
async def unload(request: Request, repository: RepositoryDep, name: str = NameParam) -> ModelReady:
    """Unload every version of ``name``: it answers 503 until loaded again; other models go on."""
    await _json_object(request)  # tritonclient sends {"parameters": {"unload_dependents": false}}
    await repository.unload(name)
    return ModelReady(name=name, ready=False)


async def _infer(request: Request, service: InferenceService, name: str, version: int | None) -> Response:
    service.repository.require(name)  # 404/503 before reading a body meant for nothing
    settings = service.settings
    body = decompress(
        await request.body(), request.headers.get("content-encoding"), max_bytes=settings.max_body_bytes
    )
    header = request.headers.get(HEADER_LENGTH)
    if len(body) > INLINE_DECODE_BYTES:  # a big JSON body takes milliseconds: keep the loop free
        parsed = await asyncio.to_thread(parse_infer_request, body, header)
    else:
        parsed = parse_infer_request(body, header)
    runtime = await service.model(name, version)
    manifest = _serving(runtime)
    check_outputs(parsed, [o.name for o in manifest.outputs])
    inputs = to_model_inputs(
        manifest, parsed.inputs, parsed.datatypes, max_text_chars=settings.max_text_chars
    )
    try:
        outputs = await service.infer(name, runtime.version, inputs)
    except InvalidInput as exc:  # the protocol says 400 for a request the model cannot take
        raise V2Error(exc.message) from exc
    content, headers = encode_infer_response(
        parsed, outputs, model_name=name, model_version=runtime.version, labels=manifest.labels
    )
    encoding = negotiate(request.headers.get("accept-encoding"))
    if encoding is not None:
        content, headers["Content-Encoding"] = compress(content, encoding), encoding
    return Response(content=content, headers=headers)


def _version(name: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise NotFound(f"model {name!r} has no version {text!r}: versions are positive integers")
    return int(text)


def _serving(runtime: ModelRuntime) -> Manifest:
    """The manifest of a runtime that can answer now, else :class:`NotReady` with the reason."""
    if not runtime.ready or runtime.manifest is None:
        detail = f": {runtime.reason}" if runtime.reason else ""
        raise NotReady(f"model {runtime.name!r} version {runtime.version} is {runtime.state.value}{detail}")
    return runtime.manifest


def _metadata(service: InferenceService, runtime: ModelRuntime) -> ModelMetadata:
    """From the manifest, which a version refused at load may still have (as ``/v1`` shows it)."""
    manifest = runtime.manifest if runtime.manifest is not None else _serving(runtime)
    return model_metadata(manifest, service.repository.versions(runtime.name))


def _ready(runtime: ModelRuntime) -> ModelReady:
    _serving(runtime)
    return ModelReady(name=runtime.name, version=str(runtime.version), ready=True)


async def _json_object(request: Request) -> dict[str, Any]:
    """The optional JSON object body of the repository endpoints (empty body = ``{}``)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise V2Error(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise V2Error(f"the body must be a JSON object, not {type(doc).__name__}")
    return doc


router = APIRouter()
router.include_router(health)
router.include_router(api)
