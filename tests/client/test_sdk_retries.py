"""Retries: connection failures and 503 only, with capped exponential backoff and Retry-After."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sdk_fakes import Recorder, answer

from fusion_client import (
    APIError,
    Client,
    ConnectError,
    InvalidInput,
    NotFound,
    ServerError,
    Timeout,
    TransportError,
    Unavailable,
)

OK = httpx.Response(200, json=answer())


def busy(retry_after: str | None = None) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(503, json={"error": "not ready"}, headers=headers)


def test_a_refused_connection_is_retried_with_growing_jittered_backoff(
    call: Callable[..., Any], slept: list[float]
) -> None:
    recorder = Recorder(httpx.ConnectError("refused"), httpx.ConnectError("refused"), OK)
    prediction = call(recorder, "predict", "late", text="sept", options={"backoff": 0.25})
    assert prediction.label == "7" and len(recorder.requests) == 3
    assert 0.125 <= slept[0] <= 0.25 and 0.25 <= slept[1] <= 0.5
    assert recorder.requests[0].content == recorder.requests[2].content


def test_backoff_is_capped(call: Callable[..., Any], slept: list[float]) -> None:
    recorder = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(ConnectError):
        call(recorder, "models", options={"retries": 5, "backoff": 1.0, "backoff_max": 2.0})
    assert len(slept) == 5 and max(slept) <= 2.0 and slept[-1] >= 1.0


def test_a_server_that_stays_down_raises_connect_error_from_the_httpx_error(
    call: Callable[..., Any], slept: list[float]
) -> None:
    recorder = Recorder(httpx.ConnectError("Connection refused"))
    with pytest.raises(ConnectError, match="cannot connect to http://127.0.0.1:8000") as caught:
        call(recorder, "models", options={"retries": 2})
    assert isinstance(caught.value, TransportError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert len(recorder.requests) == 3 and len(slept) == 2


def test_a_connect_timeout_is_retried_and_then_reported_as_a_timeout(
    call: Callable[..., Any], slept: list[float]
) -> None:
    recorder = Recorder(httpx.ConnectTimeout("connect timed out"))
    with pytest.raises(Timeout) as caught:
        call(recorder, "models", options={"retries": 1})
    assert isinstance(caught.value.__cause__, httpx.ConnectTimeout) and len(recorder.requests) == 2


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ReadTimeout("read timed out"), Timeout),
        (httpx.WriteTimeout("write timed out"), Timeout),
        (httpx.RemoteProtocolError("server disconnected"), TransportError),
    ],
)
def test_failures_after_the_request_was_sent_are_not_retried(
    call: Callable[..., Any], slept: list[float], error: httpx.RequestError, expected: type[TransportError]
) -> None:
    recorder = Recorder(error, OK)
    with pytest.raises(expected) as caught:
        call(recorder, "predict", "late", text="sept")
    assert type(caught.value) is expected and caught.value.__cause__ is error
    assert len(recorder.requests) == 1 and slept == []


def test_503_is_retried_with_backoff(call: Callable[..., Any], slept: list[float]) -> None:
    recorder = Recorder(busy(), OK)
    assert call(recorder, "predict", "late", text="sept").label == "7"
    assert len(recorder.requests) == 2 and len(slept) == 1


def test_503_waits_exactly_the_retry_after_seconds(call: Callable[..., Any], slept: list[float]) -> None:
    recorder = Recorder(busy("3"), busy("1"), OK)
    call(recorder, "predict", "late", text="sept")
    assert slept == [3.0, 1.0]


def test_retry_after_may_be_an_http_date(call: Callable[..., Any], slept: list[float]) -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    call(Recorder(busy(later), OK), "predict", "late", text="sept")
    assert 25 <= slept[0] <= 31


def test_an_unparseable_retry_after_falls_back_to_backoff(
    call: Callable[..., Any], slept: list[float]
) -> None:
    call(Recorder(busy("soon"), OK), "predict", "late", text="sept", options={"backoff": 0.1})
    assert 0.05 <= slept[0] <= 0.1


def test_a_retry_after_too_long_to_wait_fails_at_once(call: Callable[..., Any], slept: list[float]) -> None:
    recorder = Recorder(busy("120"), OK)
    with pytest.raises(Unavailable) as caught:
        call(recorder, "predict", "late", text="sept")
    assert caught.value.retry_after == 120.0 and len(recorder.requests) == 1 and slept == []


def test_503_that_persists_raises_unavailable_after_the_retries(
    call: Callable[..., Any], slept: list[float]
) -> None:
    recorder = Recorder(busy("1"))
    with pytest.raises(Unavailable, match="not ready") as caught:
        call(recorder, "models", options={"retries": 2})
    assert len(recorder.requests) == 3 and slept == [1.0, 1.0] and caught.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, InvalidInput), (404, NotFound), (422, InvalidInput), (429, APIError), (500, ServerError)],
)
def test_other_errors_are_never_retried(
    call: Callable[..., Any], slept: list[float], status: int, error: type[APIError]
) -> None:
    recorder = Recorder(httpx.Response(status, json={"error": "no"}, headers={"Retry-After": "1"}), OK)
    with pytest.raises(error):
        call(recorder, "predict", "late", text="sept")
    assert len(recorder.requests) == 1 and slept == []


def test_retries_zero_makes_one_attempt(call: Callable[..., Any], slept: list[float]) -> None:
    recorder = Recorder(httpx.ConnectError("refused"), OK)
    with pytest.raises(ConnectError):
        call(recorder, "models", options={"retries": 0})
    assert len(recorder.requests) == 1 and slept == []


def test_the_configured_timeout_reaches_httpx() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"models": []})

    with Client(timeout=2.5, transport=httpx.MockTransport(handler)) as client:
        assert client.models() == []
    assert seen == [{"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}]
