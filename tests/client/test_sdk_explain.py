"""Explained and abstaining answers in the SDK and the CLI: typed fields, options sent, readable lines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sdk_fakes import Handler, Recorder, answer, body_of
from typer.testing import CliRunner

from fusion_client import (
    Abstention,
    Agreement,
    AsyncClient,
    Client,
    DecodeError,
    Dissent,
    Explanation,
    Opinion,
    Prediction,
    cli,
)

OPINIONS = {
    "image": {"label": "3", "probability": 0.97, "fused_label_probability": 0.97},
    "audio": {"label": "3", "probability": 0.81, "fused_label_probability": 0.81},
    "text": {"label": "5", "probability": 0.9, "fused_label_probability": 0.02},
}
DISSENT = {
    "modality": "text",
    "label": "5",
    "probability": 0.9,
    "fused_label_probability": 0.02,
    "margin": 0.88,
}
EXPLAINED = answer(
    label="3",
    status="ok",
    contributions={"image": 1.2, "audio": 0.9, "text": -0.3},
    explain_method="shapley",
    opinions=OPINIONS,
    agreement={"agree": False, "majority": "3", "dissenters": [DISSENT]},
    explanation={
        "method": "shapley",
        "target": "log_probability",
        "label": "3",
        "full": -0.5,
        "empty": -2.3,
        "gate_weights": {"image": 0.5, "audio": 0.3, "text": 0.2},
    },
    abstention=None,
)
UNCERTAIN = answer(label="7") | dict(
    status="uncertain",
    label=None,
    label_index=None,
    abstention={
        "reasons": ["low_confidence", "conflict"],
        "message": "the best label '7' has p=0.410, below min_confidence 0.6; "
        "the modalities' own answers disagree",
        "label": "7",
        "confidence": 0.41,
        "min_confidence": 0.6,
    },
)


def test_explained_answer_is_typed() -> None:
    p = Prediction.from_json(EXPLAINED)
    assert p.status == "ok" and not p.uncertain and p.label == "3"
    assert p.opinions is not None and p.opinions["text"] == Opinion("5", 0.9, 0.02)
    assert p.agreement == Agreement(False, "3", [Dissent("text", "5", 0.9, 0.02, 0.88)])
    assert p.explanation == Explanation(
        "shapley", "log_probability", "3", -0.5, -2.3, {"image": 0.5, "audio": 0.3, "text": 0.2}
    )
    assert p.contributions == {"image": 1.2, "audio": 0.9, "text": -0.3} and p.abstention is None


def test_uncertain_answer_has_no_label_but_keeps_the_probabilities() -> None:
    p = Prediction.from_json(UNCERTAIN)
    assert p.uncertain and p.label is None and p.label_index is None
    assert p.abstention == Abstention(
        ["low_confidence", "conflict"], UNCERTAIN["abstention"]["message"], "7", 0.41, 0.6
    )
    assert p.probabilities[0].label == "7"


def test_an_older_server_s_answer_still_parses() -> None:
    p = Prediction.from_json(answer())  # no status, opinions, agreement, explanation, abstention
    assert p.status == "ok" and p.opinions is None and p.agreement is None and p.explanation is None


def test_a_malformed_opinion_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="prediction"):
        Prediction.from_json(answer(opinions={"image": {"label": "3"}}))


def test_trust_options_are_sent_only_when_set() -> None:
    recorder = Recorder(httpx.Response(200, json=EXPLAINED))
    with Client(transport=httpx.MockTransport(recorder)) as client:
        client.predict("late", text="x")
        client.predict(
            "late",
            text="x",
            explain=True,
            explain_method="leave_one_out",
            min_confidence=0.6,
            abstain_on_conflict=True,
        )
    assert "options" not in body_of(recorder.requests[0])
    assert body_of(recorder.requests[1])["options"] == {
        "explain": True,
        "explain_method": "leave_one_out",
        "min_confidence": 0.6,
        "abstain_on_conflict": True,
    }


def test_async_predict_many_sends_them_too() -> None:
    recorder = Recorder(httpx.Response(200, json={"predictions": [UNCERTAIN, EXPLAINED]}))

    async def run() -> list[Prediction]:
        async with AsyncClient(transport=httpx.MockTransport(recorder)) as client:
            return await client.predict_many("late", [{"text": "a"}, {"text": "b"}], min_confidence=0.0)

    first, second = asyncio.run(run())
    assert first.uncertain and second.agreement is not None
    assert body_of(recorder.requests[0])["options"] == {"min_confidence": 0.0}


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    def run(handler: Handler, *args: str) -> Any:
        monkeypatch.setattr(cli, "Client", lambda **kw: Client(transport=httpx.MockTransport(handler), **kw))
        return CliRunner().invoke(cli.app, list(args))

    return run


def test_cli_shows_opinions_agreement_contributions_and_gates(invoke: Callable[..., Any]) -> None:
    recorder = Recorder(httpx.Response(200, json=EXPLAINED))
    result = invoke(
        recorder, "predict", "-m", "gated", "--text", "x", "--explain", "--explain-method", "shapley"
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "each alone: image 3 (p=0.970), audio 3 (p=0.810), text 5 (p=0.900)" in lines
    assert "agree: NO  dissent: text says 5 (p=0.900; p of the answer 0.020)" in lines
    assert (
        "contributions (shapley): image +1.200, audio +0.900, text -0.300  "
        "(log p(3) = -2.300 with none + these = -0.500)" in lines
    )
    assert "gate weights: image 0.500, audio 0.300, text 0.200" in lines
    assert body_of(recorder.requests[0])["options"] == {"explain": True, "explain_method": "shapley"}


def test_cli_says_uncertain_and_why(invoke: Callable[..., Any]) -> None:
    recorder = Recorder(httpx.Response(200, json=UNCERTAIN))
    result = invoke(
        recorder, "predict", "-m", "late", "--text", "x", "--min-confidence", "0.6", "--abstain-on-conflict"
    )
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("late v1: uncertain (low_confidence, conflict): the best label '7' has p=0.410")
    assert first.endswith("best guess 7 (p=0.410)")
    assert body_of(recorder.requests[0])["options"] == {"min_confidence": 0.6, "abstain_on_conflict": True}


def test_cli_refuses_a_bad_method_or_threshold(invoke: Callable[..., Any]) -> None:
    recorder = Recorder(httpx.Response(200, json=EXPLAINED))
    assert invoke(recorder, "predict", "-m", "late", "--text", "x", "--explain-method", "lime").exit_code == 2
    assert invoke(recorder, "predict", "-m", "late", "--text", "x", "--min-confidence", "1.5").exit_code == 2
    assert recorder.requests == []
