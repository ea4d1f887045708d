"""Real-browser tests of the web playground: Debian's chromium driven by Playwright (PyPI).

Playwright's own browser download cannot reach its host, so the browser is the system's
``chromium`` (``make sysdeps`` installs it), passed to Playwright by path. Where it (or the
``playwright`` package) is missing the tests skip with the reason; in CI (``CI`` set) they fail,
as the container tests do without Podman. A fake microphone plays ``examples/seven.wav``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from bench.server import ROOT, ServerProcess
from tests.browser.helpers import API_KEY, FAKE_MIC_WAV


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests, but {reason}")
    pytest.skip(reason)


def chromium_path() -> str:
    """The system Chromium (``FUSION_CHROMIUM`` overrides), or skip / fail saying what to install."""
    path = os.environ.get("FUSION_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        _unavailable("chromium is not installed: run `sudo make sysdeps` (apt-get install chromium)")
    return str(path)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module, with a fake microphone playing seven.wav.

    Module scope, not session: Playwright's sync API holds an event loop on this thread while
    it runs, and the async tests collected after these would find it running.
    """
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed: run `make .venv/.dev`")
    args = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt
        f"--use-file-for-fake-audio-capture={FAKE_MIC_WAV}",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-dev-shm-usage",  # containers often give /dev/shm only 64 MB
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium's sandbox refuses to run as root (CI containers)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=args)
        yield browser
        browser.close()


def _server(tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[str]:
    models = ROOT / "models"
    if not (models / "late").is_dir():
        pytest.fail(f"the trained models are not in {models}: run `make train`")
    log = tmp_path_factory.mktemp("playground-server") / "server.log"
    with ServerProcess(models, env=env, log=log) as live:
        yield live.url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m app`` on a free port with the committed models."""
    yield from _server(tmp_path_factory)


@pytest.fixture(scope="module")
def key_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same, with ``FUSION_API_KEY`` set."""
    yield from _server(tmp_path_factory, FUSION_API_KEY=API_KEY)


@pytest.fixture(scope="module")
def spec_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose models have different input specs: tiny untrained ONNX graphs built with
    ``onnx.helper`` (tests/app/fakes.py, no training), ``late`` at the digits' spec and ``wide``
    at 32x32 grey, 2 s at 8 kHz, 64 bytes."""
    from tests.browser.helpers import write_spec_models

    models = write_spec_models(tmp_path_factory.mktemp("spec-models"))
    log = tmp_path_factory.mktemp("spec-server") / "server.log"
    with ServerProcess(models, log=log) as live:
        yield live.url


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Open a fresh tab (own storage) on a URL. ``bypass_csp`` by default: Playwright's
    ``wait_for_function`` evaluates strings, which the page's own policy forbids; a test that
    needs none of those runs under the policy (``bypass_csp=False``)."""
    contexts: list[Any] = []

    def open_page(url: str, **options: Any) -> Any:
        context = browser.new_context(**{"bypass_csp": True, **options})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()
