"""Fixtures for the server tests: a fake model repository and apps served in-process over ASGI."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.config import Settings
from app.main import create_app
from tests.app import fakes  # tests/ and tests/app are namespace packages

PNG = fakes.png_bytes()
WAV = fakes.wav_bytes()
PNG_B64 = base64.b64encode(PNG).decode()
WAV_B64 = base64.b64encode(WAV).decode()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared, read-only fake repository (see ``fakes.write_repository``)."""
    return fakes.write_repository(tmp_path_factory.mktemp("models"))


@asynccontextmanager
async def serve(settings: Settings, *, raise_app_exceptions: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan, wait for the repository, yield an ASGI client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.repository.wait_ready()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


Serve = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_client(models_dir: Path) -> Serve:
    """``async with make_client(api_key="k") as client``: an app with settings overrides."""

    def factory(
        raise_app_exceptions: bool = True, **overrides: Any
    ) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        settings = Settings(**{"models_dir": models_dir, **overrides})
        return serve(settings, raise_app_exceptions=raise_app_exceptions)

    return factory


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(models_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """One app over the shared repository for every read-only API test (session event loop)."""
    async with serve(Settings(models_dir=models_dir)) as c:
        yield c
