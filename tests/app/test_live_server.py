"""A real server: ``python -m app`` under uvicorn on 127.0.0.1, spoken to over TCP.

Run against the fake repository and against the committed models in ``models/`` (set
``FUSION_LIVE_MODELS`` to point this at another repository).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.server import ROOT, ServerProcess
from tests.app import fakes

REAL_MODELS = ["early", "intermediate", "late", "gated", "image_only", "audio_only", "text_only"]
FUSIONS = ["early", "intermediate", "late", "gated"]
SUBSETS = [c for n in (1, 2, 3) for c in itertools.combinations(["image", "audio", "text"], n)]
PNG = fakes.png_bytes()
WAV = fakes.wav_bytes()


@pytest.fixture(scope="module", params=["fake", "committed"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "fake":
        models = fakes.write_repository(tmp_path_factory.mktemp("live-models"))
    else:
        models = Path(os.environ.get("FUSION_LIVE_MODELS", ROOT / "models"))  # to try another repository
        if not all((models / name).is_dir() for name in REAL_MODELS):
            pytest.fail(f"the trained models are not all in {models}: run `make train`")
    with ServerProcess(models) as live:
        yield live.url


def post(base: str, model: str, *, subset: tuple[str, ...], **options: str) -> dict[str, Any]:
    files = {}
    if "image" in subset:
        files["image"] = ("digit.png", PNG, "image/png")
    if "audio" in subset:
        files["audio"] = ("digit.wav", WAV, "audio/wav")
    fields = {"text": "sept"} if "text" in subset else {}
    # plain fields as parts too, so a text-only request is still multipart (not a url-encoded form)
    parts = [*files.items(), *((k, (None, v)) for k, v in {**fields, **options}.items())]
    response = httpx.post(f"{base}/v1/models/{model}/predict", files=parts, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_every_fusion_model_answers_every_subset_over_http(server: str) -> None:
    for model in FUSIONS:
        for subset in SUBSETS:
            answer = post(server, model, subset=subset, explain="true", top_k="10")
            assert answer["modalities_used"] == list(subset)
            assert answer["label"] in [str(i) for i in range(10)]
            assert set(answer["contributions"]) == set(subset)
            assert sum(p["probability"] for p in answer["probabilities"]) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_unimodal_models_over_http(server: str) -> None:
    for model, modality in (("image_only", "image"), ("audio_only", "audio"), ("text_only", "text")):
        assert post(server, model, subset=(modality,))["modalities_used"] == [modality]


@pytest.mark.slow
def test_instances_equal_one_by_one_over_http(server: str) -> None:
    import base64

    payload = {
        "image": {"b64": base64.b64encode(PNG).decode()},
        "audio": {"b64": base64.b64encode(WAV).decode()},
    }
    samples = [{m: payload.get(m, "sept") for m in subset} for subset in SUBSETS]
    options = {"top_k": 10, "explain": True}
    url = f"{server}/v1/models/late/predict"
    together = httpx.post(url, json={"instances": samples, "options": options}, timeout=30).json()[
        "predictions"
    ]
    for sample, answer in zip(samples, together, strict=True):
        alone = httpx.post(url, json={**sample, "options": options}, timeout=30).json()
        assert alone["label"] == answer["label"]
        for a, b in zip(alone["probabilities"], answer["probabilities"], strict=True):
            assert a["label"] == b["label"] and a["probability"] == pytest.approx(b["probability"], abs=1e-5)


@pytest.mark.slow
def test_operations_over_http(server: str) -> None:
    models = httpx.get(f"{server}/v1/models").json()["models"]
    assert {m["name"] for m in models} >= set(REAL_MODELS)
    assert all(m["ready"] for m in models if m["name"] in REAL_MODELS)
    assert "fusion_requests_total" in httpx.get(f"{server}/metrics").text
    assert httpx.get(f"{server}/openapi.json").status_code == 200
