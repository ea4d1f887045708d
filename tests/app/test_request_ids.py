"""Errors carry a request id and a short message; the details go to the server log only.

Regression tests for issue 11 finding 6: error texts showed an object repr with its address
(``Error opening <_io.BytesIO object at 0x7f61...>``), the absolute models path, a broken
manifest's contents and the pydantic version.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import struct
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.api.handlers import install_handlers, public_message
from app.api.request_id import RequestIdMiddleware
from app.config import Settings
from app.errors import InferenceFailed
from tests.app.conftest import serve

pytestmark = pytest.mark.asyncio(loop_scope="session")
SECRET = "do-not-show-this-4af9"


def wav_header(channels: int, frames: int = 10, bits: int = 16, rate: int = 16_000) -> bytes:
    """A PCM WAV whose header claims ``channels`` channels (libsndfile refuses 65,535)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    data = b"\0" * (block * frames)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    body = b"WAVE" + chunks
    return b"RIFF" + struct.pack("<I", len(body)) + body


def assert_no_internals(text: str, *also: str) -> None:
    for needle in ("0x7f", "object at", "BytesIO", "pydantic", "errors.pydantic.dev", "/tmp", *also):
        assert needle not in text, (needle, text)


async def test_every_answer_has_a_request_id_and_a_client_id_is_kept(client: httpx.AsyncClient) -> None:
    ok = await client.get("/v1/models")
    assert len(ok.headers["x-request-id"]) == 32  # made by the server
    mine = await client.get("/v1/models/nope", headers={"X-Request-ID": "trace-42.a:b"})
    assert mine.status_code == 404
    assert mine.headers["x-request-id"] == "trace-42.a:b" == mine.json()["request_id"]
    for odd in ("x" * 200, "two words", 'quote"d'):
        made = await client.get("/v1/models/nope", headers={"X-Request-ID": odd})
        assert made.json()["request_id"] == made.headers["x-request-id"] != odd
    first, second = [await client.get("/v2/models/nope") for _ in range(2)]
    assert first.json()["request_id"] != second.json()["request_id"]


async def test_every_answer_says_how_long_the_app_took(client: httpx.AsyncClient) -> None:
    """``Server-Timing: app;dur=<ms>`` on answers and errors alike (the playground shows it)."""
    took = {}
    for path, body in (("/v1/models", None), ("/v1/models/late/predict", {"text": "sept"}), ("/v1/x", {})):
        answer = await (client.get(path) if body is None else client.post(path, json=body))
        match = re.fullmatch(r"app;dur=(\d+\.\d\d)", answer.headers["server-timing"])
        assert match is not None, answer.headers["server-timing"]
        took[path] = float(match.group(1))
    assert took["/v1/models/late/predict"] > 0  # a model run takes well over 10 microseconds
    assert all(0 <= ms < 60_000 for ms in took.values())


async def test_a_wav_with_65535_channels_is_a_400_without_internals(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    audio = {"b64": base64.b64encode(wav_header(65_535)).decode()}
    with caplog.at_level(logging.INFO, logger="app"):
        response = await client.post("/v1/models/late/predict", json={"audio": audio})
    assert response.status_code == 400 and "audio" in response.json()["error"]
    assert_no_internals(response.text)
    rid = response.json()["request_id"]
    assert any(rid in r.getMessage() and "BytesIO" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "manifest",
    [
        f'{{"name": "late", "version": 3, "description": "{SECRET}", "fusion": "nonsense"}}',
        f'{{"name": "late", "version": 3, "{SECRET}": [1, 2',
        f"not json at all {SECRET}",
    ],
    ids=["invalid", "truncated", "garbage"],
)
async def test_a_broken_manifest_on_load_and_index_shows_no_contents(
    models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, manifest: str
) -> None:
    repo = Path(shutil.copytree(models_dir, tmp_path / "models"))
    shutil.copytree(repo / "late" / "2", repo / "late" / "3")
    (repo / "late" / "3" / "manifest.json").write_text(manifest)
    async with serve(Settings(models_dir=repo, repository_control=True)) as c:
        with caplog.at_level(logging.ERROR, logger="app"):
            load = await c.post("/v2/repository/models/late/load")
        assert load.status_code == 503 and "manifest.json" in load.json()["error"]
        assert_no_internals(load.text, SECRET, str(tmp_path))
        logged = [r.getMessage() for r in caplog.records]
        assert any("refused model late version 3" in m and str(repo) in m for m in logged)  # the log has it
        rows = {(r["name"], r["version"]): r for r in (await c.post("/v2/repository/index")).json()}
        assert rows[("late", "3")]["state"] == "UNAVAILABLE" and rows[("late", "3")]["reason"]
        assert_no_internals(json.dumps(rows[("late", "3")]), SECRET)
        meta = await c.get("/v1/models/late/versions/3")
        assert meta.json()["state"] == "failed"
        assert_no_internals(meta.json()["reason"], SECRET)
        assert (await c.get("/v1/models/late")).json()["version"] == 2  # the old one still serves


async def test_refusal_reasons_name_no_server_paths(client: httpx.AsyncClient, models_dir: Path) -> None:
    meta = (await client.get("/v1/models/broken")).json()
    assert meta["reason"] == "onnxruntime cannot load model.onnx (INVALID_PROTOBUF)"
    ready = await client.get("/v2/models/broken/ready")
    assert ready.status_code == 503 and str(models_dir) not in ready.text


async def test_public_message_drops_reprs_and_paths_but_keeps_the_point() -> None:
    text = "audio: could not be decoded: Error opening <_io.BytesIO object at 0x7f61a2b3c4d0>: bad"
    assert public_message(text) == "audio: could not be decoded: Error opening ...: bad"
    assert public_message("cannot open /srv/models/late/2/model.onnx now") == "cannot open ... now"
    for kept in ("send application/json or multipart/form-data", "image: 28x28/3 = 9", "a/b"):
        assert public_message(kept) == kept


async def test_a_500_keeps_our_own_advice_but_not_a_librarys_text() -> None:
    app = FastAPI()
    install_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/ours")
    async def ours() -> None:
        raise InferenceFailed("the model answered NaN; ask for the output with parameters.binary_data")

    @app.get("/wrapped")
    async def wrapped() -> None:
        raise InferenceFailed("inference failed: Fail: node /enc/Conv_3 in /srv/m.onnx") from OSError(5)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        advice, hidden = await c.get("/ours"), await c.get("/wrapped")
    assert advice.status_code == hidden.status_code == 500
    assert "binary_data" in advice.json()["error"]
    assert hidden.json()["error"] == "inference failed on this request; the server log has the details"
    assert hidden.headers["x-request-id"] == hidden.json()["request_id"]
