"""The V2 endpoints over raw HTTP through the ASGI app: metadata, health, infer (JSON and binary), errors."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.batching import AdaptiveBatcher
from app.config import Settings
from app.main import create_app
from app.media import encode_text
from tests.app.conftest import Serve
from tests.app.v2_helpers import binary_request, json_request, read_result, reference, sample_inputs, texts

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def infer(client: httpx.AsyncClient, model: str, doc: dict[str, Any]) -> Any:
    response = await client.post(f"/v2/models/{model}/infer", json=doc)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def output(doc: dict[str, Any], name: str) -> np.ndarray:
    (entry,) = [o for o in doc["outputs"] if o["name"] == name]
    return np.array(entry["data"], dtype=np.float32).reshape(entry["shape"])


# -- server and model metadata, health --------------------------------------------------------------
async def test_server_metadata_lists_the_extensions(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/v2")).json()
    assert doc["name"] == "fusionserve"
    assert doc["version"]
    assert {"binary_tensor_data", "classification", "parameters"} <= set(doc["extensions"])
    assert "model_repository" not in doc["extensions"]  # repository control is off by default


async def test_server_metadata_lists_repository_control_only_when_on(make_client: Any) -> None:
    async with make_client(repository_control=True) as client:
        assert "model_repository" in (await client.get("/v2")).json()["extensions"]


async def test_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/health/ready")).json() == {"ready": True}


async def test_not_ready_before_the_repository_is_loaded(models_dir: Path) -> None:
    app = create_app(Settings(models_dir=models_dir))  # lifespan not started
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/v2/health/live")).status_code == 200
        for response in (
            await c.get("/v2/health/ready"),
            await c.get("/v2/models/late"),
            await c.get("/v2/models/late/ready"),
            await c.post("/v2/models/late/infer", json=json_request({"text": texts("un")})),
        ):
            assert response.status_code == 503
            assert set(response.json()) == {"error", "request_id"}


async def test_model_metadata_from_the_manifest(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/v2/models/gated")).json()
    assert doc["name"] == "gated"
    assert doc["versions"] == ["1"]
    assert doc["platform"] == "onnxruntime_onnx"
    assert doc["inputs"] == [
        {"name": "image", "datatype": "UINT8", "shape": [-1, 28, 28]},
        {"name": "audio", "datatype": "FP32", "shape": [-1, 16000]},
        {"name": "text", "datatype": "UINT8", "shape": [-1, 64]},
        {"name": "mask", "datatype": "FP32", "shape": [-1, 3]},
    ]
    assert doc["outputs"] == [
        {"name": "logits", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "weights", "datatype": "FP32", "shape": [-1, 3]},
    ]
    assert doc["parameters"]["labels"] == [str(i) for i in range(10)]
    text_only = (await client.get("/v2/models/text_only/versions/1")).json()
    assert [t["name"] for t in text_only["inputs"]] == ["text"]
    late = (await client.get("/v2/models/late/versions/1")).json()
    assert (late["versions"], late["parameters"]["version"]) == (["1", "2"], "1")


async def test_readiness_per_model_and_version(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/models/late/ready")).json() == {
        "name": "late",
        "version": "2",
        "ready": True,
    }
    assert (await client.get("/v2/models/late/versions/1/ready")).json()["version"] == "1"
    broken = await client.get("/v2/models/broken/ready")
    assert broken.status_code == 503
    assert "broken" in broken.json()["error"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/nope", 404),
        ("/v2/models/nope/ready", 404),
        ("/v2/models/late/versions/7", 404),
        ("/v2/models/late/versions/x", 404),
        ("/v2/models/late/versions/0/ready", 404),
        ("/v2/models/late/versions/%C2%B2", 404),  # "²": str.isdigit() says yes, int() says no
        ("/v2/models/late/versions/%D9%A1/ready", 404),  # Arabic-Indic 1: int() would take it
        ("/v2/models/broken", 200),  # the manifest is fine; the graph is what failed
        ("/v2/nowhere", 404),
    ],
)
async def test_metadata_errors(client: httpx.AsyncClient, path: str, status: int) -> None:
    response = await client.get(path)
    assert response.status_code == status
    if status != 200:
        assert set(response.json()) == {"error", "request_id"}


# -- inference --------------------------------------------------------------------------------------
async def test_json_infer_matches_onnxruntime(client: httpx.AsyncClient, models_dir: Path) -> None:
    inputs = sample_inputs(rows=3)
    doc = await infer(client, "late", json_request(inputs, id="req-1", parameters={"trace": "x"}))
    assert (doc["model_name"], doc["model_version"], doc["id"]) == ("late", "2", "req-1")
    assert doc["parameters"] == {"trace": "x"}
    np.testing.assert_allclose(
        output(doc, "logits"), reference(models_dir, "late", 2, inputs)["logits"], rtol=1e-5
    )


async def test_binary_infer_matches_onnxruntime(client: httpx.AsyncClient, models_dir: Path) -> None:
    inputs = sample_inputs(rows=2, seed=3)
    body, headers = binary_request(inputs, request_id="b")
    response = await client.post("/v2/models/gated/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    result = read_result(response.content, response.headers)
    want = reference(models_dir, "gated", 1, inputs)
    for name in ("logits", "weights"):  # no outputs named: tritonclient asks for all, binary
        assert result.get_output(name)["parameters"]["binary_data_size"] == want[name].nbytes
        np.testing.assert_allclose(result.as_numpy(name), want[name], rtol=1e-5)
    assert result.get_response()["id"] == "b"


async def test_text_as_bytes_or_uint8_gives_the_same_answer(client: httpx.AsyncClient) -> None:
    as_bytes = await infer(client, "text_only", json_request({"text": texts("sept", "élan")}))
    as_rows = texts("sept", "élan").reshape(2, 1)
    binary_body, headers = binary_request({"text": as_rows})
    response = await client.post("/v2/models/text_only/infer", content=binary_body, headers=headers)
    encoded = np.stack([encode_text("sept"), encode_text("élan")])
    as_uint8 = await infer(client, "text_only", json_request({"text": encoded}))
    np.testing.assert_array_equal(output(as_bytes, "logits"), output(as_uint8, "logits"))
    np.testing.assert_array_equal(
        read_result(response.content, response.headers).as_numpy("logits"), output(as_uint8, "logits")
    )


async def test_an_omitted_modality_is_masked(client: httpx.AsyncClient, models_dir: Path) -> None:
    full = sample_inputs(rows=2, seed=5, mask=False)
    partial = {"image": full["image"], "text": full["text"]}
    doc = await infer(client, "late", json_request(partial))
    want = reference(models_dir, "late", 2, partial)["logits"]  # audio zeros, mask [1, 0, 1]
    np.testing.assert_allclose(output(doc, "logits"), want, rtol=1e-5)
    explicit = {**partial, "mask": np.array([[1, 0, 1], [1, 0, 1]], dtype=np.float32)}
    np.testing.assert_array_equal(
        output(await infer(client, "late", json_request(explicit)), "logits"), output(doc, "logits")
    )
    text_off = {**partial, "mask": np.array([[1, 0, 0], [1, 0, 0]], dtype=np.float32)}
    image_only = reference(models_dir, "late", 2, {"image": full["image"]})["logits"]
    np.testing.assert_allclose(
        output(await infer(client, "late", json_request(text_off)), "logits"), image_only, rtol=1e-5
    )


async def test_output_selection_binary_choice_and_classification(client: httpx.AsyncClient) -> None:
    inputs = sample_inputs(rows=1, seed=2)
    outputs = [
        {"name": "weights", "parameters": {"binary_data": True}},
        {"name": "logits", "parameters": {"classification": 3}},
    ]
    response = await client.post("/v2/models/gated/infer", json=json_request(inputs, outputs=outputs))
    result = read_result(response.content, response.headers)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["weights", "logits"]
    weights = result.as_numpy("weights")
    assert weights.shape == (1, 3)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)
    top = result.get_output("logits")
    assert (top["datatype"], top["shape"]) == ("BYTES", [1, 3])
    value, index, label = top["data"][0].split(":")
    assert label == index and float(value) >= float(top["data"][1].split(":")[0])


async def test_a_named_version_answers(client: httpx.AsyncClient, models_dir: Path) -> None:
    inputs = sample_inputs(rows=1, seed=9)
    response = await client.post("/v2/models/late/versions/1/infer", json=json_request(inputs))
    doc = response.json()
    assert doc["model_version"] == "1"
    np.testing.assert_allclose(
        output(doc, "logits"), reference(models_dir, "late", 1, inputs)["logits"], rtol=1e-5
    )


async def test_concurrent_requests_share_the_batcher_without_mixing(
    client: httpx.AsyncClient, models_dir: Path
) -> None:
    requests = [sample_inputs(rows=1 + i % 3, seed=i) for i in range(12)]
    answers = await asyncio.gather(*(infer(client, "late", json_request(r)) for r in requests))
    for inputs, doc in zip(requests, answers, strict=True):
        np.testing.assert_allclose(
            output(doc, "logits"), reference(models_dir, "late", 2, inputs)["logits"], rtol=1e-5
        )


async def test_compressed_request_and_response(client: httpx.AsyncClient) -> None:
    doc = json_request({"text": texts("neuf")})
    plain = await infer(client, "text_only", doc)
    response = await client.post(
        "/v2/models/text_only/infer",
        content=gzip.compress(json.dumps(doc).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == plain  # httpx inflates the gzip answer it asked for by default
    assert response.headers["content-encoding"] == "gzip"


# -- errors -----------------------------------------------------------------------------------------
TEXT = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["un"]}
BAD_REQUESTS = [
    ({"inputs": [{**TEXT, "name": "depth"}]}, "has no input 'depth'"),
    (
        {"inputs": [{**TEXT, "datatype": "FP32", "data": [1.0], "shape": [1]}]},
        "input 'text' has dtype float32; the model wants uint8",
    ),
    (
        {"inputs": [{"name": "text", "shape": [1, 63], "datatype": "UINT8", "data": [1] * 63}]},
        "has shape [1, 63]",
    ),
    ({"inputs": [{**TEXT, "shape": [2]}]}, "data has 1 elements; shape [2] needs 2"),
    ({"inputs": [{"name": "mask", "shape": [1, 3], "datatype": "FP32", "data": [1, 1, 1]}]}, "at least one"),
    ({"inputs": [TEXT], "outputs": [{"name": "probs"}]}, "unknown output 'probs'"),
    ({"inputs": [TEXT, TEXT]}, "given twice"),
    ({"inputs": []}, "non-empty list"),
    ({"inputs": [{**TEXT, "data": [""]}]}, "row 0 is empty"),
    ({"inputs": [{**TEXT, "shape": [0, 1 << 63], "data": []}]}, "over the limit"),
    (
        {
            "inputs": [
                {"name": "audio", "shape": [1, 16000], "datatype": "FP32", "data": [0.0] * 15999 + [1e39]}
            ]
        },
        "holds NaN or infinite values",
    ),  # 1e39 is inf as FP32
    ({"inputs": [TEXT], "parameters": {"x": float("inf")}}, "Infinity is not a JSON value"),
]


@pytest.mark.parametrize(("doc", "message"), BAD_REQUESTS)
async def test_bad_requests_are_400_before_inference(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, doc: dict[str, Any], message: str
) -> None:
    async def must_not_run(*args: Any) -> None:
        raise AssertionError("an invalid request reached the batcher")

    monkeypatch.setattr(AdaptiveBatcher, "submit", must_not_run)
    content = json.dumps(doc).encode()  # Python writes NaN and Infinity, which are not JSON
    response = await client.post("/v2/models/late/infer", content=content)
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [
        (b"{not json", {}, 400, "not valid JSON"),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "x"}, 400, "whole number"),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "99"}, 400, "must count the JSON header"),
        (
            b'{"inputs": []}',
            {"Inference-Header-Content-Length": "\u00b2".encode("latin-1")},
            400,
            "whole number",
        ),
        (b'{"inputs": [' + b"[" * 100_000, {}, 400, "not valid JSON"),
        (b"abc", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
    ],
)
async def test_malformed_bodies(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    response = await client.post("/v2/models/late/infer", content=content, headers=headers)
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_binary_sizes_that_disagree_are_400(client: httpx.AsyncClient) -> None:
    body, headers = binary_request({"text": texts("un")})
    response = await client.post("/v2/models/text_only/infer", content=body + b"\0", headers=headers)
    assert response.status_code == 400
    assert "binary section has" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/nope/infer", 404),
        ("/v2/models/late/versions/9/infer", 404),
        ("/v2/models/late/versions/%C2%B2/infer", 404),
        ("/v2/models/broken/infer", 503),
    ],
)
async def test_infer_on_a_missing_or_broken_model(client: httpx.AsyncClient, path: str, status: int) -> None:
    response = await client.post(path, json=json_request({"text": texts("un")}))
    assert response.status_code == status
    assert set(response.json()) == {"error", "request_id"}


async def test_limits_are_413(make_client: Serve) -> None:
    async with make_client(max_body_bytes=4096, max_text_chars=5) as c:
        big = json_request({"text": np.zeros((1, 64), np.uint8)}, id="x" * 5000)
        assert (await c.post("/v2/models/text_only/infer", json=big)).status_code == 413
        bomb = gzip.compress(json.dumps(big).encode())
        response = await c.post(
            "/v2/models/text_only/infer", content=bomb, headers={"Content-Encoding": "gzip"}
        )
        assert response.status_code == 413
        long_text = await c.post("/v2/models/text_only/infer", json=json_request({"text": texts("abcdefgh")}))
        assert long_text.status_code == 413
        assert "more than the limit of 5" in long_text.json()["error"]


async def test_api_key_guards_all_but_health(make_client: Serve) -> None:
    async with make_client(api_key="s3cret") as c:
        assert (await c.get("/v2/health/ready")).status_code == 200
        for response in (
            await c.get("/v2"),
            await c.get("/v2/models/late"),
            await c.post("/v2/repository/index"),
        ):
            assert response.status_code == 401
        assert (await c.get("/v2", headers={"X-API-Key": "s3cret"})).status_code == 200


async def test_non_finite_inputs_are_400_and_never_come_back_as_json(client: httpx.AsyncClient) -> None:
    inputs = sample_inputs(rows=2, seed=4)
    inputs["audio"][1, 7] = np.nan
    body, headers = binary_request(inputs)  # binary FP32 carries NaN; JSON cannot
    response = await client.post("/v2/models/late/infer", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "input 'audio' holds NaN or infinite values"


async def test_rows_are_limited_before_the_request_is_adapted(make_client: Serve) -> None:
    many = {"name": "text", "shape": [20_000], "datatype": "BYTES", "data": ["x"] * 20_000}
    async with make_client(max_instances=8) as c:
        response = await c.post("/v2/models/late/infer", json={"inputs": [many]})
        assert response.status_code == 413
        assert "'text' has 20000 rows (dim 0), more than the limit of 8" in response.json()["error"]
        eight = json_request({"text": texts(*["un"] * 8)})
        assert (await c.post("/v2/models/late/infer", json=eight)).status_code == 200
