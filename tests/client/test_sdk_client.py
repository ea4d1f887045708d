"""Client and AsyncClient: requests, typed answers, the error tree, settings, and the public surface."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sdk_fakes import Recorder, answer

import fusion_client
from fusion_client import (
    APIError,
    AsyncClient,
    AuthenticationError,
    ClassProbability,
    Client,
    DecodeError,
    FusionError,
    InvalidInput,
    ModelInfo,
    NotFound,
    ServerError,
    Unavailable,
)

MODELS = {
    "models": [
        {
            "name": "late",
            "versions": [1, 2],
            "latest": 2,
            "fusion": "late",
            "modalities": ["image", "audio", "text"],
            "ready": True,
            "provider": "CPUExecutionProvider",
        },
        {"name": "text_only", "versions": [1], "latest": 1, "fusion": "unimodal", "modalities": ["text"]},
    ]
}
CARD = {
    "name": "late",
    "version": 1,
    "versions": [1, 2],
    "fusion": "late",
    "description": "decision-level",
    "modalities": {
        "image": {"formats": ["png", "jpeg"], "tensor": {"dtype": "uint8", "shape": [-1, 28, 28]}},
        "audio": {"formats": ["wav"], "tensor": {"dtype": "float32", "shape": [-1, 16000]}},
        "text": {"formats": ["utf-8"], "tensor": {"dtype": "uint8", "shape": [-1, 64]}},
    },
    "labels": [str(i) for i in range(10)],
    "provider": "CPUExecutionProvider",
    "ready": True,
    "explain": "shapley",
    "explain_methods": ["shapley", "leave_one_out"],
    "gate_weights": False,
    "metrics": {"accuracy": 0.9},
    "inputs": [],
    "outputs": [],
}


def test_public_names_are_exactly_all() -> None:
    names = vars(fusion_client).items()  # submodules (fusion_client.cli) are not API names
    public = {name for name, obj in names if not name.startswith("_") and not inspect.ismodule(obj)}
    public.add("__version__")
    assert set(fusion_client.__all__) == public
    assert fusion_client.__version__ == "0.1.0"


def test_every_exception_has_one_root() -> None:
    exported = [getattr(fusion_client, name) for name in fusion_client.__all__]
    errors = [obj for obj in exported if isinstance(obj, type) and issubclass(obj, BaseException)]
    assert len(errors) == 11 and all(issubclass(e, FusionError) for e in errors)


def test_async_client_mirrors_client_method_for_method() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") and name not in {"close", "aclose"}
        }

    sync, asynchronous = public(Client), public(AsyncClient)
    assert sync.keys() == asynchronous.keys()
    for name, signature in sync.items():
        assert signature.parameters.keys() == asynchronous[name].parameters.keys(), name
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
    assert inspect.iscoroutinefunction(AsyncClient.aclose) and not hasattr(AsyncClient, "close")


def test_models_are_listed_with_types(call: Callable[..., Any]) -> None:
    recorder = Recorder(httpx.Response(200, json=MODELS))
    late, text_only = call(recorder, "models")
    assert recorder.requests[0].url.path == "/v1/models"
    assert (late.name, late.versions, late.latest, late.ready) == ("late", [1, 2], 2, True)
    assert late.modalities == ["image", "audio", "text"] and late.provider == "CPUExecutionProvider"
    assert (text_only.ready, text_only.provider) == (False, None)


@pytest.mark.parametrize(("version", "path"), [(None, "/v1/models/late"), (2, "/v1/models/late/versions/2")])
def test_model_card(call: Callable[..., Any], version: int | None, path: str) -> None:
    recorder = Recorder(httpx.Response(200, json=CARD))
    card: ModelInfo = call(recorder, "model", "late", version=version)
    assert recorder.requests[0].url.path == path
    assert card.modalities == ["image", "audio", "text"] and card.formats["image"] == ["png", "jpeg"]
    assert card.labels[7] == "7" and card.explain == "shapley" and card.metrics == {"accuracy": 0.9}
    assert card.raw["modalities"]["audio"]["tensor"]["shape"] == [-1, 16000]
    assert card.explain_methods == ["shapley", "leave_one_out"] and card.gate_weights is False


def test_a_model_whose_card_the_server_could_not_read_has_no_fusion(call: Callable[..., Any]) -> None:
    """The server sends ``"fusion": null`` then; it must not become the string "None"."""
    broken = {"name": "broken", "versions": [1], "latest": 1, "fusion": None, "modalities": []}
    (summary,) = call(Recorder(httpx.Response(200, json={"models": [broken]})), "models")
    assert summary.fusion is None
    card: ModelInfo = call(Recorder(httpx.Response(200, json={**CARD, "fusion": None})), "model", "late")
    assert card.fusion is None
    assert call(Recorder(httpx.Response(200, json=CARD)), "model", "late").fusion == "late"


def test_model_names_are_escaped_in_the_path(call: Callable[..., Any]) -> None:
    recorder = Recorder(httpx.Response(404, json={"error": "unknown model"}))
    with pytest.raises(NotFound):
        call(recorder, "model", "a/b c")
    assert recorder.requests[0].url.raw_path == b"/v1/models/a%2Fb%20c"


def test_predict_returns_a_typed_prediction(call: Callable[..., Any]) -> None:
    body = answer(contributions={"image": 0.42, "text": 0.18}, explain_method="leave_one_out", extra_field=1)
    prediction = call(Recorder(httpx.Response(200, json=body)), "predict", "late", text="sept", explain=True)
    assert (prediction.model, prediction.version, prediction.label, prediction.label_index) == (
        "late",
        1,
        "7",
        7,
    )
    assert prediction.probabilities[0] == ClassProbability("7", 0.91)
    assert prediction.modalities_used == ["image", "text"] and prediction.modalities_missing == ["audio"]
    assert prediction.contributions == {"image": 0.42, "text": 0.18}
    assert prediction.explain_method == "leave_one_out" and prediction.raw["extra_field"] == 1


def test_predictions_without_explain_have_no_contributions(call: Callable[..., Any]) -> None:
    prediction = call(Recorder(httpx.Response(200, json=answer())), "predict", "late", text="sept")
    assert prediction.contributions is None and prediction.explain_method is None


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidInput),
        (413, InvalidInput),
        (422, InvalidInput),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFound),
        (409, APIError),
        (500, ServerError),
        (503, Unavailable),
    ],
)
def test_error_statuses_map_onto_the_tree_and_carry_the_message(
    call: Callable[..., Any], status: int, error: type[APIError]
) -> None:
    recorder = Recorder(httpx.Response(status, json={"error": "image could not be decoded"}))
    with pytest.raises(error) as caught:
        call(recorder, "predict", "late", text="x", options={"retries": 0})
    assert type(caught.value) is error
    assert caught.value.status_code == status and caught.value.message == "image could not be decoded"
    assert str(caught.value) == f"{status}: image could not be decoded"
    assert caught.value.response is not None and caught.value.response.status_code == status


def test_an_error_without_json_keeps_the_body_text(call: Callable[..., Any]) -> None:
    with pytest.raises(ServerError, match="upstream exploded"):
        call(Recorder(httpx.Response(502, text="upstream exploded")), "models")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"label": "7"}),
        httpx.Response(200, json=answer(probabilities=[{"label": "7"}])),
    ],
)
def test_malformed_answers_raise_decode_error(call: Callable[..., Any], response: httpx.Response) -> None:
    with pytest.raises(DecodeError):
        call(Recorder(response), "predict", "late", text="x")


def test_a_models_answer_of_the_wrong_shape_raises_decode_error(call: Callable[..., Any]) -> None:
    with pytest.raises(DecodeError, match="models"):
        call(Recorder(httpx.Response(200, json={"items": []})), "models")


def test_predict_many_checks_it_got_one_answer_per_instance(call: Callable[..., Any]) -> None:
    recorder = Recorder(httpx.Response(200, json={"predictions": [answer()]}))
    with pytest.raises(DecodeError, match="sent 2 instances but got 1"):
        call(recorder, "predict_many", "late", [{"text": "a"}, {"text": "b"}])


@pytest.mark.parametrize(
    ("live", "ready", "expected"),
    [
        (httpx.Response(200), httpx.Response(200), (True, True)),
        (httpx.Response(200), httpx.Response(503, json={"error": "loading"}), (True, False)),
        (httpx.ConnectError("refused"), httpx.ConnectError("refused"), (False, False)),
    ],
)
def test_health_probes_answer_booleans_without_retrying(
    call: Callable[..., Any], slept: list[float], live: Any, ready: Any, expected: tuple[bool, bool]
) -> None:
    routes = {"/health/live": Recorder(live), "/health/ready": Recorder(ready)}
    handler = lambda request: routes[request.url.path](request)  # noqa: E731
    assert (call(handler, "live"), call(handler, "ready")) == expected
    assert [len(r.requests) for r in routes.values()] == [1, 1] and slept == []


def test_wait_ready_polls_until_ready(call: Callable[..., Any], slept: list[float]) -> None:
    recorder = Recorder(httpx.ConnectError("refused"), httpx.Response(503), httpx.Response(200))
    assert call(recorder, "wait_ready", timeout=60, interval=0.5) is None
    assert len(recorder.requests) == 3 and slept == [0.5, 0.5]


def test_wait_ready_gives_up_after_its_timeout(call: Callable[..., Any]) -> None:
    with pytest.raises(fusion_client.Timeout, match="not ready within 0 s"):
        call(Recorder(httpx.Response(503)), "wait_ready", timeout=0)


def test_settings_come_from_arguments_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(httpx.Response(200, json=MODELS))
    monkeypatch.setenv("FUSION_URL", "http://env-host:9000/")
    monkeypatch.setenv("FUSION_API_KEY", "env-key")
    with Client(transport=httpx.MockTransport(recorder)) as client:
        client.models()
    with Client("http://arg-host:1", api_key="arg-key", transport=httpx.MockTransport(recorder)) as client:
        client.models()
    first, second = recorder.requests
    assert (
        str(first.url) == "http://env-host:9000/v1/models"
        and first.headers["Authorization"] == "Bearer env-key"
    )
    assert (
        str(second.url) == "http://arg-host:1/v1/models"
        and second.headers["Authorization"] == "Bearer arg-key"
    )
    assert first.headers["User-Agent"] == "fusionserve-client/0.1.0"


def test_defaults_without_environment() -> None:
    recorder = Recorder(httpx.Response(200, json=MODELS))
    with Client(transport=httpx.MockTransport(recorder), headers={"X-Trace": "1"}) as client:
        client.models()
        assert repr(client) == "Client(base_url='http://127.0.0.1:8000')"
    (request,) = recorder.requests
    assert str(request.url) == "http://127.0.0.1:8000/v1/models"
    assert "Authorization" not in request.headers and request.headers["X-Trace"] == "1"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_url": "localhost:8000"}, "http://"),
        ({"retries": -1}, "retries"),
        ({"backoff": -1.0}, "backoff"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Client(**kwargs)


def test_context_managers_close_the_pool() -> None:
    with Client() as client:
        pass
    assert client._http.is_closed

    async def go() -> AsyncClient:
        async with AsyncClient() as aclient:
            pass
        return aclient

    assert asyncio.run(go())._http.is_closed
