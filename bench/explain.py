"""``python -m bench.explain``: what explanations and abstention cost, at one connection (issue 12).

One server (pinned to core 0) with the committed models, each served twice: as committed (its
explanations from its coalition graph, app/coalitions.py) and as ``<model>_rows``, the same files
with the manifest naming no coalition graph (explanations from extra rows of the model, as before
the graph existed). This process sends from core 1, one request at a time over a kept-alive
connection. The README's request (PNG + WAV + text, JSON
base64) goes in as is ("plain") and with each option set; the variants are interleaved in short
blocks, round after round, in a rotating order, so a load change on a shared machine hits all of
them alike. Prints
p10 / p50 / p90 latency per variant and model, the ratios to plain (on a loaded machine the
fastest decile is the better estimate of the cost), the graph and rows each variant runs, and
what one onnxruntime run of them costs alone (fastest decile, one thread, pinned like the client).

Target (issue 12): a plain request costs what it did; ``explain=true`` at c=1 <= 1.5x plain.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app.manifest import Manifest
from bench.__main__ import SERVER_ENV, payload
from bench.server import ROOT, ServerProcess

VARIANTS: dict[str, tuple[dict[str, Any] | None, int]] = {
    # name: (options, onnxruntime rows a three-modality sample runs)
    "plain": (None, 1),
    "min_confidence=0.9": ({"min_confidence": 0.9}, 1),
    "abstain_on_conflict": ({"abstain_on_conflict": True}, 4),
    "explain (shapley)": ({"explain": True}, 7),  # 8 coalitions, the empty one kept after the first
    "explain (leave_one_out)": ({"explain": True, "explain_method": "leave_one_out"}, 7),
}


def body(options: dict[str, Any] | None) -> bytes:
    """The README's request, with these options."""
    doc = json.loads(payload())
    if options is not None:
        doc["options"] = options
    return json.dumps(doc).encode()


def measure(url: str, models: list[str], rounds: int, block: int) -> dict[tuple[str, str], list[float]]:
    """Latencies in ms per (model, variant), blocks interleaved round after round."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    bodies = {name: body(options) for name, (options, _) in VARIANTS.items()}
    times: dict[tuple[str, str], list[float]] = {(m, v): [] for m in models for v in VARIANTS}
    headers = {"Content-Type": "application/json"}
    for r in range(rounds + 1):  # round 0 warms up and is dropped
        order = list(bodies.items())
        order = order[r % len(order) :] + order[: r % len(order)]  # no variant always first after a switch
        for model in models:
            for name, data in order:
                for _ in range(block):
                    started = time.perf_counter()
                    conn.request("POST", f"/v1/models/{model}/predict", data, headers)
                    response = conn.getresponse()
                    response.read()
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status != 200:
                        raise SystemExit(f"{model} {name}: HTTP {response.status}")
                    if r:
                        times[(model, name)].append(elapsed)
    conn.close()
    return times


def graph_runs(models_dir: Path, model: str, rows: int) -> tuple[str, int]:
    """The graph file a variant runs and its rows: a coalition graph runs one row for any variant."""
    manifest = Manifest.read(models_dir / model / "1" / "manifest.json")
    if rows > 1 and manifest.explain.coalitions:
        return manifest.explain.coalitions, 1
    return "model.onnx", rows


def model_alone(path: Path, rows: int, repeats: int = 300) -> float:
    """Fastest-decile ms of one onnxruntime run of ``rows`` rows (one thread): the floor of a variant."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options)
    rng = np.random.default_rng(0)
    feed = {
        "image": rng.integers(0, 256, (rows, 28, 28), dtype=np.uint8),
        "audio": rng.uniform(-0.5, 0.5, (rows, 16000)).astype(np.float32),
        "text": rng.integers(0, 256, (rows, 64), dtype=np.uint8),
        "mask": np.ones((rows, 3), dtype=np.float32),
    }
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[len(times) // 10]


def with_row_copies(models_dir: Path, models: list[str], into: Path) -> list[str]:
    """Copy each model to ``into``, plus ``<model>_rows`` without its coalition graph (if it has one)."""
    served = []
    for model in models:
        shutil.copytree(models_dir / model, into / model)
        served.append(model)
        manifest = Manifest.read(into / model / "1" / "manifest.json")
        if manifest.explain.coalitions:
            shutil.copytree(models_dir / model, into / f"{model}_rows")
            explain = manifest.explain.model_copy(update={"coalitions": None, "coalitions_sha256": ""})
            rows = manifest.model_copy(update={"name": f"{model}_rows", "explain": explain})
            rows.write(into / f"{model}_rows" / "1" / "manifest.json")
            served.append(f"{model}_rows")
    return served


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="late,early,intermediate,gated")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--block", type=int, default=10, help="requests per variant in a row")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args()
    models = args.models.split(",")
    cores = os.cpu_count() or 1
    if cores > 1:
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        served = with_row_copies(args.models_dir, models, root)
        with ServerProcess(root, env=SERVER_ENV, core=0) as server:
            times = measure(server.url, served, args.rounds, args.block)
        load = os.getloadavg()
        print(
            f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}; server on "
            f"core 0, client on core {1 if cores > 1 else 0}; c=1, README request (JSON, base64 PNG + WAV + "
            f"text); {args.rounds} rounds x {args.block} requests per variant; load average after: "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        print()
        table(root, served, times)


def table(root: Path, served: list[str], times: dict[tuple[str, str], list[float]]) -> None:
    """Print the Markdown table: latency per variant, ratios to plain, what the model alone costs."""
    print(
        "| model | variant | runs | p10 ms | p50 ms | p90 ms | p10 / plain | p50 / plain | model alone ms |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for model in served:
        plain = sorted(times[(model, "plain")])
        for name, (_, rows) in VARIANTS.items():
            t = sorted(times[(model, name)])
            p10, p50, p90 = t[len(t) // 10], statistics.median(t), t[int(0.9 * (len(t) - 1))]
            ratios = f"{p10 / plain[len(plain) // 10]:.2f} | {p50 / statistics.median(plain):.2f}"
            graph, n = graph_runs(root, model, rows)
            alone = model_alone(root / model / "1" / graph, n)
            cells = [
                model,
                name,
                f"{graph} x {n}",
                f"{p10:.2f}",
                f"{p50:.2f}",
                f"{p90:.2f}",
                ratios,
                f"{alone:.2f}",
            ]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
