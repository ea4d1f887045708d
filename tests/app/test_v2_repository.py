"""V2 repository control over raw HTTP: index, load (a version copied in after start), unload."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from app.config import Settings
from tests.app import fakes
from tests.app.conftest import PNG_B64, serve
from tests.app.v2_helpers import json_request, sample_inputs, texts

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def control(models_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app over the shared repository with repository control on (it is off by default)."""
    async with serve(Settings(models_dir=models_dir, repository_control=True)) as c:
        yield c


@pytest.fixture
def repo(models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the fake repository that the test may change."""
    return Path(shutil.copytree(models_dir, tmp_path / "models"))


async def index(client: httpx.AsyncClient, **body: object) -> dict[tuple[str, str], dict[str, str]]:
    response = await client.post("/v2/repository/index", json=body or None)
    assert response.status_code == 200, response.text
    return {(row["name"], row["version"]): row for row in response.json()}


async def test_index_lists_every_version_with_its_state(repo: Path) -> None:
    async with serve(Settings(models_dir=repo, repository_control=True)) as c:
        rows = await index(c)
        assert rows[("late", "2")] == {"name": "late", "version": "2", "state": "READY", "reason": ""}
        assert rows[("late", "1")]["state"] == "UNAVAILABLE"  # on disk, never asked for
        assert rows[("broken", "1")]["state"] == "UNAVAILABLE"
        assert "onnxruntime cannot load" in rows[("broken", "1")]["reason"]
        ready = await index(c, ready=True)
        assert ("late", "2") in ready
        assert ("late", "1") not in ready and ("broken", "1") not in ready
        bad = await c.post("/v2/repository/index", json={"ready": "yes"})
        assert bad.status_code == 400


async def test_unload_then_load_a_version_copied_in_after_start(repo: Path) -> None:
    async with serve(Settings(models_dir=repo, repository_control=True)) as c:
        request = json_request(sample_inputs(rows=1))
        assert (await c.post("/v2/repository/models/late/unload", json={"parameters": {}})).status_code == 200
        assert (await c.get("/v2/models/late/ready")).status_code == 503
        refused = await c.post("/v2/models/late/infer", json=request)
        assert refused.status_code == 503
        assert "unloaded" in refused.json()["error"]
        assert (await c.post("/v2/models/gated/infer", json=request)).status_code == 200  # others go on
        assert (await index(c))[("late", "2")]["state"] == "UNAVAILABLE"

        fakes.write_model(repo, "late", 3, fakes.ALL, seed=11)  # a new version, after start
        loaded = await c.post("/v2/repository/models/late/load")
        assert loaded.json() == {"name": "late", "version": "3", "ready": True}
        assert (await c.get("/v2/models/late/ready")).json()["version"] == "3"
        assert (await c.get("/v2/models/late")).json()["versions"] == ["1", "2", "3"]
        answer = (await c.post("/v2/models/late/infer", json=request)).json()
        assert answer["model_version"] == "3"
        assert (await index(c))[("late", "3")]["state"] == "READY"


async def test_a_new_model_directory_becomes_servable_on_load(repo: Path) -> None:
    async with serve(Settings(models_dir=repo, repository_control=True)) as c:
        assert (await c.get("/v2/models/words")).status_code == 404
        fakes.write_model(repo, "words", 1, ["text"], seed=12)
        assert (await c.post("/v2/repository/models/words/load")).status_code == 200
        doc = (await c.post("/v2/models/words/infer", json=json_request({"text": texts("six")}))).json()
        assert doc["model_name"] == "words"
        assert [o["shape"] for o in doc["outputs"]] == [[1, 10]]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/repository/models/nope/load", None, 404, "no version folder"),
        ("/v2/repository/models/nope/unload", None, 404, "not found"),
        ("/v2/repository/models/broken/load", None, 503, "could not be loaded"),
        (
            "/v2/repository/models/late/load",
            {"parameters": {"config": "{}"}},
            400,
            "load takes no parameters",
        ),
        ("/v2/repository/models/late/load", [1], 400, "must be a JSON object"),
    ],
)
async def test_repository_errors(
    control: httpx.AsyncClient, path: str, body: object, status: int, message: str
) -> None:
    response = await control.post(path, json=body)
    assert response.status_code == status
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    "path", ["/v2/repository/index", "/v2/repository/models/late/load", "/v2/repository/models/late/unload"]
)
@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a": NaN}', b"\xff"], ids=["deep", "nan", "binary"])
async def test_repository_bodies_that_are_not_json_are_400(
    control: httpx.AsyncClient, path: str, raw: bytes
) -> None:
    response = await control.post(path, content=raw)
    assert response.status_code == 400
    assert "the body is not valid JSON" in response.json()["error"]


async def test_a_failed_load_keeps_the_old_version_serving(repo: Path) -> None:
    async with serve(Settings(models_dir=repo, repository_control=True)) as c:
        bad = repo / "late" / "5"
        bad.mkdir()
        (bad / "model.onnx").write_bytes(b"not onnx")
        fakes.make_manifest("late", 5, fakes.ALL).write(bad / "manifest.json")
        response = await c.post("/v2/repository/models/late/load")
        assert response.status_code == 503
        assert (await c.get("/v2/models/late/ready")).json()["version"] == "2"
        assert (await index(c))[("late", "5")]["state"] == "UNAVAILABLE"


async def test_a_reload_under_load_fails_no_request(repo: Path) -> None:
    """The replaced version drains: every request it took is answered, by it or by the new one."""
    body = {"text": "sept", "image": {"b64": PNG_B64}}
    async with serve(Settings(models_dir=repo, repository_control=True)) as c:
        fakes.write_model(repo, "late", 3, fakes.ALL, seed=11)

        async def predict() -> httpx.Response:
            return await c.post("/v1/models/late/predict", json=body)

        first = [asyncio.create_task(predict()) for _ in range(200)]
        reload = asyncio.create_task(c.post("/v2/repository/models/late/load"))
        second = [asyncio.create_task(predict()) for _ in range(200)]
        answers = await asyncio.gather(*first, *second)
        assert (await reload).json() == {"name": "late", "version": "3", "ready": True}
        assert [r.status_code for r in answers] == [200] * 400, {r.text for r in answers}
        assert {r.json()["version"] for r in answers} <= {2, 3}
        assert (await predict()).json()["version"] == 3
        assert (await index(c))[("late", "2")]["state"] == "UNAVAILABLE"  # and closed once drained
