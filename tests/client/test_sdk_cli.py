"""The ``fusionserve`` command against a fake server: output for people and machines, helpful errors."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sdk_fakes import Handler, Recorder, answer, body_of
from typer.testing import CliRunner

from fusion_client import Client, __version__, cli

Invoke = Callable[..., Any]


def unwrapped(output: str) -> str:
    """A usage error as one line: rich wraps it at 80 columns in a box, wherever a long path ends."""
    return " ".join(output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch, slept: list[float]) -> Callable[..., Any]:
    """Run the CLI with its clients talking to ``handler``; returns the click Result."""

    def run(handler: Handler, *args: str, env: dict[str, str] | None = None) -> Any:
        monkeypatch.setattr(cli, "Client", lambda **kw: Client(transport=httpx.MockTransport(handler), **kw))
        return CliRunner().invoke(cli.app, list(args), env=env)

    return run


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "digit.png"
    path.write_bytes(b"\x89PNG fake bytes")
    return path


def test_predict_prints_a_readable_answer(invoke: Invoke, png: Path) -> None:
    recorder = Recorder(httpx.Response(200, json=answer()))
    result = invoke(recorder, "predict", "--model", "late", "--image", str(png), "--text", "sept")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "late v1: 7  (p=0.910)"
    assert "used: image, text   missing: audio" in result.output
    body = body_of(recorder.requests[0])
    assert base64.b64decode(body["image"]["b64"]) == png.read_bytes() and body["text"] == "sept"


def test_predict_explain_and_options(invoke: Invoke) -> None:
    body = answer(contributions={"image": 0.42, "text": -0.1}, explain_method="leave_one_out")
    recorder = Recorder(httpx.Response(200, json=body))
    args = ["predict", "-m", "late", "--text", "x", "--explain", "--top-k", "2", "--model-version", "3"]
    result = invoke(recorder, *args)
    assert "contributions (leave_one_out): image +0.420, text -0.100" in result.output
    assert body_of(recorder.requests[0])["options"] == {"top_k": 2, "explain": True, "version": 3}


def test_predict_json_prints_the_servers_answer(invoke: Invoke) -> None:
    result = invoke(
        Recorder(httpx.Response(200, json=answer())), "predict", "-m", "late", "--text", "x", "--json"
    )
    assert result.exit_code == 0 and json.loads(result.output) == answer()


def test_models_table_and_json(invoke: Invoke) -> None:
    listing = {
        "models": [
            {
                "name": "late",
                "versions": [1, 2],
                "latest": 2,
                "fusion": "late",
                "modalities": ["image", "text"],
            },
            {
                "name": "gated",
                "versions": [1],
                "latest": 1,
                "fusion": "gated",
                "modalities": ["audio"],
                "ready": True,
            },
        ]
    }
    table = invoke(Recorder(httpx.Response(200, json=listing)), "models").output.splitlines()
    assert table[0].split() == ["NAME", "FUSION", "MODALITIES", "VERSIONS", "READY", "PROVIDER"]
    assert table[1].split() == ["late", "late", "image,text", "1,2", "no", "-"]
    assert (
        json.loads(invoke(Recorder(httpx.Response(200, json=listing)), "models", "--json").output) == listing
    )
    assert "no models" in invoke(Recorder(httpx.Response(200, json={"models": []})), "models").output
    broken = {"name": "broken", "versions": [1], "latest": 1, "fusion": None, "modalities": []}
    row = invoke(Recorder(httpx.Response(200, json={"models": [broken]})), "models").output.splitlines()[1]
    assert row.split() == ["broken", "-", "1", "no", "-"]  # not "None"


def test_url_and_api_key_come_from_options_or_environment(invoke: Invoke) -> None:
    recorder = Recorder(httpx.Response(200, json={"models": []}))
    invoke(recorder, "models", "--url", "http://opt:1", "--api-key", "k1")
    invoke(recorder, "models", env={"FUSION_URL": "http://env:2", "FUSION_API_KEY": "k2"})
    (first, second) = recorder.requests
    assert (first.url.host, first.headers["Authorization"]) == ("opt", "Bearer k1")
    assert (second.url.host, second.headers["Authorization"]) == ("env", "Bearer k2")


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (httpx.ConnectError("refused"), "cannot reach a fusionserve server at http://127.0.0.1:8000"),
        (httpx.ReadTimeout("slow"), "did not answer in time; try a larger --timeout"),
        (
            httpx.Response(404, json={"error": "unknown model 'lat'"}),
            "unknown model 'lat' ('fusionserve models'",
        ),
        (httpx.Response(401, json={"error": "missing API key"}), "missing API key (pass --api-key"),
        (httpx.Response(422, json={"error": "text: too long"}), "Error: 422: text: too long"),
        (httpx.Response(200, text="<html>"), "not JSON"),
    ],
)
def test_failures_are_one_helpful_line_and_exit_1(invoke: Invoke, script: Any, message: str) -> None:
    result = invoke(Recorder(script), "predict", "-m", "lat", "--text", "x")
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_a_missing_file_is_a_usage_error_before_any_request(invoke: Invoke, tmp_path: Path) -> None:
    recorder = Recorder(httpx.Response(200, json=answer()))
    result = invoke(recorder, "predict", "-m", "late", "--audio", str(tmp_path / "nope.wav"))
    assert result.exit_code == 2 and "does not exist" in unwrapped(result.output) and recorder.requests == []


def test_predict_needs_a_modality(invoke: Invoke) -> None:
    result = invoke(Recorder(httpx.Response(200, json=answer())), "predict", "-m", "late")
    assert result.exit_code == 2
    assert "give at least one of --image, --audio, --text" in unwrapped(result.output)


def test_version() -> None:
    result = CliRunner().invoke(cli.app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"fusionserve-client {__version__}"


@pytest.mark.parametrize(
    ("command", "hint"),
    [(["serve"], "pip install 'fusionserve[serving]'"), (["train"], "pip install 'fusionserve[training]'")],
)
def test_serve_and_train_explain_how_to_install_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, command: list[str], hint: str
) -> None:
    monkeypatch.setattr(cli, "_module_available", lambda name: False)
    result = CliRunner().invoke(cli.app, command)
    assert result.exit_code == 1 and hint in result.output


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, str]]]:
    """Record run_module calls instead of starting processes; they 'exit' with 3."""
    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(cli, "_module_available", lambda name: True)

    def fake_run(args: list[str], env: dict[str, str]) -> int:
        calls.append((args, env))
        return 3

    monkeypatch.setattr(cli, "run_module", fake_run)
    return calls


def test_serve_runs_the_server_module_with_settings_in_the_environment(
    ran: list[Any], tmp_path: Path
) -> None:
    args = ["serve", "--host", "0.0.0.0", "--port", "9001", "--models-dir", str(tmp_path), "--workers", "2"]
    result = CliRunner().invoke(cli.app, args)
    ((module_args, env),) = ran
    assert result.exit_code == 3 and module_args == ["app", "--workers", "2"]
    assert (env["FUSION_HOST"], env["FUSION_PORT"], env["FUSION_MODELS_DIR"]) == (
        "0.0.0.0",
        "9001",
        str(tmp_path),
    )


def test_train_forwards_every_argument(ran: list[Any]) -> None:
    result = CliRunner().invoke(cli.app, ["train", "--fusion", "late", "--help"])
    assert result.exit_code == 3 and ran[0][0] == ["training", "train", "--fusion", "late", "--help"]


def test_run_module_runs_the_module_and_returns_its_exit_status() -> None:
    """In a child interpreter, since on POSIX run_module replaces the calling process."""
    code = "import os, sys; from fusion_client import cli; cli.run_module(sys.argv[1:], dict(os.environ))"
    done = subprocess.run(
        [sys.executable, "-c", code, "json.tool", "--no-such-option"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "--no-such-option" in done.stderr
