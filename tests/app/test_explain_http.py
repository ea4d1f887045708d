"""Explained answers through /v1 on fake ONNX models whose opinions and Shapley values are known.

``additive``: log p(class 0) is exactly ``bias + sum of the present modalities' weights``, so its
Shapley values are the weights. ``vote``: each modality votes for the class its input encodes
(``fakes.build_vote_onnx``); ``bully`` adds a bonus to class 0 whenever two modalities are present,
so the fused answer can be a class no input supports (the intermediate model's "image 3 + audio 7
-> 0" of issue 12); ``textual`` trusts text most (early/intermediate's "image 3, audio 7, text
five -> 5" of the same issue).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio

from app.config import Settings
from app.explain import EMPTY
from app.manifest import DecodeParams, Manifest
from app.media import encode_text
from tests.app import fakes
from tests.app.conftest import serve
from tests.app.v2_helpers import json_request

pytestmark = pytest.mark.asyncio(loop_scope="module")

WEIGHTS = {"image": -0.1, "audio": -0.3, "text": -0.5}
BIAS = -0.05
GAINS = {"image": 4.0, "audio": 3.0, "text": 2.0}
ALL = ["image", "audio", "text"]
SUBSETS = [list(c) for n in (1, 2, 3) for c in itertools.combinations(ALL, n)]


def manifest(name: str) -> Any:
    return fakes.make_manifest(name, 1, ALL, fusion="late", decode=DecodeParams(image_normalize=False))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("explain_models")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(root: Path) -> AsyncIterator[httpx.AsyncClient]:
    fakes.save_graph(root, fakes.build_additive_onnx(WEIGHTS, BIAS), manifest("additive"))
    fakes.save_graph(root, fakes.build_vote_onnx(GAINS), manifest("vote"))
    fakes.save_graph(root, fakes.build_vote_onnx(GAINS, interaction=6.0), manifest("bully"))
    textual = {"image": 2.0, "audio": 2.5, "text": 5.0}
    fakes.save_graph(root, fakes.build_vote_onnx(textual), manifest("textual"))
    fakes.write_model(root, "gated", 1, ALL, gated=True, seed=5)
    fakes.write_model(root, "image_only", 1, ["image"], seed=6)
    async with serve(Settings(models_dir=root)) as c:
        yield c


async def predict(client: httpx.AsyncClient, model: str, body: dict[str, Any], status: int = 200) -> Any:
    response = await client.post(f"/v1/models/{model}/predict", json=body)
    assert response.status_code == status, response.text
    return response.json()


def explained(sample: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {**sample, "options": {"explain": True, "top_k": 10, **options}}


@pytest.mark.parametrize("subset", SUBSETS, ids=["+".join(s) for s in SUBSETS])
async def test_shapley_of_an_additive_model_is_each_modality_s_own_term(
    client: httpx.AsyncClient, subset: list[str]
) -> None:
    sample = fakes.vote_payload(**dict.fromkeys(subset, 1))
    answer = await predict(client, "additive", explained(sample))
    assert answer["label"] == "0" and answer["explain_method"] == "shapley"
    assert answer["contributions"] == pytest.approx({m: WEIGHTS[m] for m in subset}, abs=1e-5)
    e = answer["explanation"]
    assert e["method"] == "shapley" and e["target"] == "log_probability" and e["label"] == "0"
    assert e["empty"] == pytest.approx(BIAS, abs=1e-5)
    assert e["full"] == pytest.approx(BIAS + sum(WEIGHTS[m] for m in subset), abs=1e-5)
    assert sum(answer["contributions"].values()) == pytest.approx(e["full"] - e["empty"], abs=1e-5)
    assert math.log(answer["probabilities"][0]["probability"]) == pytest.approx(e["full"], abs=1e-5)


def reference_shapley(votes: dict[str, int], gains: dict[str, float], label: int) -> dict[str, float]:
    """The vote model's Shapley values by their definition, from its logits computed here in numpy."""

    def value(coalition: tuple[str, ...]) -> float:
        logits = np.zeros(10)
        for m in coalition:
            logits[votes[m]] += gains[m]
        return float(logits[label] - np.log(np.exp(logits).sum()))

    players = list(votes)
    phi = dict.fromkeys(players, 0.0)
    orders = list(itertools.permutations(players))
    for order in orders:
        for k, m in enumerate(order):
            phi[m] += (value(order[: k + 1]) - value(order[:k])) / len(orders)
    return phi


