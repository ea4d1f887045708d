"""The Open Inference Protocol (KServe V2) over HTTP, for tensor clients such as ``tritonclient``.

Thin: the route reads the body and its headers, :meth:`~app.service.InferenceService.infer_v2`
does the rest (parse, adapt, validate, batch, encode) through the same batcher as ``/v1``.
Health is open; everything else needs the API key when one is set. Repository control (index,
load, unload) is off unless ``FUSION_REPOSITORY_CONTROL`` is true (403), and then needs
``FUSION_ADMIN_API_KEY`` when that is set. Errors are ``{"error": ..., "request_id": ...}``:
400 malformed, 403 control off, 404 unknown model or version, 413 over a limit, 503 not ready.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from app.api.deps import ApiKeyDep, RepositoryControlDep, ServiceDep
from app.runtime import ModelRuntime
from app.schemas import error_responses
from app.service import InferenceService, ModelView, path_version
from app.v2 import HEADER_LENGTH, V2Error, load_json_object
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
repository control (index, load, unload; only where ``FUSION_REPOSITORY_CONTROL`` allows it) and
request ``parameters`` echoed in the response."""
STATES = {"ready": "READY", "loading": "LOADING", "failed": "UNAVAILABLE", "unloaded": "UNAVAILABLE"}


health = APIRouter(prefix="/v2", tags=["v2"])
api = APIRouter(prefix="/v2", tags=["v2"], dependencies=[ApiKeyDep], responses=error_responses(401, 503))
control = APIRouter(
    prefix="/v2/repository",
    tags=["v2"],
    dependencies=[RepositoryControlDep],
    responses=error_responses(401, 403, 503),
)
NameParam = Path(description="Model name", examples=["late"])
VersionParam = Path(description="Model version (a positive integer)", examples=["1"])


@health.get("/health/live", summary="The process is up")
async def live() -> dict[str, bool]:
    return {"live": True}


@health.get(
    "/health/ready",
    summary="Models loaded and every model that should serve is serving (else 503)",
    responses=error_responses(503),
)
async def ready(service: ServiceDep) -> dict[str, bool]:
    service.check_ready()
    return {"ready": True}


@api.get("", response_model=ServerMetadata, summary="Server name, version and protocol extensions")
async def server_metadata(request: Request) -> ServerMetadata:
    control = request.app.state.settings.repository_control
    extensions = [e for e in EXTENSIONS if control or e != "model_repository"]
    return ServerMetadata(name="fusionserve", version=request.app.version, extensions=extensions)


@api.get("/models/{name}", response_model=ModelMetadata, responses=error_responses(404))
async def metadata(service: ServiceDep, name: str = NameParam) -> ModelMetadata:
    """Inputs and outputs (datatype, shape; -1 is the batch) of the default version."""
    return _metadata(await service.describe(name))


@api.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=error_responses(404))
async def version_metadata(
    service: ServiceDep, name: str = NameParam, version: str = VersionParam
) -> ModelMetadata:
    """Inputs and outputs of one version (loaded on first use)."""
    return _metadata(await service.describe(name, path_version(name, version)))


@api.get("/models/{name}/ready", response_model=ModelReady, responses=error_responses(404))
async def model_ready(service: ServiceDep, name: str = NameParam) -> ModelReady:
    """200 when the default version can answer, else 503."""
    return _ready(await service.ready_runtime(name))


@api.get("/models/{name}/versions/{version}/ready", response_model=ModelReady, responses=error_responses(404))
async def version_ready(
    service: ServiceDep, name: str = NameParam, version: str = VersionParam
) -> ModelReady:
    """200 when this version can answer, else 503."""
    return _ready(await service.ready_runtime(name, path_version(name, version)))


INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "JSON, or a JSON header of Inference-Header-Content-Length bytes + binary outputs"},
    **error_responses(400, 404, 413),
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
    return await infer_endpoint(request, service, name, None)


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
    return await infer_endpoint(request, service, name, path_version(name, version))


@control.post("/index", response_model=list[RepositoryModel], summary="Every version on disk or serving")
async def repository_index(request: Request, service: ServiceDep) -> list[RepositoryModel]:
    """Rescans the models directory. Body (optional): ``{"ready": true}`` lists only ready ones.

    The rescan only makes new folders known; it never stops a loaded version (``load`` does).
    """
    only_ready = (await _json_object(request)).get("ready", False)
    if not isinstance(only_ready, bool):
        raise V2Error(f"ready must be true or false, got {only_ready!r}")
    return [
        RepositoryModel(
            name=e.name, version=str(e.version), state=STATES.get(e.state, "UNAVAILABLE"), reason=e.reason
        )
        for e in service.index(only_ready=only_ready)
    ]


@control.post("/models/{name}/load", response_model=ModelReady, responses=error_responses(404))
async def load(request: Request, service: ServiceDep, name: str = NameParam) -> ModelReady:
    """(Re)load the newest version on disk (one copied in after start included) and serve it."""
    params = (await _json_object(request)).get("parameters") or {}
    if not isinstance(params, dict) or params:
        raise V2Error("load takes no parameters: copy the version into the models directory, then load")
    runtime = await service.load(name)
    return ModelReady(name=name, version=str(runtime.version), ready=True)


@control.post("/models/{name}/unload", response_model=ModelReady, responses=error_responses(404))
async def unload(request: Request, service: ServiceDep, name: str = NameParam) -> ModelReady:
    """Unload every version of ``name``: it answers 503 until loaded again; other models go on."""
    await _json_object(request)  # tritonclient sends {"parameters": {"unload_dependents": false}}
    await service.unload(name)
    return ModelReady(name=name, ready=False)


async def infer_endpoint(
    request: Request, service: InferenceService, name: str, version: int | None
) -> Response:
    """The V2 inference route itself (also called by :mod:`app.api.routes.hot`)."""
    service.lookup(name)  # 404/503 before reading a body meant for nothing
    body = decompress(
        await request.body(),
        request.headers.get("content-encoding"),
        max_bytes=service.settings.max_body_bytes,
    )
    content, headers = await service.infer_v2(
        name, version, body, header_length=request.headers.get(HEADER_LENGTH)
    )
    encoding = negotiate(request.headers.get("accept-encoding"))
    if encoding is not None:
        content, headers["Content-Encoding"] = compress(content, encoding), encoding
    return Response(content=content, headers=headers)


def _metadata(view: ModelView) -> ModelMetadata:
    """From the manifest, which a version refused at load may still have (as ``/v1`` shows it)."""
    runtime = view.runtime
    manifest = runtime.manifest if runtime.manifest is not None else runtime.serving_manifest()
    return model_metadata(manifest, view.versions)


def _ready(runtime: ModelRuntime) -> ModelReady:
    runtime.serving_manifest()  # NotReady (503) naming the state and the reason
    return ModelReady(name=runtime.name, version=str(runtime.version), ready=True)


async def _json_object(request: Request) -> dict[str, Any]:
    """The optional JSON object body of the repository endpoints (empty body = ``{}``)."""
    raw = await request.body()
    return load_json_object(raw, "the body") if raw.strip() else {}


router = APIRouter()
router.include_router(health)
router.include_router(api)
router.include_router(control)
