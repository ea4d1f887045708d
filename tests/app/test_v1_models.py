"""Health, model listing and metadata, /metrics, the API key, OpenAPI (through the ASGI app)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.app.conftest import PNG_B64, Serve

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "live"}
    assert (await client.get("/health/ready")).json() == {"status": "ready"}


async def test_not_ready_until_the_repository_is_loaded(models_dir: Path) -> None:
    app = create_app(Settings(models_dir=models_dir))  # lifespan not started: nothing loaded
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/health/live")).status_code == 200
        for response in (
            await c.get("/health/ready"),
            await c.get("/v1/models/late"),
            await c.post("/v1/models/late/predict", json={"text": "one"}),
        ):
            assert response.status_code == 503
            assert set(response.json()) == {"error", "request_id"}


async def test_list_models(client: httpx.AsyncClient) -> None:
    models = {m["name"]: m for m in (await client.get("/v1/models")).json()["models"]}
    assert set(models) == {
        "early",
        "intermediate",
        "late",
        "gated",
        "image_only",
        "audio_only",
        "text_only",
        "broken",
    }
    assert models["late"] == {
        "name": "late",
        "versions": [1, 2],
        "latest": 2,
        "fusion": "late",
        "modalities": ["image", "audio", "text"],
        "ready": True,
        "provider": "CPUExecutionProvider",
    }
    assert models["text_only"]["modalities"] == ["text"]
    assert models["broken"]["ready"] is False and models["broken"]["provider"] is None


async def test_model_metadata(client: httpx.AsyncClient) -> None:
    meta = (await client.get("/v1/models/gated")).json()
    assert (meta["name"], meta["version"], meta["fusion"], meta["ready"]) == ("gated", 1, "gated", True)
    assert meta["provider"] == "CPUExecutionProvider" and meta["explain"] == "shapley"
    assert meta["explain_methods"] == ["shapley", "leave_one_out"] and meta["gate_weights"] is True
    assert meta["coalition_graph"] is False  # a fake model shipped without one (tests/app/test_coalitions.py)
    text_only = (await client.get("/v1/models/text_only")).json()
    assert (text_only["explain"], text_only["explain_methods"], text_only["gate_weights"]) == (
        "none",
        [],
        False,
    )
    assert meta["labels"] == [str(i) for i in range(10)]
    assert meta["modalities"]["image"]["tensor"] == {"name": "image", "dtype": "uint8", "shape": [-1, 28, 28]}
    assert "png" in meta["modalities"]["image"]["formats"] and "wav" in meta["modalities"]["audio"]["formats"]
    assert meta["metrics"] == {"accuracy": 0.5}
    assert [o["name"] for o in meta["outputs"]] == ["logits", "weights"]
    assert [i["name"] for i in meta["inputs"]] == ["image", "audio", "text", "mask"]


async def test_version_metadata_loads_that_version(client: httpx.AsyncClient) -> None:
    meta = (await client.get("/v1/models/late/versions/1")).json()
    assert (meta["version"], meta["ready"], meta["versions"]) == (1, True, [1, 2])
    assert (await client.get("/v1/models/late")).json()["version"] == 2


async def test_a_refused_model_explains_itself(client: httpx.AsyncClient) -> None:
    meta = (await client.get("/v1/models/broken")).json()
    assert (meta["ready"], meta["state"]) == (False, "failed") and "protobuf" in meta["reason"].lower()
    response = await client.get("/v1/models/broken/ready")
    assert response.status_code == 503 and "failed" in response.json()["error"]


async def test_per_model_readiness(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models/late/ready")
    assert response.json() == {"name": "late", "version": 2, "ready": True}


@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        ("/v1/models/nope", 404, "'nope' not found"),
        ("/v1/models/late/versions/7", 404, "no version 7"),
        ("/v1/nowhere", 404, "no route"),
        *[
            (f"/{api}/models/late/versions/{v}{tail}", 404, "versions are positive integers")
            for api, tails in (("v1", [""]), ("v2", ["", "/ready"]))
            for v in ("0", "x", "007", "-1", "\u00b2")
            for tail in tails
        ],
    ],
)
async def test_metadata_errors(client: httpx.AsyncClient, path: str, status: int, needle: str) -> None:
    response = await client.get(path)
    assert response.status_code == status
    assert set(response.json()) == {"error", "request_id"} and needle in response.json()["error"]


async def test_metrics(client: httpx.AsyncClient) -> None:
    await client.post("/v1/models/late/predict", json={"image": {"b64": PNG_B64}, "text": "one"})
    await client.post("/v1/models/no-such-model/predict", json={"text": "one"})
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'fusion_requests_total{endpoint="/v1/models/{name}/predict",model="late",status="200"}' in text
    assert 'model="no-such-model"' not in text  # unknown names do not grow the label set
    assert 'fusion_request_duration_seconds_bucket{endpoint="/v1/models/{name}/predict"' in text
    assert 'fusion_decode_seconds_count{modality="image"}' in text
    assert 'fusion_model_ready{model="late",version="2"} 1.0' in text
    assert 'fusion_model_ready{model="broken",version="1"} 0.0' in text
    assert 'fusion_model_load_failures_total{model="broken"} 1.0' in text
    assert 'fusion_batch_rows_count{model="late"}' in text and "fusion_inference_seconds" in text


async def test_api_key(make_client: Serve) -> None:
    async with make_client(api_key="s3cret") as c:
        for path in ("/health/live", "/health/ready", "/metrics", "/docs", "/openapi.json"):
            assert (await c.get(path)).status_code == 200, path
        missing = await c.get("/v1/models")
        assert missing.status_code == 401 and "API key" in missing.json()["error"]
        assert missing.headers["www-authenticate"] == "Bearer"
        assert (await c.get("/v1/models", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await c.post("/v1/models/late/predict", json={"text": "x"})).status_code == 401
        assert (await c.get("/v1/models", headers={"Authorization": "Bearer s3cret"})).status_code == 200
        assert (await c.get("/v1/models", headers={"X-API-Key": "s3cret"})).status_code == 200


async def test_openapi_documents_predict_with_examples_that_work(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "PredictRequest" in spec["components"]["schemas"]
    examples = body["application/json"]["examples"]
    assert len(examples) >= 3
    for name, example in examples.items():
        response = await client.post("/v1/models/late/predict", json=example["value"])
        assert response.status_code == 200, (name, response.text)
