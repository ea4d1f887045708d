"""Explanations from the coalition graph (app/coalitions.py) equal those from extra rows.

The committed fusion models ship a ``coalitions.onnx``. Each is served twice from one
repository: as committed, and as ``<name>_rows`` whose manifest names no coalition graph (so its
explanations run as extra rows of the model). Every explained answer, through /v1 and /v2, must
be the same. A coalition graph that is altered or does not match its model is left unused.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.coalitions import OUTPUT
from app.config import Settings
from app.manifest import Manifest
from app.runtime import ModelRuntime, resolve_providers
from tests.app.conftest import serve

on_module_loop = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
FUSIONS = ["late", "intermediate", "gated", "early"]
IMAGE = base64.b64encode((ROOT / "examples" / "seven.png").read_bytes()).decode()
AUDIO = base64.b64encode((ROOT / "examples" / "seven.wav").read_bytes()).decode()
REQUESTS: list[dict[str, Any]] = [
    {"image": {"b64": IMAGE}, "audio": {"b64": AUDIO}, "text": "seven"},
    {"image": {"b64": IMAGE}, "audio": {"b64": AUDIO}, "text": "three"},  # a conflict
    {"image": {"b64": IMAGE}, "text": "sept"},
    {"audio": {"b64": AUDIO}},
]
OPTIONS: list[dict[str, Any]] = [
    {"explain": True},
    {"explain": True, "explain_method": "leave_one_out"},
    {"abstain_on_conflict": True},
]


def copy_version(name: str, dest: Path, as_name: str, *, coalitions: bool) -> Path:
    """models/<name>/1 copied to ``dest/<as_name>/1``, with or without its coalition graph."""
    target = dest / as_name / "1"
    shutil.copytree(ROOT / "models" / name / "1", target)
    manifest = Manifest.read(target / "manifest.json")
    explain = manifest.explain if coalitions else manifest.explain.model_copy(update={"coalitions": None})
    manifest.model_copy(update={"name": as_name, "explain": explain}).write(target / "manifest.json")
    return target


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coalition_models")
    for name in FUSIONS:
        copy_version(name, root, name, coalitions=True)
        copy_version(name, root, f"{name}_rows", coalitions=False)
    return root


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(root: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(Settings(models_dir=root)) as c:
        yield c


def close(a: Any, b: Any, path: str = "") -> None:
    """Equal JSON, numbers within 2e-6 (both sides are rounded to 6 digits)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=2e-6), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@on_module_loop
@pytest.mark.parametrize("name", FUSIONS)
async def test_v1_answers_from_the_coalition_graph_equal_those_from_extra_rows(
    client: httpx.AsyncClient, name: str
) -> None:
    for body in REQUESTS:
        for options in OPTIONS:
            got = await client.post(f"/v1/models/{name}/predict", json={**body, "options": options})
            want = await client.post(f"/v1/models/{name}_rows/predict", json={**body, "options": options})
            assert got.status_code == want.status_code == 200, (got.text, want.text)
            a, b = got.json(), want.json()
            assert a.pop("model") == name and b.pop("model") == f"{name}_rows"
            for answer in (a, b):
                answer.pop("request_id", None)
            close(a, b)
            if options.get("explain"):
                assert a["contributions"] and a["opinions"], a


@on_module_loop
@pytest.mark.parametrize("name", ["late", "gated"])
async def test_v2_explanations_from_the_coalition_graph_equal_those_from_extra_rows(
    client: httpx.AsyncClient, name: str
) -> None:
    def body() -> dict[str, Any]:
        data = [0.0] * 16000
        return {
            "inputs": [
                {
                    "name": "image",
                    "shape": [2, 28, 28],
                    "datatype": "UINT8",
                    "data": list(range(256)) * 6 + [0] * 32,
                },
                {"name": "audio", "shape": [2, 16000], "datatype": "FP32", "data": data + [0.01] * 16000},
                {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["seven", "two"]},
                {"name": "mask", "shape": [2, 3], "datatype": "FP32", "data": [1, 1, 1, 1, 0, 1]},
            ],
            "parameters": {"explain": True, "abstain_on_conflict": True},
        }

    answers = []
    for model in (name, f"{name}_rows"):
        r = await client.post(f"/v2/models/{model}/infer", json=body())
        assert r.status_code == 200, r.text
        outputs = {o["name"]: o for o in r.json()["outputs"]}
        assert OUTPUT not in outputs
        answers.append((outputs["logits"]["data"], [json.loads(d) for d in outputs["explanation"]["data"]]))
    close(answers[0][0], answers[1][0])
    close(answers[0][1], answers[1][1])


@on_module_loop
async def test_the_model_card_says_which_way_explanations_run(client: httpx.AsyncClient) -> None:
    for name in FUSIONS:
        assert (await client.get(f"/v1/models/{name}")).json()["coalition_graph"] is True
        assert (await client.get(f"/v1/models/{name}_rows")).json()["coalition_graph"] is False


def load(folder: Path, name: str) -> ModelRuntime:
    runtime = ModelRuntime.from_directory(folder / name / "1", name, 1, Settings(), resolve_providers("cpu"))
    runtime.load()
    return runtime


def test_the_committed_models_load_their_coalition_graphs(root: Path) -> None:
    for name in FUSIONS:
        assert load(root, name).coalitions is not None, name
        assert load(root, f"{name}_rows").coalitions is None, name


def test_an_altered_or_mismatched_coalition_graph_is_left_unused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    altered = copy_version("late", tmp_path, "altered", coalitions=True)
    (altered / "coalitions.onnx").write_bytes((altered / "coalitions.onnx").read_bytes()[:-1] + b"\0")
    # intermediate's coalition graph next to late's model, its sha256 updated: loads, answers wrongly
    other = copy_version("late", tmp_path, "other", coalitions=True)
    shutil.copy(ROOT / "models" / "intermediate" / "1" / "coalitions.onnx", other / "coalitions.onnx")
    manifest = Manifest.read(other / "manifest.json")
    explain = manifest.explain.model_copy(
        update={
            "coalitions_sha256": Manifest.read(
                ROOT / "models/intermediate/1/manifest.json"
            ).explain.coalitions_sha256
        }
    )
    manifest.model_copy(update={"explain": explain}).write(other / "manifest.json")
    with caplog.at_level(logging.WARNING, logger="app.runtime"):
        for name in ("altered", "other"):
            runtime = load(tmp_path, name)
            assert runtime.ready and runtime.coalitions is None, name
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "does not match the manifest's coalitions_sha256" in messages
    assert "differs from model.onnx" in messages