async def test_opinions_and_shapley_of_the_vote_model(client: httpx.AsyncClient) -> None:
    votes = {"image": 3, "audio": 3, "text": 5}
    answer = await predict(client, "vote", explained(fakes.vote_payload(**votes)))
    assert answer["label"] == "3" and answer["status"] == "ok"
    assert {m: o["label"] for m, o in answer["opinions"].items()} == {"image": "3", "audio": "3", "text": "5"}
    for m, o in answer["opinions"].items():  # each one alone: its gain on its own class, 0 elsewhere
        p_own = math.exp(GAINS[m]) / (math.exp(GAINS[m]) + 9)
        assert o["probability"] == pytest.approx(p_own, abs=1e-5)
        expected_fused = p_own if votes[m] == 3 else 1 / (math.exp(GAINS[m]) + 9)
        assert o["fused_label_probability"] == pytest.approx(expected_fused, abs=1e-5)
    assert answer["contributions"] == pytest.approx(reference_shapley(votes, GAINS, 3), abs=1e-5)
    assert (
        answer["contributions"]["text"]
        < 0
        < answer["contributions"]["audio"]
        < answer["contributions"]["image"]
    )
    agreement = answer["agreement"]
    assert agreement["agree"] is False and agreement["majority"] == "3"
    [text] = agreement["dissenters"]
    assert text["modality"] == "text" and text["label"] == "5"
    assert text["margin"] == pytest.approx(text["probability"] - text["fused_label_probability"], abs=1e-6)


async def test_agreeing_modalities_raise_no_flag(client: httpx.AsyncClient) -> None:
    answer = await predict(client, "vote", explained(fakes.vote_payload(image=7, audio=7, text=7)))
    assert answer["agreement"] == {"agree": True, "majority": "7", "dissenters": []}
    assert all(c > 0 for c in answer["contributions"].values())


async def test_issue_case_a_class_neither_input_supports(client: httpx.AsyncClient) -> None:
    """Image 3 + audio 7 answered 0: the answer now says both modalities dissent."""
    answer = await predict(client, "bully", explained(fakes.vote_payload(image=3, audio=7)))
    assert answer["label"] == "0"
    assert {m: o["label"] for m, o in answer["opinions"].items()} == {"image": "3", "audio": "7"}
    agreement = answer["agreement"]
    assert agreement["agree"] is False and agreement["majority"] is None
    assert [d["modality"] for d in agreement["dissenters"]] == ["image", "audio"]
    # neither modality alone supports 0, so together they only push it up by their interaction
    e = answer["explanation"]
    assert sum(answer["contributions"].values()) == pytest.approx(e["full"] - e["empty"], abs=1e-5)
    uncertain = await predict(
        client, "bully", {**fakes.vote_payload(image=3, audio=7), "options": {"abstain_on_conflict": True}}
    )
    assert (
        uncertain["status"] == "uncertain" and uncertain["label"] is None and uncertain["label_index"] is None
    )
    assert uncertain["abstention"]["reasons"] == ["conflict"] and uncertain["abstention"]["label"] == "0"
    assert uncertain["probabilities"][0]["label"] == "0"  # the probabilities stay
    assert uncertain["agreement"]["agree"] is False and uncertain["contributions"] is None


async def test_issue_case_three_way_conflict(client: httpx.AsyncClient) -> None:
    """Image 3, audio 7, text five answered 5 with high confidence: flagged, two dissenters."""
    answer = await predict(client, "textual", explained(fakes.vote_payload(image=3, audio=7, text=5)))
    assert answer["label"] == "5"
    assert answer["agreement"]["agree"] is False and answer["agreement"]["majority"] is None
    assert [d["modality"] for d in answer["agreement"]["dissenters"]] == ["image", "audio"]
    assert max(answer["contributions"], key=answer["contributions"].get) == "text"


async def test_min_confidence_abstains_and_keeps_the_probabilities(client: httpx.AsyncClient) -> None:
    sample = fakes.vote_payload(image=3, audio=7, text=5)
    plain = await predict(client, "vote", sample)
    top = plain["probabilities"][0]["probability"]
    assert plain["status"] == "ok" and plain["abstention"] is None and plain["opinions"] is None
    low = await predict(client, "vote", {**sample, "options": {"min_confidence": min(1.0, top + 0.01)}})
    assert low["status"] == "uncertain" and low["label"] is None
    assert low["abstention"]["reasons"] == ["low_confidence"] and low["abstention"]["confidence"] == top
    assert low["probabilities"] == plain["probabilities"]
    ok = await predict(client, "vote", {**sample, "options": {"min_confidence": top - 0.01}})
    assert ok["status"] == "ok" and ok["label"] == plain["label"]


