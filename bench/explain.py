"""``python -m bench.explain``: what explanations and abstention cost, at one connection (issue 12).

One server (pinned to core 0) with the committed models; this process sends from core 1, one
request at a time over a kept-alive connection. The README's request (PNG + WAV + text, JSON
base64) goes in as is ("plain") and with each option set; the variants are interleaved in short
blocks, round after round, in a rotating order, so a load change on a shared machine hits all of
them alike. Prints
p10 / p50 / p90 latency per variant and model, the ratios to plain (on a loaded machine the
fastest decile is the better estimate of the cost), the rows each variant runs, and what one
onnxruntime run of that many rows costs alone (fastest decile, one thread, pinned like the client).

Target (issue 12): a plain request costs what it did; ``explain=true`` at c=1 <= 1.5x plain.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

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


def model_alone(models_dir: Path, model: str, rows: int, repeats: int = 300) -> float:
    """Fastest-decile ms of one onnxruntime run of ``rows`` rows (one thread): the floor of a variant."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(models_dir / model / "1" / "model.onnx"), options)
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
    with ServerProcess(args.models_dir, env=SERVER_ENV, core=0) as server:
        times = measure(server.url, models, args.rounds, args.block)
    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}; server on "
        f"core 0, client on core {1 if cores > 1 else 0}; c=1, README request (JSON, base64 PNG + WAV + "
        f"text); {args.rounds} rounds x {args.block} requests per variant; load average after: "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print()
    print(
        "| model | variant | rows | p10 ms | p50 ms | p90 ms | p10 / plain | p50 / plain | model alone ms |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for model in models:
        plain = sorted(times[(model, "plain")])
        for name, (_, rows) in VARIANTS.items():
            t = sorted(times[(model, name)])
            p10, p50, p90 = t[len(t) // 10], statistics.median(t), t[int(0.9 * (len(t) - 1))]
            ratios = f"{p10 / plain[len(plain) // 10]:.2f} | {p50 / statistics.median(plain):.2f}"
            alone = model_alone(args.models_dir, model, rows)
            print(
                f"| {model} | {name} | {rows} | {p10:.2f} | {p50:.2f} | {p90:.2f} | {ratios} | {alone:.2f} |"
            )


if __name__ == "__main__":
    main()
