"""Every client mistake on predict is a 4xx with ``{"error": ...}`` naming the field; never a 500."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import pytest

from tests.app import fakes
from tests.app.conftest import PNG, PNG_B64, WAV_B64, Serve

pytestmark = pytest.mark.asyncio(loop_scope="session")
URL = "/v1/models/late/predict"


def check(response: httpx.Response, status: int, needle: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "request_id"} and isinstance(body["error"], str)
    assert needle in body["error"], body["error"]


JSON_CASES: list[tuple[str, Any, int, str]] = [
    ("no modality", {}, 400, "no modality"),
    ("only options", {"options": {"top_k": 2}}, 400, "no modality"),
    ("empty instances", {"instances": []}, 400, "no samples"),
    ("empty instance", {"instances": [{"text": "a"}, {}]}, 400, "instances[1] has no modality"),
    ("not an object", [1, 2], 422, "body"),
    ("unknown field", {"text": "a", "colour": "red"}, 422, "colour: unknown field"),
    (
        "unknown option",
        {"text": "a", "options": {"temperature": 1}},
        422,
        "options.temperature: unknown field",
    ),
    ("unknown in instance", {"instances": [{"txt": "a"}]}, 422, "instances[0].txt: unknown field"),
    ("unknown in image", {"image": {"b64": PNG_B64, "mode": "L"}}, 422, "image.mode: unknown field"),
    ("text wrong type", {"text": 7}, 422, "text: Input should be a valid string"),
    ("image wrong type", {"image": "abc"}, 422, "image"),
    ("both b64 and array", {"image": {"b64": PNG_B64, "array": [[1]]}}, 422, "exactly one of"),
    ("neither b64 nor array", {"audio": {}}, 422, "exactly one of"),
    ("audio array needs a rate", {"audio": {"array": [0.1, 0.2]}}, 422, "sample_rate"),
    ("rate with b64", {"audio": {"b64": WAV_B64, "sample_rate": 8000}}, 422, "sample_rate"),
    ("instances and a sample", {"text": "a", "instances": [{"text": "b"}]}, 422, "not both"),
    ("top_k zero", {"text": "a", "options": {"top_k": 0}}, 422, "options.top_k"),
    ("top_k text", {"text": "a", "options": {"top_k": "many"}}, 422, "options.top_k"),
    ("version zero", {"text": "a", "options": {"version": 0}}, 422, "options.version"),
    ("bad base64", {"image": {"b64": "not*base64!"}}, 400, "image.b64: not valid base64"),
    ("bad base64 in instance", {"instances": [{"audio": {"b64": "@@"}}]}, 400, "instances[0].audio.b64"),
    ("not an image", {"image": {"b64": WAV_B64}}, 400, "image: is not an image format"),
    ("truncated image", {"image": {"b64": base64.b64encode(PNG[:60]).decode()}}, 400, "image:"),
    ("not audio", {"audio": {"b64": PNG_B64}}, 400, "audio: could not be decoded"),
    ("empty media", {"image": {"b64": ""}}, 400, "image: is empty"),
    ("empty text", {"text": "   "}, 400, "text: is empty"),
    ("NUL in text", {"text": "a\u0000b"}, 400, "text: must not contain NUL"),
    ("ragged image", {"image": {"array": [[1, 2], [3]]}}, 400, "image.array: not a rectangular array"),
    ("image array of strings", {"image": {"array": [["a", "b"]]}}, 400, "image:"),
    ("image array rank", {"image": {"array": [1, 2, 3]}}, 400, "image: array must have shape"),
    ("image array range", {"image": {"array": [[0, 300]]}}, 400, "0..255"),
    ("image array channels", {"image": {"array": [[[1, 2, 3, 4, 5]]]}}, 400, "image: array must have shape"),
    (
        "audio array rank",
        {"audio": {"array": [[[0.1]]], "sample_rate": 8000}},
        400,
        "audio: array must have shape",
    ),
    ("audio array of strings", {"audio": {"array": [0.1, "x"], "sample_rate": 8000}}, 400, "audio"),
    ("audio rate", {"audio": {"array": [0.1], "sample_rate": 10}}, 400, "sample rate 10 Hz"),
    ("modality the model lacks", {"image": {"b64": PNG_B64}, "text": "a"}, 422, "does not take image"),
    ("unknown version", {"text": "a", "options": {"version": 9}}, 404, "no version 9"),
]


@pytest.mark.parametrize(("case", "body", "status", "needle"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
async def test_json_mistakes(
    client: httpx.AsyncClient, case: str, body: Any, status: int, needle: str
) -> None:
    model = "text_only" if case == "modality the model lacks" else "late"
    check(await client.post(f"/v1/models/{model}/predict", json=body), status, needle)


@pytest.mark.parametrize(
    ("content", "status", "needle"),
    [
        (b"", 400, "empty request body"),
        (b"  \n", 400, "empty request body"),
        (b'{"text": "a"', 400, "malformed JSON"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (b"null", 422, "body"),
    ],
)
async def test_raw_body_mistakes(client: httpx.AsyncClient, content: bytes, status: int, needle: str) -> None:
    response = await client.post(URL, content=content, headers={"content-type": "application/json"})
    check(response, status, needle)


async def test_unknown_model_comes_before_the_body(client: httpx.AsyncClient) -> None:
    check(await client.post("/v1/models/nope/predict", content=b"{garbage"), 404, "'nope' not found")


async def test_a_refused_model_is_503(client: httpx.AsyncClient) -> None:
    check(await client.post("/v1/models/broken/predict", json={"text": "a"}), 503, "failed")


async def test_wrong_method_and_route(client: httpx.AsyncClient) -> None:
    check(await client.get(URL), 405, "not allowed")
    check(await client.post("/v1/models/late/predictt", json={}), 404, "no route")


@pytest.mark.parametrize(
    ("files", "data", "status", "needle"),
    [
        ({"picture": ("a.png", PNG)}, {}, 422, "picture: unknown field"),
        ({}, {"image": PNG_B64}, 422, "image: must be a file part"),
        ({}, {"text": "a", "top_k": "lots"}, 422, "top_k"),
        ({"top_k": ("k.txt", b"3")}, {"text": "a"}, 422, "top_k: must be a plain field"),
        ({"text": ("t.txt", b"\xff\xfe\xfa")}, {}, 400, "text: the file is not UTF-8"),
        ({"image": ("a.png", b"")}, {}, 400, "image: is empty"),
        ({"image": ("a.png", b"GIF89a-nope")}, {}, 400, "image:"),
        ({}, {"explain": "true"}, 400, "no modality"),
    ],
)
async def test_multipart_mistakes(
    client: httpx.AsyncClient, files: dict[str, Any], data: dict[str, str], status: int, needle: str
) -> None:
    if not files:  # httpx would send a urlencoded form; force multipart
        body, headers = _multipart(data)
        check(await client.post(URL, content=body, headers=headers), status, needle)
        return
    check(await client.post(URL, files=files, data=data), status, needle)


def _multipart(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    boundary = "fusionboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


async def test_duplicate_multipart_field(client: httpx.AsyncClient) -> None:
    body, headers = _multipart({"text": "a"})
    body = body.replace(
        b"--fusionboundary--",
        b'--fusionboundary\r\nContent-Disposition: form-data; name="text"\r\n\r\nb\r\n--fusionboundary--',
    )
    check(await client.post(URL, content=body, headers=headers), 422, "text: given more than once")


async def test_limits(make_client: Serve) -> None:
    limits = dict(
        max_body_bytes=200_000,
        max_image_pixels=10_000,
        max_audio_seconds=2.0,
        max_text_chars=20,
        max_instances=3,
    )
    async with make_client(**limits) as c:
        big_image = base64.b64encode(fakes.png_bytes(size=200)).decode()
        check(await c.post(URL, json={"image": {"b64": big_image}}), 413, "image: has 200x200 pixels")
        check(
            await c.post(URL, json={"image": {"array": [[0] * 200] * 200}}), 413, "image: array has more than"
        )
        long_clip = base64.b64encode(fakes.wav_bytes(seconds=3.0, rate=8000)).decode()
        check(await c.post(URL, json={"audio": {"b64": long_clip}}), 413, "audio: lasts 3.0 s")
        long_array = {"array": [0.0] * 30_000, "sample_rate": 8000}
        check(
            await c.post(URL, json={"instances": [{"text": "a"}, {"audio": long_array}]}),
            413,
            "instances[1].audio",
        )
        check(await c.post(URL, json={"text": "x" * 21}), 413, "text: has 21 characters")
        check(await c.post(URL, json={"instances": [{"text": "a"}] * 4}), 413, "4 instances")
        check(await c.post(URL, json={"text": "a" * 300_000}), 413, "over the limit of 200000 bytes")
        check(await c.post(URL, files={"image": ("a.png", b"\0" * 300_000)}), 413, "over the limit")

        async def chunks() -> Any:  # no Content-Length: the running total trips the limit
            for _ in range(10):
                yield b" " * 50_000

        chunked = await c.post(URL, content=chunks(), headers={"content-type": "application/json"})
        check(chunked, 413, "request body is over the limit")
        assert (await c.post(URL, json={"text": "fine"})).status_code == 200


async def test_unexpected_errors_are_a_logged_500(
    make_client: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_client(raise_app_exceptions=False) as c:
        service = c._transport.app.state.service  # type: ignore[attr-defined]

        async def explode(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("kaboom")

        service.predict = explode
        with caplog.at_level(logging.ERROR):
            response = await c.post(URL, json={"text": "a"})
        check(response, 500, "internal server error")
        assert "kaboom" not in response.text
        assert any("unhandled error" in r.message for r in caplog.records)


async def test_unloaded_model_is_503(make_client: Serve) -> None:
    async with make_client() as c:
        await c._transport.app.state.repository.unload("late")  # type: ignore[attr-defined]
        check(await c.post(URL, json={"text": "a"}), 503, "unloaded")
        check(await c.get("/v1/models/late"), 503, "unloaded")


async def test_a_failing_model_is_a_logged_500_for_its_request_only(
    make_client: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_client() as c:
        runtime = await c._transport.app.state.repository.get_ready("text_only")  # type: ignore[attr-defined]

        def explode(inputs: Any) -> Any:
            raise RuntimeError("onnxruntime fell over")

        runtime.batcher._run = explode
        with caplog.at_level(logging.ERROR):
            failed = await c.post("/v1/models/text_only/predict", json={"text": "a"})
        check(failed, 500, "inference failed")
        assert "fell over" not in failed.text  # the details are for the server log only
        rid = failed.json()["request_id"]
        assert failed.headers["x-request-id"] == rid
        logged = [r.getMessage() for r in caplog.records]
        assert any("onnxruntime fell over" in m and rid in m for m in logged)
        assert (await c.post(URL, json={"text": "a"})).status_code == 200  # other models unaffected


async def test_a_client_that_leaves_mid_body_gets_no_500(client: httpx.AsyncClient) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"text": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 400
