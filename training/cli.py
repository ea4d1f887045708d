"""The ``python -m training`` command line (typer).

One command per job (``data`` here; training and reporting register on the same ``app``).
Expected failures (a missing tool, a bad manifest row) print one line and exit 1; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from training import EPOCHS

app = typer.Typer(
    help="Build data sets, train and export fusion models, write the report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SeedOption = Annotated[int, typer.Option(help="Seed of everything random (data, splits, subsets).")]
LimitOption = Annotated[
    int | None, typer.Option(help="Use a stratified subset of this many samples (fast trials, tests).")
]
CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Where built data sets are cached.", show_default="<repo>/.cache/data", envvar="FUSION_CACHE_DIR"
    ),
]
SourceOption = Annotated[
    str, typer.Option("--data", help="'default' (built-in digits) or a .jsonl/.csv manifest (or its folder).")
]
_SPEC = "Input spec of a manifest's models (default: derived from the files; see docs/specs.md)"
ImageSizeOption = Annotated[
    int | None, typer.Option(min=8, max=1024, help=f"{_SPEC}: square image side, pixels.")
]
ChannelsOption = Annotated[int | None, typer.Option(min=1, max=3, help=f"{_SPEC}: 1 grey or 3 RGB.")]
SecondsOption = Annotated[
    float | None, typer.Option(min=0.05, max=60, help=f"{_SPEC}: audio window, seconds.")
]
RateOption = Annotated[int | None, typer.Option(min=4000, max=48000, help=f"{_SPEC}: audio sample rate, Hz.")]
TextBytesOption = Annotated[
    int | None, typer.Option(min=8, max=4096, help=f"{_SPEC}: text length, UTF-8 bytes.")
]
AudioNormalizeOption = Annotated[
    bool | None,
    typer.Option(
        "--audio-normalize/--no-audio-normalize",
        help=f"{_SPEC}: remove each log-mel band's mean (speech; default). Off for steady sounds like tones.",
        show_default=False,
    ),
]


def spec_choices(
    image_size: int | None, image_channels: int | None, audio_seconds: float | None,
    sample_rate: int | None, text_bytes: int | None, audio_normalize: bool | None = None,
) -> dict[str, object]:  # fmt: skip
    """The spec options as :func:`training.data.load_dataset`'s ``spec`` (``None`` = derive)."""
    if image_channels == 2:
        raise fail("--image-channels is 1 (grey) or 3 (RGB)")
    return {
        "image_size": image_size,
        "image_channels": image_channels,
        "audio_seconds": audio_seconds,
        "sample_rate": sample_rate,
        "text_bytes": text_bytes,
        "audio_normalize": audio_normalize,
    }


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    """fusionserve training tools."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


def fail(message: str) -> typer.Exit:
    """Print ``message`` to stderr; the caller raises the returned exit (status 1)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@app.command()
