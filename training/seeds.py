"""``python -m training seeds``: how much of a headline number is the training seed?

One run per model is a sample of one. This command retrains the headline models with extra
training seeds (same data, same tiers) into a temporary folder, evaluates each on the tiers,
and stores mean and standard deviation (with seed 0 from the committed models) in
``OUT/report.json`` so ``REPORT.md`` shows them. It is not part of ``make train`` (each seed
costs a full training run): run ``make seeds`` after it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from training import EPOCHS
from training.cli import CacheDirOption, LimitOption, SourceOption, app, fail

if TYPE_CHECKING:
    from training.pipeline import DataSource


def summarise(
    per_seed: Mapping[int, Mapping[str, Mapping[str, float]]], models: list[str]
) -> dict[str, dict[str, Any]]:
    """``{seed: {model: {metric: value}}}`` -> ``{model: {metric: {values, mean, sd}}}``.

    Only metrics every seed measured are kept; ``sd`` is the sample standard deviation.
    """
    seeds = sorted(per_seed)
    out: dict[str, dict[str, Any]] = {}
    for model in models:
        rows = [per_seed[s].get(model, {}) for s in seeds]
        metrics = [k for k in rows[0] if all(k in r for r in rows)]
        out[model] = {}
        for metric in metrics:
            values = np.array([r[metric] for r in rows], np.float64)
            sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out[model][metric] = {
                "values": [round(float(v), 4) for v in values],
                "mean": round(float(values.mean()), 4),
                "sd": round(sd, 4),
            }
    return out


def seed_model(
    name: str, seed: int, src: DataSource, *, epochs: int, threads: int, out: Path, progress: bool
) -> Path:
    """Train, calibrate and export one model with training seed ``seed`` into ``out/seed<seed>``
    (in this process or a ``--jobs`` worker: the same files either way)."""
    import torch

    from training.export import export_model
    from training.pipeline import calibration_rows, train_calibrated, worker_context

    torch.set_num_threads(threads)
    ctx = worker_context(src)
    calibration_set = calibration_rows(ctx.val, ctx.val_t, seed) if ctx.noise else None
    model, training, _ = train_calibrated(
        name, len(ctx.ds.labels), ctx.train_t, ctx.val_t, epochs=epochs, seed=seed, threads=threads,
        source=src.source, limit=src.limit, progress=progress, spec=ctx.ds.spec, noise=ctx.noise,
        calibration_set=calibration_set,
    )  # fmt: skip
    return export_model(
        model,
        name=name,
        out=out / f"seed{seed}",
        version=1,
        labels=ctx.ds.labels,
        training=training,
        data_fingerprint=ctx.ds.fingerprint,
    )


def train_seeds(
    names: list[str],
    seeds: list[int],
    *,
    source: str = "default",
    data_seed: int = 0,
    epochs: int = EPOCHS,
    limit: int | None = None,
    cache_dir: Path | None = None,
    threads: int = 1,
    jobs: int = 1,
    progress: bool = True,
) -> dict[int, dict[str, dict[str, float]]]:
    """Train, calibrate, export (to a temporary folder) and tier-evaluate each model per seed.

    ``jobs`` > 1 trains that many models at a time, each in its own spawned process, as
    ``train --jobs`` does; every model is the same as when trained alone."""
    from training.pipeline import DataSource, load_splits, spawn_pool
    from training.tiers_eval import evaluate_repository, load_eval_tiers

    src = DataSource(source, data_seed, limit, cache_dir, progress, None)
    tasks = [(seed, name) for seed in seeds for name in names]
    results: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="fusion-seeds-") as tmp:
        one = partial(seed_model, epochs=epochs, threads=threads, out=Path(tmp))
        if jobs > 1 and len(tasks) > 1:
            quiet = replace(src, progress=False)
            with spawn_pool(min(jobs, len(tasks))) as pool:
                futures = [pool.submit(one, n, s, quiet, progress=False) for s, n in tasks]
                paths = [f.result() for f in futures]
        else:
            paths = [one(n, s, src, progress=progress) for s, n in tasks]
        found = dict(zip(tasks, paths, strict=True))
        tiers = load_eval_tiers(
            source,
            load_splits(src)[3],  # the test split alone: no training tensors in this process
            seed=data_seed,
            limit=limit,
            cache_dir=cache_dir,
            progress=progress,
        )
        for seed in seeds:
            evaluation = evaluate_repository([found[seed, n] for n in names], tiers, seed=0)
            results[seed] = {n: m["headline"] for n, m in evaluation["models"].items()}
            if progress:
                typer.echo(f"seed {seed}: {json.dumps(results[seed])}")
    return results


@app.command()
def seeds(
    fusion: Annotated[str, typer.Option("--models", help="Comma-separated model names.")] = "late,gated",
    seed_list: Annotated[str, typer.Option("--seeds", help="Extra training seeds, comma-separated.")] = "1,2",
    source: SourceOption = "default",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs per model (as make train).")] = EPOCHS,
    out: Annotated[
        Path, typer.Option(help="Model repository whose report.json and REPORT.md get the seeds.")
    ] = Path("models"),
    limit: LimitOption = None,
    cache_dir: CacheDirOption = None,
    threads: Annotated[int, typer.Option(min=1, help="torch intra-op threads.")] = 1,
    jobs: Annotated[
        int, typer.Option(min=1, help="Models trained at a time, one process each (make seeds: 2).")
    ] = 1,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Retrain MODELS with extra seeds and store mean ± sd of the headline numbers in OUT/report.json."""
    from training.pipeline import report, resolve_models

    saved = out / "report.json"
    if not saved.exists():
        raise fail(f"{saved} is missing: run 'python -m training train' first")
    info = json.loads(saved.read_text(encoding="utf-8"))
    base = info.get("evaluation", {}).get("models", {})
    try:
        names = resolve_models(fusion)
        extra = sorted({int(s) for s in seed_list.split(",") if s.strip()})
    except ValueError as exc:
        raise fail(str(exc)) from exc
    missing = [n for n in names if "headline" not in base.get(n, {})]
    if missing:
        raise fail(
            f"{saved} has no tier evaluation of {missing}: retrain them with 'python -m training train'"
        )
    start = time.perf_counter()
    data_seed = int(info.get("seed", 0))
    per_seed = train_seeds(
        names,
        [s for s in extra if s != data_seed],
        source=source,
        data_seed=data_seed,
        epochs=epochs,
        limit=limit,
        cache_dir=cache_dir,
        threads=threads,
        jobs=jobs,
        progress=progress,
    )
    per_seed[data_seed] = {n: base[n]["headline"] for n in names}
    info["seeds"] = {
        "seeds": sorted(per_seed),
        "command": "python -m training " + " ".join(sys.argv[1:]),
        "fingerprint": info.get("fingerprint", ""),
        "seconds": round(time.perf_counter() - start, 1),
        "models": summarise(per_seed, names),
    }
    saved.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    typer.echo(f"report: {report(out, {})}")
