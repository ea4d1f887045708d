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
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from training import EPOCHS
from training.cli import CacheDirOption, LimitOption, SourceOption, app, fail


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
    progress: bool = True,
) -> dict[int, dict[str, dict[str, float]]]:
    """Train, calibrate, export (to a temporary folder) and tier-evaluate each model per seed."""
    from training.data import load_dataset
    from training.export import export_model
    from training.pipeline import _tensors, calibration_rows, online_noise, train_calibrated
    from training.tiers_eval import evaluate_repository, load_eval_tiers

    ds = load_dataset(source, seed=data_seed, limit=limit, cache_dir=cache_dir, progress=progress)
    train, val, test = (ds.split_view(s) for s in ("train", "val", "test"))
    train_t, val_t = _tensors(train), _tensors(val)
    noise = online_noise(train)
    tiers = load_eval_tiers(source, test, seed=data_seed, limit=limit, cache_dir=cache_dir, progress=progress)
    results: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="fusion-seeds-") as tmp:
        for seed in seeds:
            dirs = []
            calibration_set = calibration_rows(val, val_t, seed) if noise else None
            for name in names:
                model, training, _ = train_calibrated(
                    name, len(ds.labels), train_t, val_t, epochs=epochs, seed=seed, threads=threads,
                    source=source, limit=limit, progress=progress, spec=ds.spec, noise=noise,
                    calibration_set=calibration_set,
                )  # fmt: skip
                dirs.append(
                    export_model(
                        model,
                        name=name,
                        out=Path(tmp) / f"seed{seed}",
                        version=1,
                        labels=ds.labels,
                        training=training,
                        data_fingerprint=ds.fingerprint,
                    )
                )
            evaluation = evaluate_repository(dirs, tiers, seed=0)
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
