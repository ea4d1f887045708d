"""Can a temperature that knows each input's noise level calibrate the noisy benchmark? (issue 10)

The served models are calibrated on val (one temperature per modality subset, and per branch
for late and gated; ``training/calibration.py``). Their ECE is at most 1.3% on the clean tier but
2-14% on the benchmark tier. This script asks whether the missing ingredient is the noise
level: it gives the temperature the *true* per-sample noise levels of the data set (which no
server has; any estimate from the input can only do worse), so its result bounds every
noise-conditioned temperature from above.

For each committed model, on all of its modalities:

- ``served``: the exported model as it is;
- ``refit``: one more temperature fitted on val (should change nothing: the export is fitted);
- ``level``: ``log T = c + sum_m b_m * level_m`` fitted on val by NLL (L-BFGS), the modalities'
  true levels in [0, 1] as inputs, then applied to the benchmark with its own true levels;
- ``band`` (unimodal baselines): one temperature fitted only on the val rows whose noise level
  lies in the benchmark's range for that modality, i.e. a temperature for heavy noise alone.

Fitting is on val only; the benchmark (the test split) is read once per method. Run from the
repository root (about a minute; builds the data on first use like ``make data``)::

    .venv/bin/python -m training.experiments.noise_temperature [--models models]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from app.media import MODALITIES
from training.calibration import ece
from training.data import load_dataset
from training.data.digits import NOISE_LEVELS
from training.evaluate import OnnxModel
from training.fusion import UNIMODAL
from training.pipeline import latest_models


def _design(levels: np.ndarray) -> torch.Tensor:
    return torch.cat([torch.ones(len(levels), 1), torch.tensor(levels, dtype=torch.float32)], dim=1).double()


def fit_log_temperature(logits: np.ndarray, labels: np.ndarray, levels: np.ndarray) -> torch.Tensor:
    """Weights ``w`` of ``log T = [1, levels] @ w`` minimising the NLL of ``softmax(logits / T)``."""
    x, z, y = _design(levels), torch.tensor(logits).double(), torch.tensor(labels)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / torch.exp(x @ w)[:, None], y)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def on_test(logits: np.ndarray, labels: np.ndarray, levels: np.ndarray, w: torch.Tensor) -> str:
    """Benchmark ECE (%) with ``log T = [1, levels[:, :len(w) - 1]] @ w``, formatted for the table."""
    z = torch.tensor(logits).double() / torch.exp(_design(levels[:, : len(w) - 1]) @ w)[:, None]
    return f"{100.0 * ece(z, torch.tensor(labels)):7.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    ds = load_dataset("default", progress=False)
    splits = {name: ds.split_view(name) for name in ("val", "test")}
    arrays = {n: {m: getattr(d, m) for m in MODALITIES} for n, d in splits.items()}
    levels = {n: np.stack([d.info[f"{m}_level"] for m in MODALITIES], 1) for n, d in splits.items()}
    labels = {n: np.asarray(d.label) for n, d in splits.items()}
    print("benchmark ECE %, all of the model's modalities present (temperatures fitted on val)")
    print(
        f"{'model':14s} {'served':>7s} {'refit':>7s} {'level':>7s} {'band':>7s}   level weights [c, b_m...]"
    )
    for model_dir in latest_models(args.models):
        name = model_dir.parent.name
        if name not in (*UNIMODAL, "early", "intermediate", "late", "gated"):
            continue
        model = OnnxModel(model_dir)
        cols = [MODALITIES.index(UNIMODAL[name])] if name in UNIMODAL else list(range(len(MODALITIES)))
        logits = {n: model.logits(arrays[n], np.ones((len(labels[n]), 3), np.float32)) for n in splits}
        lv = {n: levels[n][:, cols] for n in splits}
        w_const = fit_log_temperature(logits["val"], labels["val"], lv["val"][:, :0])
        w_level = fit_log_temperature(logits["val"], labels["val"], lv["val"])

        test = (logits["test"], labels["test"], lv["test"])
        served = torch.zeros(1, dtype=torch.float64)  # log T = 0: the exported model as it is
        cells = [on_test(*test, w) for w in (served, w_const, w_level)]
        if name in UNIMODAL:
            lo, hi = NOISE_LEVELS[UNIMODAL[name]]
            rows = (lv["val"][:, 0] >= lo) & (lv["val"][:, 0] <= hi)
            w_band = fit_log_temperature(logits["val"][rows], labels["val"][rows], lv["val"][rows][:, :0])
            cells.append(on_test(*test, w_band))
        print(f"{name:14s} {' '.join(cells):31s}   {np.round(w_level.numpy(), 2).tolist()}")


if __name__ == "__main__":
    main()
