"""The ``fusionserve`` command: predict and list models through the SDK, start the server or the trainer.

``fusionserve predict --model late --image x.png --audio y.wav --text "sept"`` prints a readable
answer; ``--json`` prints the server's JSON for machines. Every failure ends in one line on stderr
that says what to do, and exit status 1 (2 for a wrong command line).
"""

from __future__ import annotations

import enum
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from fusion_client._client import Client
from fusion_client._exceptions import (
    AuthenticationError,
    ConnectError,
    FusionError,
    NotFound,
    Timeout,
)
from fusion_client._types import ModelSummary, Prediction
from fusion_client._version import __version__

app = typer.Typer(
    name="fusionserve",
    help="Multimodal (image + audio + text) fusion inference: query a server, start one, train models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Url = Annotated[
    str | None,
    typer.Option(envvar="FUSION_URL", help="Server URL (default http://127.0.0.1:8000).", show_default=False),
]
ApiKey = Annotated[
    str | None,
    typer.Option(envvar="FUSION_API_KEY", help="API key, if the server wants one.", show_default=False),
]
TimeoutS = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each answer.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a summary.")]


class ExplainMethod(enum.StrEnum):
    """The contribution methods the server knows."""

    shapley = "shapley"
    leave_one_out = "leave_one_out"


def _media_option(flag: str, help: str) -> typer.models.OptionInfo:
    """A file option that typer checks first, so a missing file is a clear usage error."""
    return typer.Option(flag, exists=True, dir_okay=False, readable=True, show_default=False, help=help)