async def test_server_default_min_confidence(tmp_path: Path) -> None:
    fakes.save_graph(tmp_path, fakes.build_vote_onnx(GAINS), manifest("vote"))
    async with serve(Settings(models_dir=tmp_path, min_confidence=0.99)) as c:
        sample = fakes.vote_payload(image=3, audio=7)
        assert (await predict(c, "vote", sample))["status"] == "uncertain"
        answer = await predict(
            c, "vote", {**sample, "options": {"min_confidence": 0}}
        )  # a request may turn it off
        assert answer["status"] == "ok" and answer["label"] == "3"


async def test_leave_one_out_on_request(client: httpx.AsyncClient) -> None:
    sample = fakes.vote_payload(image=3, audio=3, text=5)
    loo = await predict(client, "vote", explained(sample, explain_method="leave_one_out"))
    assert loo["explain_method"] == "leave_one_out" and loo["explanation"]["target"] == "probability"
    full = loo["explanation"]["full"]
    for m in ALL:
        rest = await predict(
            client, "vote", {k: v for k, v in sample.items() if k != m} | {"options": {"top_k": 10}}
        )
        p = {e["label"]: e["probability"] for e in rest["probabilities"]}["3"]
        assert loo["contributions"][m] == pytest.approx(full - p, abs=1e-5)
    assert loo["opinions"] is not None and loo["agreement"]["majority"] == "3"


async def test_gated_shows_gate_weights_beside_shapley(client: httpx.AsyncClient) -> None:
    sample = {"text": "sept", "audio": {"array": [0.1] * 16000, "sample_rate": 16000}}
    answer = await predict(client, "gated", explained(sample))
    assert answer["explain_method"] == "shapley" and set(answer["contributions"]) == {"audio", "text"}
    weights = answer["explanation"]["gate_weights"]
    assert set(weights) == {"audio", "text"} and sum(weights.values()) == pytest.approx(1.0, abs=1e-5)


async def test_unimodal_model_gives_its_own_opinion_and_no_contributions(client: httpx.AsyncClient) -> None:
    answer = await predict(client, "image_only", explained({"image": {"array": [[0.5] * 28] * 28}}))
    assert answer["explain_method"] == "none" and answer["contributions"] is None
    assert answer["opinions"]["image"]["label"] == answer["label"]
    assert answer["agreement"] == {"agree": True, "majority": answer["label"], "dissenters": []}


async def test_instances_are_explained_one_by_one(client: httpx.AsyncClient) -> None:
    samples = [
        fakes.vote_payload(image=3, audio=7, text=5),
        fakes.vote_payload(text=2),
        fakes.vote_payload(audio=4),
    ]
    together = await predict(client, "vote", {"instances": samples, "options": {"explain": True}})
    for sample, answer in zip(samples, together["predictions"], strict=True):
        alone = await predict(client, "vote", explained(sample, top_k=3))
        assert answer["contributions"] == pytest.approx(alone["contributions"], abs=1e-6)
        assert answer["opinions"] == alone["opinions"] and answer["agreement"] == alone["agreement"]


async def test_bad_options_are_422(client: httpx.AsyncClient) -> None:
    sample = fakes.vote_payload(text=1)
    for options in ({"explain_method": "lime"}, {"min_confidence": 1.5}, {"min_confidence": -0.1}):
        answer = await predict(client, "vote", {**sample, "options": options}, status=422)
        assert "options" in answer["error"]


