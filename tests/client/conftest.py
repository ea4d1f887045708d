"""Fixtures for the SDK tests: fake servers on httpx.MockTransport, both clients, no real sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sdk_fakes import Handler

from fusion_client import AsyncClient, Client, _async_client, _client


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without the user's FUSION_URL / FUSION_API_KEY."""
    monkeypatch.delenv("FUSION_URL", raising=False)
    monkeypatch.delenv("FUSION_API_KEY", raising=False)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace both clients' sleep; the list receives every requested delay."""
    delays: list[float] = []

    async def fake_async_sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(_client, "_sleep", delays.append)
    monkeypatch.setattr(_async_client, "_sleep", fake_async_sleep)
    return delays


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest, slept: list[float]) -> Iterator[Callable[..., Any]]:
    """Run one SDK method on a fresh Client or AsyncClient against a handler.

    ``call(handler, "predict", "late", text="x", options={"retries": 0})`` returns what the method
    returns (or raises what it raises), so every behaviour is checked on both clients.
    """

    def run(
        handler: Handler, method: str, *args: Any, options: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        transport = httpx.MockTransport(handler)
        if request.param == "sync":
            with Client(transport=transport, **(options or {})) as client:
                return getattr(client, method)(*args, **kwargs)

        async def go() -> Any:
            async with AsyncClient(transport=transport, **(options or {})) as client:
                return await getattr(client, method)(*args, **kwargs)

        return asyncio.run(go())

    yield run
