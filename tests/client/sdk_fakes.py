"""Fakes shared by the SDK tests (a module, not conftest, so tests can import them by name)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


def answer(model: str = "late", label: str = "7", **extra: Any) -> dict[str, Any]:
    """A predict answer shaped like docs/api.md."""
    body: dict[str, Any] = {
        "model": model,
        "version": 1,
        "label": label,
        "label_index": int(label),
        "probabilities": [{"label": label, "probability": 0.91}, {"label": "1", "probability": 0.05}],
        "modalities_used": ["image", "text"],
        "modalities_missing": ["audio"],
        "contributions": None,
        "explain_method": None,
    }
    body.update(extra)
    return body


def body_of(request: httpx.Request) -> Any:
    """The JSON a request carried."""
    return json.loads(request.content)


class Recorder:
    """A MockTransport handler that remembers requests and answers from a script.

    Each scripted item is an ``httpx.Response``, an exception to raise, or a callable taking the
    request; the last item repeats once the script runs out.
    """

    def __init__(self, *script: httpx.Response | Exception | Handler) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        if isinstance(item, httpx.Response):  # a fresh copy: a response is consumed once
            return httpx.Response(item.status_code, headers=item.headers, content=item.content)
        return item(request)
