"""Request guards in-process: content types (415), strict multipart text, the large-body JSON
parser (:mod:`app.json_arrays`), the memory budget (503) and readiness while draining. The
socket-level limits (idle, header and body timeouts, connection cap) and SIGTERM are in
``test_shutdown.py``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from app.errors import BadRequest
from app.json_arrays import load_body, parse_array
from tests.app.conftest import Serve

URL = "/v1/models/late/predict"
_JSON = {"content-type": "application/json"}
PAD = " " * 300_000  # whitespace makes a body large (parsed by app.json_arrays) without changing it


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert isinstance(message, str)
    return message


@pytest.mark.parametrize(
    "text",
    [
        "[1,2,3]",
        "[[1,2],[3,4]]",
        "[[1.5,2],[3,4e2]]",
        "[[[1,2,3],[4,5,6]]]",
        "[ 1 , -2 ]",
        "[[0.25], [1E-3]]",
    ],
)
def test_array_parser_matches_a_json_parser(text: str) -> None:
    expected = np.asarray(json.loads(text))
    got = parse_array(text.encode(), "image.array")
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "text", ["[[1,2],[3]]", "[[1,2],3]", "[1,[2]]", "[[1],[[2]]]", '["a"]', "[true]", "[null]", '[{"a":1}]']
)
def test_array_parser_refuses_ragged_or_non_numbers(text: str) -> None:
    with pytest.raises(BadRequest, match=r"image\.array: not a rectangular array of numbers"):
        parse_array(text.encode(), "image.array")


def test_array_parser_reads_across_slices() -> None:
    values = np.random.default_rng(0).random((700, 700)).round(6)  # ~6 MB of text: many slices
    got = load_body(json.dumps({"image": {"array": values.tolist()}}).encode())["image"]["array"]
    np.testing.assert_array_equal(got, values)


def test_large_values_where_the_schema_has_no_place_are_not_built() -> None:
    big = list(range(10_000))
    body = {"image": big, "instances": [{"extra": big, "text": [big]}], "audio": {"b64": big}, "text": "t"}
    expected = {"image": [], "instances": [{"extra": [], "text": []}], "audio": {"b64": []}, "text": "t"}
    assert load_body(json.dumps(body).encode()) == expected


async def test_a_large_body_gets_the_same_answer_and_errors_as_a_small_one(make_client: Serve) -> None:
    pixels = np.zeros((28, 28), dtype=int)
    pixels[4:24, 12:16] = 255
    body = {"image": {"array": pixels.tolist()}, "text": "un", "options": {"top_k": 10}}
    headers = _JSON
    async with make_client() as c:
        small = await c.post(URL, json=body)
        large = await c.post(URL, content=json.dumps(body) + PAD, headers=headers)
        assert small.status_code == large.status_code == 200, large.text
        assert small.json() == large.json()
        for bad, status in (
            ({"image": [[1, 2], [3, 4]]}, 422),  # probe 2's shape: an array where an object goes
            ({"image": {"array": [[1, 2], [3]]}}, 400),
            ({"image": {"array": [[1, 2]]}, "nope": [1]}, 422),
        ):
            small_error = error_of(await c.post(URL, json=bad), status)
            large_error = error_of(await c.post(URL, content=json.dumps(bad) + PAD, headers=headers), status)
            assert small_error.split(":")[0] == large_error.split(":")[0]


async def test_predict_takes_json_or_multipart_only(make_client: Serve) -> None:
    async with make_client() as c:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"content-type": content_type} if content_type else {}
            response = await c.post(URL, content=b'{"text": "sept"}', headers=headers)
            assert "not accepted" in error_of(response, 415)
        ok = await c.post(
            URL, content=b'{"text": "sept"}', headers={"content-type": "application/json; charset=utf-8"}
        )
        assert ok.status_code == 200, ok.text
        assert (await c.post(URL, files={"text": (None, "sept")})).status_code == 200


async def test_v2_posts_refuse_simple_cross_site_content_types(make_client: Serve) -> None:
    async with make_client() as c:
        for path in ("/v2/models/late/infer", "/v2/repository/index", "/v2/repository/models/late/unload"):
            response = await c.post(path, content=b"{}", headers={"content-type": "text/plain"})
            assert "not accepted here" in error_of(response, 415)
            # refused before the routes, yet with the same id in the body as in the header
            assert response.json()["request_id"] == response.headers["x-request-id"]
        no_type = await c.post("/v2/models/late/infer", content=b"{}")  # tritonclient sends none
        assert no_type.status_code == 400  # a V2 error about the body, not the content type


async def test_a_multipart_text_field_must_be_utf8(make_client: Serve) -> None:
    async with make_client() as c:
        field = await c.post(URL, files={"text": (None, b"sept\xff\xfe")})
        as_file = await c.post(URL, files={"text": ("t.txt", b"sept\xff\xfe", "text/plain")})
        assert "not UTF-8" in error_of(field, 400) and "not UTF-8" in error_of(as_file, 400)
        accented = await c.post(URL, files={"text": (None, "sépt".encode())})
        assert accented.status_code == 200, accented.text


async def test_the_memory_budget_refuses_large_bodies_with_retry_after(make_client: Serve) -> None:
    async with make_client(max_inflight_bytes=100_000) as c:
        large = await c.post(URL, content=b'{"text": "sept"}' + b" " * 200_000, headers=_JSON)
        assert "retry" in error_of(large, 503)
        assert large.headers["retry-after"] == "1" and large.headers["connection"] == "close"
        assert (await c.post(URL, json={"text": "sept"})).status_code == 200  # small ones always pass

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it is read
            yield b'{"text": "sept"}'
            for _ in range(5):
                yield b" " * 50_000

        assert "retry" in error_of(await c.post(URL, content=chunked(), headers=_JSON), 503)
        fits = await c.post(URL, content=b'{"text": "sept"}' + b" " * 80_000, headers=_JSON)
        assert fits.status_code == 200, fits.text  # the refused ones gave their bytes back


async def test_readiness_is_503_while_draining(make_client: Serve) -> None:
    async with make_client() as c:
        app: Any = c._transport.app  # type: ignore[attr-defined]
        assert (await c.get("/health/ready")).status_code == 200
        app.state.draining = True
        assert "shutting down" in error_of(await c.get("/health/ready"), 503)
        assert "shutting down" in error_of(await c.get("/v2/health/ready"), 503)
        assert (await c.post(URL, json={"text": "sept"})).status_code == 200  # in flight still served