def make_client(url: str | None, api_key: str | None, timeout: float) -> Client:
    """The SDK client behind the query commands."""
    return Client(base_url=url, api_key=api_key, timeout=timeout)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fusionserve-client {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Multimodal fusion inference: query a server (predict, models), start one (serve), train (train)."""


@app.command()
def predict(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name, e.g. late (fusionserve models).")],
    image: Annotated[Path | None, _media_option("--image", "Image file (PNG, JPEG, ...).")] = None,
    audio: Annotated[Path | None, _media_option("--audio", "Audio file (WAV, FLAC, OGG).")] = None,
    text: Annotated[str | None, typer.Option("--text", help="Text.", show_default=False)] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, help="How many labels to show.")] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show each modality's own answer, agreement and contributions.")
    ] = False,
    model_version: Annotated[
        int | None, typer.Option("--model-version", min=1, help="Model version (default: the latest).")
    ] = None,
    explain_method: Annotated[
        ExplainMethod | None,
        typer.Option("--explain-method", help="Contributions: shapley (default) or leave_one_out."),
    ] = None,
    min_confidence: Annotated[
        float | None,
        typer.Option("--min-confidence", min=0.0, max=1.0, help="Answer 'uncertain' below this probability."),
    ] = None,
    abstain_on_conflict: Annotated[
        bool, typer.Option("--abstain-on-conflict", help="Answer 'uncertain' when the modalities disagree.")
    ] = False,
    as_json: AsJson = False,
    url: Url = None,
    api_key: ApiKey = None,
    timeout: TimeoutS = 30.0,
) -> None:
    """Classify one sample from any non-empty subset of --image, --audio, --text."""
    if image is None and audio is None and text is None:
        raise typer.BadParameter("give at least one of --image, --audio, --text")
    with _friendly_errors(url), make_client(url, api_key, timeout) as client:
        answer = client.predict(
            model,
            image=image,
            audio=audio,
            text=text,
            top_k=top_k,
            explain=explain,
            version=model_version,
            explain_method=None if explain_method is None else explain_method.value,
            min_confidence=min_confidence,
            abstain_on_conflict=abstain_on_conflict,
        )
    typer.echo(json.dumps(answer.raw, indent=2) if as_json else format_prediction(answer))


@app.command()
def models(
    as_json: AsJson = False, url: Url = None, api_key: ApiKey = None, timeout: TimeoutS = 30.0
) -> None:
    """List the models the server holds."""
    with _friendly_errors(url), make_client(url, api_key, timeout) as client:
        found = client.models()
    typer.echo(json.dumps({"models": [m.raw for m in found]}, indent=2) if as_json else format_models(found))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Interface to bind (FUSION_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (FUSION_PORT).")] = None,
    models_dir: Annotated[
        Path | None, typer.Option(help="Model repository (FUSION_MODELS_DIR).", file_okay=False)
    ] = None,
) -> None:
    """Start the fusionserve server (python -m app); other options are passed through."""
    if not (_module_available("app.main") and _module_available("uvicorn")):
        _fail(
            "the server is not installed here. Install it with: pip install 'fusionserve[serving]' "
            "(from a checkout of the repository: pip install -e '.[serving]', or make serve)"
        )
    env = dict(os.environ)
    for name, value in (("FUSION_HOST", host), ("FUSION_PORT", port), ("FUSION_MODELS_DIR", models_dir)):
        if value is not None:
            env[name] = str(value)
    raise typer.Exit(run_module(["app", *ctx.args], env))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False
)
def train(ctx: typer.Context) -> None:
    """Train fusion models (python -m training train ...); all arguments, --help included, are passed on."""
    if not _module_available("training"):
        _fail(
            "the trainer is not installed here. Install it with: pip install 'fusionserve[training]' "
            "(from a checkout of the repository: pip install -e '.[training]')"
        )
    raise typer.Exit(run_module(["training", "train", *ctx.args], dict(os.environ)))


def run_module(args: list[str], env: dict[str, str]) -> int:
    """Run ``python -m <args>`` and return its exit status.

    On POSIX the command *becomes* the module (exec): signals from a terminal, docker or systemd
    reach the server itself, so it shuts down cleanly and never outlives a parent. Elsewhere it
    runs as a child process.
    """
    command = [sys.executable, "-m", *args]
    if os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, command, env)
    return subprocess.call(command, env=env)


def format_prediction(answer: Prediction) -> str:
    """A few lines a person reads at a glance."""
    top = answer.probabilities[0].probability if answer.probabilities else float("nan")
    if answer.abstention is not None:
        a = answer.abstention
        head = f"uncertain ({', '.join(a.reasons)}): {a.message}; best guess {a.label} (p={a.confidence:.3f})"
    else:
        head = f"{answer.label}  (p={top:.3f})"
    lines = [f"{answer.model} v{answer.version}: {head}"]
    width = max((len(p.label) for p in answer.probabilities), default=1)
    for p in answer.probabilities:
        lines.append(f"  {p.label:>{width}}  {p.probability:.3f}  {'#' * round(p.probability * 30)}")
    used = ", ".join(answer.modalities_used) or "-"
    missing = ", ".join(answer.modalities_missing) or "-"
    lines.append(f"used: {used}   missing: {missing}")
    lines.extend(f"adjusted: {a.message}" for a in (answer.adjusted or {}).values())  # cut to the spec
    lines.extend(_trust_lines(answer))
    return "\n".join(lines)


def _trust_lines(answer: Prediction) -> list[str]:
    """Opinions, agreement, contributions and gate weights, when the server sent them."""
    lines = []
    if answer.opinions is not None:
        parts = ", ".join(f"{m} {o.label} (p={o.probability:.3f})" for m, o in answer.opinions.items())
        lines.append(f"each alone: {parts}")
    if answer.agreement is not None:
        g = answer.agreement
        said = "yes" if g.agree else "NO"
        dissent = "; ".join(
            f"{d.modality} says {d.label} (p={d.probability:.3f}; "
            f"p of the answer {d.fused_label_probability:.3f})"
            for d in g.dissenters
        )
        lines.append(f"agree: {said}" + (f"  dissent: {dissent}" if dissent else ""))
    if answer.contributions is not None:
        parts = ", ".join(f"{name} {value:+.3f}" for name, value in answer.contributions.items())
        e = answer.explanation
        if e is not None and e.empty is not None:
            target = "log p" if e.target == "log_probability" else "p"
            parts += f"  ({target}({e.label}) = {e.empty:.3f} with none + these = {e.full:.3f})"
        lines.append(f"contributions ({answer.explain_method}): {parts}")
    if answer.explanation is not None and answer.explanation.gate_weights:
        parts = ", ".join(f"{m} {w:.3f}" for m, w in answer.explanation.gate_weights.items())
        lines.append(f"gate weights: {parts}")
    return lines


def format_models(found: list[ModelSummary]) -> str:
    """A table of the models."""
    if not found:
        return "no models (is the model repository empty?)"
    rows = [("NAME", "FUSION", "MODALITIES", "VERSIONS", "READY", "PROVIDER")]
    for m in found:
        versions = ",".join(str(v) for v in m.versions)
        ready = "yes" if m.ready else "no"
        fusion = m.fusion or "-"  # none when the server could not read the model's card
        rows.append((m.name, fusion, ",".join(m.modalities), versions, ready, m.provider or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


@contextmanager
def _friendly_errors(url: str | None) -> Iterator[None]:
    """Turn SDK errors into one line that says what to do, and exit status 1."""
    where = url or os.environ.get("FUSION_URL") or "http://127.0.0.1:8000"
    try:
        yield
    except ConnectError:
        _fail(
            f"cannot reach a fusionserve server at {where}. "
            "Start one with 'fusionserve serve', or pass --url / set FUSION_URL."
        )
    except Timeout:
        _fail(f"the server at {where} did not answer in time; try a larger --timeout.")
    except AuthenticationError as exc:
        _fail(f"{exc.message} (pass --api-key or set FUSION_API_KEY).")
    except NotFound as exc:
        _fail(f"{exc.message} ('fusionserve models' lists what the server holds).")
    except FusionError as exc:
        _fail(str(exc))
    except (FileNotFoundError, IsADirectoryError, PermissionError, ValueError, TypeError) as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


def _module_available(name: str) -> bool:
    """Whether ``python -m`` started here would find ``name``: installed, or under the current directory."""
    try:
        if importlib.util.find_spec(name) is not None:
            return True
    except ImportError:
        pass
    top, _, rest = name.partition(".")
    spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
    if spec is None or not rest:
        return spec is not None
    return (
        importlib.machinery.PathFinder.find_spec(name, list(spec.submodule_search_locations or []))
        is not None
    )
