"""What is served never drops before its replacement is ready: index, rollback, readiness, fallback.

Regression tests for issue 11 finding 1: deleting the served version's folder and calling
index made every request 404 while readiness said 200, and a rollback under load (delete the new
folder, call load) failed the requests that came while the old version was loading.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.config import Settings
from app.metrics import Metrics
from app.repository import GONE, ModelRepository
from app.runtime import ModelRuntime
from tests.app import fakes
from tests.app.conftest import PNG_B64, serve

pytestmark = pytest.mark.asyncio(loop_scope="session")
BODY = {"text": "sept", "image": {"b64": PNG_B64}}


@pytest.fixture
def repo(models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the fake repository (late has versions 1 and 2)."""
    return Path(shutil.copytree(models_dir, tmp_path / "models"))


@pytest.fixture
def held_loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Every ``ModelRuntime.load`` waits while the returned event is clear (it starts set)."""
    gate = threading.Event()
    gate.set()
    load = ModelRuntime.load

    def held(self: ModelRuntime) -> None:
        gate.wait(30)
        load(self)

    monkeypatch.setattr(ModelRuntime, "load", held)
    yield gate
    gate.set()


async def started(root: Path) -> ModelRepository:
    repository = ModelRepository(Settings(models_dir=root), Metrics())
    await repository.start()
    return repository


async def test_index_after_the_served_folder_is_deleted_keeps_serving_it(repo: Path) -> None:
    async with serve(Settings(models_dir=repo, repository_control=True)) as c:
        shutil.rmtree(repo / "late" / "2")
        rows = (await c.post("/v2/repository/index")).json()
        assert {"name": "late", "version": "2", "state": "READY", "reason": GONE} in rows
        assert (await c.get("/v1/models/late")).json()["version"] == 2
        assert (await c.get("/v1/models/late/versions/2")).status_code == 200
        answer = await c.post("/v1/models/late/predict", json=BODY)
        assert answer.status_code == 200 and answer.json()["version"] == 2
        assert (await c.get("/v2/models/late")).json()["versions"] == ["1", "2"]
        assert (await c.get("/health/ready")).status_code == 200  # and it is true: late answers

        rolled = await c.post("/v2/repository/models/late/load")  # now roll back to what is on disk
        assert rolled.json() == {"name": "late", "version": "1", "ready": True}
        assert (await c.post("/v1/models/late/predict", json=BODY)).json()["version"] == 1
        listed = {(r["name"], r["version"]) for r in (await c.post("/v2/repository/index")).json()}
        assert ("late", "2") not in listed
        assert (await c.get("/v1/models/late/versions/2")).status_code == 404


async def test_requests_during_a_rollback_load_get_the_version_still_loaded(
    repo: Path, held_loads: threading.Event
) -> None:
    """The old code rescanned first: until the old version had loaded, the default was a 404."""
    repository = await started(repo)  # late 2 is the default
    try:
        shutil.rmtree(repo / "late" / "2")
        held_loads.clear()
        load = asyncio.create_task(repository.load("late"))
        await asyncio.sleep(0)  # load has rescanned and waits in its worker thread for version 1
        assert not load.done()
        async with repository.serving("late") as runtime:
            assert runtime.version == 2
            out = await runtime.batcher.submit(runtime.validate(dict(fakes_inputs())))
            assert out["logits"].shape == (1, 10)
        assert repository.not_serving() == []
        held_loads.set()
        assert (await load).version == 1
        assert (await repository.get_ready("late")).version == 1
    finally:
        held_loads.set()
        await repository.close()


def fakes_inputs() -> dict[str, np.ndarray]:
    return {
        "image": np.zeros((1, 28, 28), np.uint8),
        "audio": np.zeros((1, 16000), np.float32),
        "text": np.zeros((1, 64), np.uint8),
        "mask": np.ones((1, 3), np.float32),
    }


async def test_a_rollback_under_load_fails_no_request(repo: Path) -> None:
    async with serve(Settings(models_dir=repo, repository_control=True)) as c:
        fakes.write_model(repo, "late", 3, fakes.ALL, seed=11)
        assert (await c.post("/v2/repository/models/late/load")).json()["version"] == "3"

        async def predict() -> httpx.Response:
            return await c.post("/v1/models/late/predict", json=BODY)

        first = [asyncio.create_task(predict()) for _ in range(150)]
        shutil.rmtree(repo / "late" / "3")
        index = asyncio.create_task(c.post("/v2/repository/index"))
        rollback = asyncio.create_task(c.post("/v2/repository/models/late/load"))
        second = [asyncio.create_task(predict()) for _ in range(150)]
        answers = await asyncio.gather(*first, *second)
        assert (await index).status_code == 200
        assert (await rollback).json() == {"name": "late", "version": "2", "ready": True}
        assert [r.status_code for r in answers] == [200] * 300, {r.text for r in answers}
        assert {r.json()["version"] for r in answers} <= {2, 3}
        assert (await predict()).json()["version"] == 2


async def test_load_of_a_model_whose_folders_are_all_gone_keeps_serving(repo: Path) -> None:
    async with serve(Settings(models_dir=repo, repository_control=True)) as c:
        shutil.rmtree(repo / "text_only")
        refused = await c.post("/v2/repository/models/text_only/load")
        assert refused.status_code == 404
        assert "no version folder" in refused.json()["error"] and "version 1 keeps serving" in refused.text
        assert (await c.post("/v1/models/text_only/predict", json={"text": "six"})).status_code == 200


async def test_readiness_is_503_while_a_model_that_should_serve_is_not_loaded(repo: Path) -> None:
    async with serve(Settings(models_dir=repo, repository_control=True)) as c:
        repository: ModelRepository = c._transport.app.state.repository  # type: ignore[attr-defined]
        lost = await repository.get_ready("late")
        await lost.batcher.close()
        lost.unload()  # the session is gone without anyone asking (what a crash would leave)
        for path in ("/health/ready", "/v2/health/ready"):
            response = await c.get(path)
            assert response.status_code == 503 and "late" in response.json()["error"], path
        assert (await c.post("/v2/repository/models/late/load")).status_code == 200
        assert (await c.get("/health/ready")).status_code == 200
        await c.post("/v2/repository/models/late/unload")  # unloaded on purpose: not expected to serve
        assert (await c.get("/health/ready")).status_code == 200
        assert (await c.get("/v2/health/ready")).json() == {"ready": True}


async def test_a_refused_newest_version_at_start_falls_back_to_the_next_that_loads(tmp_path: Path) -> None:
    fakes.write_model(tmp_path, "m", 1, ["text"], seed=1)
    fakes.write_model(tmp_path, "m", 2, ["text"], seed=2)
    (tmp_path / "m" / "2" / "model.onnx").write_bytes(b"truncated")
    repository = await started(tmp_path)
    try:
        assert repository.default_version("m") == 1 and repository.not_serving() == []
        assert (await repository.get_ready("m")).version == 1
        states = {(e.version, e.state) for e in repository.index()}
        assert states == {(1, "ready"), (2, "failed")}
    finally:
        await repository.close()


async def test_a_models_dir_that_disappears_is_a_503_without_its_path(tmp_path: Path) -> None:
    root = tmp_path / "secret-place" / "models"
    fakes.write_model(root, "m", 1, ["text"], seed=1)
    async with serve(Settings(models_dir=root, repository_control=True)) as c:
        shutil.rmtree(root)
        for path in ("/v2/repository/index", "/v2/repository/models/m/load"):
            response = await c.post(path)
            assert response.status_code == 503, path
            assert "cannot be read" in response.json()["error"] and "secret-place" not in response.text
        assert (await c.post("/v1/models/m/predict", json={"text": "one"})).status_code == 200