async def test_multipart_takes_the_new_options(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/models/vote/predict",
        data={"text": "5", "explain": "true", "explain_method": "leave_one_out", "min_confidence": "0.99"},
        files={"audio": ("a.wav", fakes.wav_bytes(), "audio/wav")},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["explain_method"] == "leave_one_out" and answer["status"] == "uncertain"


# -- the same through V2: request parameters in, an `explanation` output out ----------------------


def v2_tensors(image: int, audio: int, text: int) -> dict[str, np.ndarray]:
    return {
        "image": np.full((1, 28, 28), 25 * image + 10, dtype=np.uint8),
        "audio": np.full((1, 16000), audio / 10, dtype=np.float32),
        "text": np.stack([encode_text(f"{text} vote")]),
        "mask": np.ones((1, 3), dtype=np.float32),
    }


async def infer(client: httpx.AsyncClient, model: str, doc: dict[str, Any], status: int = 200) -> Any:
    response = await client.post(f"/v2/models/{model}/infer", json=doc)
    assert response.status_code == status, response.text
    return response.json()


def outputs_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {o["name"]: o for o in doc["outputs"]}


async def test_v2_parameters_add_an_explanation_output_and_keep_the_logits(client: httpx.AsyncClient) -> None:
    tensors = v2_tensors(image=3, audio=3, text=5)
    plain = outputs_of(await infer(client, "vote", json_request(tensors)))
    assert set(plain) == {"logits"}
    asked = {"parameters": {"explain": True, "abstain_on_conflict": True}}
    doc = await infer(client, "vote", json_request(tensors, **asked))
    out = outputs_of(doc)
    assert out["logits"]["shape"] == [1, 10] and out["logits"]["data"] == pytest.approx(
        plain["logits"]["data"]
    )
    assert out["explanation"]["datatype"] == "BYTES" and out["explanation"]["shape"] == [1]
    row = json.loads(out["explanation"]["data"][0])
    v1 = await predict(
        client, "vote", explained(fakes.vote_payload(image=3, audio=3, text=5), abstain_on_conflict=True)
    )
    for key in ("status", "label", "opinions", "agreement", "explanation", "abstention", "explain_method"):
        assert row[key] == v1[key], key
    assert row["contributions"] == pytest.approx(v1["contributions"], abs=1e-6)
    assert row["status"] == "uncertain" and row["abstention"]["reasons"] == ["conflict"]


async def test_v2_min_confidence_alone_and_output_selection(client: httpx.AsyncClient) -> None:
    tensors = v2_tensors(image=3, audio=7, text=5)
    doc = await infer(
        client,
        "vote",
        json_request(tensors, parameters={"min_confidence": 0.99}, outputs=[{"name": "explanation"}]),
    )
    (only,) = doc["outputs"]
    row = json.loads(only["data"][0])
    assert row["status"] == "uncertain" and row["label"] is None and row["opinions"] is None
    assert row["abstention"]["reasons"] == ["low_confidence"]


async def test_v2_refuses_bad_parameters_and_an_unasked_explanation(client: httpx.AsyncClient) -> None:
    tensors = v2_tensors(image=1, audio=1, text=1)
    for parameters in ({"explain": "yes"}, {"min_confidence": 2}, {"explain_method": "lime"}):
        doc = await infer(client, "vote", json_request(tensors, parameters=parameters), status=400)
        assert "parameters." in doc["error"]
    doc = await infer(client, "vote", json_request(tensors, outputs=[{"name": "explanation"}]), status=400)
    assert "explanation" in doc["error"]


async def test_the_empty_coalition_is_run_once_per_model_file(client: httpx.AsyncClient, root: Path) -> None:
    sample = explained(fakes.vote_payload(image=2, audio=5, text=5))
    first = await predict(client, "vote", sample)
    cached = EMPTY.get(Manifest.read(root / "vote" / "1" / "manifest.json"))
    assert cached is not None and cached[first["label_index"]] == pytest.approx(
        first["explanation"]["empty"], abs=1e-6
    )
    again = await predict(client, "vote", sample)  # its empty coalition comes from the cache
    assert again["contributions"] == pytest.approx(first["contributions"], abs=1e-6)
    assert again["explanation"]["empty"] == pytest.approx(first["explanation"]["empty"], abs=1e-6)


async def test_v2_many_rows_are_explained_row_by_row(client: httpx.AsyncClient) -> None:
    rows = [v2_tensors(image=i % 10, audio=(i + 3) % 10, text=5) for i in range(20)]  # > INLINE_ROWS
    tensors = {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}
    doc = await infer(client, "vote", json_request(tensors, parameters={"explain": True}))
    explanations = [json.loads(e) for e in outputs_of(doc)["explanation"]["data"]]
    assert len(explanations) == 20 and outputs_of(doc)["logits"]["shape"] == [20, 10]
    for i in (0, 7, 19):
        alone = json.loads(
            outputs_of(await infer(client, "vote", json_request(rows[i], parameters={"explain": True})))[
                "explanation"
            ]["data"][0]
        )
        assert explanations[i]["opinions"] == alone["opinions"]
        assert explanations[i]["contributions"] == pytest.approx(alone["contributions"], abs=1e-6)