def data(
    source: SourceOption = "default",
    seed: SeedOption = 0,
    limit: LimitOption = None,
    cache_dir: CacheDirOption = None,
    export: Annotated[
        Path | None, typer.Option(help="Also write the data set as PNG + WAV files and manifest.jsonl here.")
    ] = None,
    probe: Annotated[
        bool, typer.Option(help="Train the unimodal baselines on it and print each modality's test accuracy.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    image_size: ImageSizeOption = None,
    image_channels: ChannelsOption = None,
    audio_seconds: SecondsOption = None,
    sample_rate: RateOption = None,
    text_bytes: TextBytesOption = None,
    audio_normalize: AudioNormalizeOption = None,
) -> None:
    """Build (or load from the cache) a data set and print its fingerprint and input spec."""
    from training.data import MissingToolError, load_dataset
    from training.data import export as export_dataset

    spec = spec_choices(image_size, image_channels, audio_seconds, sample_rate, text_bytes, audio_normalize)
    start = time.perf_counter()
    try:
        ds = load_dataset(source, seed=seed, limit=limit, cache_dir=cache_dir, progress=progress, spec=spec)
    except (MissingToolError, FileNotFoundError, ValueError) as exc:  # ValueError: DatasetError, bad limit
        raise fail(str(exc)) from exc
    counts = ", ".join(f"{k} {v}" for k, v in ds.counts().items())
    typer.echo(f"data {source!r} (seed {seed}): {len(ds)} samples ({counts}), {len(ds.labels)} classes")
    typer.echo(f"input spec: {ds.spec.summary()}")
    typer.echo(f"ready in {time.perf_counter() - start:.1f} s")
    typer.echo(f"fingerprint {ds.fingerprint}")
    if export is not None:
        manifest = export_dataset(ds, export, progress=progress)
        typer.echo(f"exported to {manifest}")
    if probe:
        from training.data.probe import probe_modalities

        for modality, accuracy in probe_modalities(ds, seed=seed, progress=progress).items():
            typer.echo(f"{modality:>6} alone: test accuracy {100 * accuracy:.1f}%")


ModelsOption = Annotated[
    str,
    typer.Option(
        "--fusion",
        help="all | fusions | baselines | a comma-separated list of "
        "early, intermediate, late, gated, image_only, audio_only, text_only.",
    ),
]
OutOption = Annotated[Path, typer.Option(help="Model repository to export into.")]
RUNS_DIR = Path("runs")


def fresh_run_dir(root: Path = RUNS_DIR) -> Path:
    """``runs/<UTC time>``: where ``train`` writes unless told ``--out`` (``make train`` says
    ``--out models/``), so a trial run never overwrites the committed default models."""
    import datetime as dt

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path, n = root / stamp, 1
    while path.exists():  # two runs in the same second
        n += 1
        path = root / f"{stamp}-{n}"
    return path


@app.command()
def train(
    fusion: ModelsOption = "all",
    source: SourceOption = "default",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs per model.")] = EPOCHS,
    seed: SeedOption = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="Model repository to export into.", show_default="a fresh runs/<UTC time>/"),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(min=1, help="Version to write (replaced if present); default: the next free one."),
    ] = None,
    limit: LimitOption = None,
    cache_dir: CacheDirOption = None,
    threads: Annotated[int, typer.Option(min=1, help="torch intra-op threads.")] = 1,
    jobs: Annotated[
        int,
        typer.Option(min=1, help="Models trained at a time, one process each (make train: 2, one per core)."),
    ] = 1,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    image_size: ImageSizeOption = None,
    image_channels: ChannelsOption = None,
    audio_seconds: SecondsOption = None,
    sample_rate: RateOption = None,
    text_bytes: TextBytesOption = None,
    audio_normalize: AudioNormalizeOption = None,
) -> None:
    """Train, export (with a parity check) and evaluate models, then rewrite OUT/REPORT.md."""
    import sys

    from training.data import MissingToolError
    from training.export import ExportError
    from training.pipeline import resolve_models, run

    try:
        names = resolve_models(fusion)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    spec = spec_choices(image_size, image_channels, audio_seconds, sample_rate, text_bytes, audio_normalize)
    out = out if out is not None else fresh_run_dir()
    start = time.perf_counter()
    try:
        dirs = run(
            names,
            source=source,
            epochs=epochs,
            seed=seed,
            out=out,
            version=version,
            limit=limit,
            cache_dir=cache_dir,
            threads=threads,
            jobs=jobs,
            progress=progress,
            command="python -m training " + " ".join(sys.argv[1:]),
            spec=spec,
        )
    except (MissingToolError, FileNotFoundError, ValueError, ExportError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"exported {len(dirs)} model(s) to {out} in {(time.perf_counter() - start) / 60:.1f} min")
    typer.echo(f"report: {out / 'REPORT.md'}")


@app.command()
def optimize(out: OutOption = Path("models")) -> None:
    """Apply the export-time graph passes to the models already in OUT, without retraining.

    Each latest version's graph is rewritten only if it gives the same outputs; its coalition
    graph, manifest hashes, size and latency follow, and REPORT.md is rebuilt.
    """
    from training.pipeline import latest_models
    from training.pipeline import report as write
    from training.prune import measure_latencies, optimize_version

    if not out.is_dir():
        raise fail(f"{out} is not a folder")
    dirs = latest_models(out)
    for model_dir in dirs:
        done = optimize_version(model_dir)
        typer.echo(f"{model_dir}: {done['removed']} DFT rows pruned, max abs diff {done['max_abs_diff']:.1e}")
    for model_dir, latency in measure_latencies(dirs).items():
        typer.echo(f"{model_dir}: latency b=1 {latency['batch_1']:.3f} ms, b=64 {latency['batch_64']:.2f} ms")
    typer.echo(f"report: {write(out, {'optimized': 'python -m training optimize'})}")


@app.command()
def report(out: OutOption = Path("models")) -> None:
    """Rebuild OUT/REPORT.md from the manifests of the latest version of every model."""
    from training.pipeline import report as write

    if not out.is_dir():
        raise fail(f"{out} is not a folder")
    typer.echo(f"report: {write(out, {})}")  # the header keeps the command that trained the models
