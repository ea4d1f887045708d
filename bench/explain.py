"""``python -m bench.explain``: what explanations and abstention cost, at one connection (issue 12).

One server (pinned to core 0) with the committed models; this process sends from core 1, one
request at a time over a kept-alive connection. The README's request (PNG + WAV + text, JSON
base64) goes in as is ("plain") and with each option set; the variants are interleaved in short
blocks, round after round, so a load change on a shared machine hits all of them alike. Prints
p50 / p90 latency per variant and model, the ratio to plain, and the rows each variant runs.

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

from bench.__main__ import SERVER_ENV, payload
from bench.server import ROOT, ServerProcess

VARIANTS: dict[str, tuple[dict[str, Any] | None, int]] = {
    # name: (options, onnxruntime rows a three-modality sample runs)
    "plain": (None, 1),
    "min_confidence=0.9": ({"min_confidence": 0.9}, 1),
    "abstain_on_conflict": ({"abstain_on_conflict": True}, 4),
    "explain (shapley)": ({"explain": True}, 8),
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
        for model in models:
            for name, data in bodies.items():
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
    print("| model | variant | rows | p50 ms | p90 ms | p50 / plain |")
    print("|---|---|---:|---:|---:|---:|")
    for model in models:
        plain = statistics.median(times[(model, "plain")])
        for name, (_, rows) in VARIANTS.items():
            t = sorted(times[(model, name)])
            p50, p90 = statistics.median(t), t[int(0.9 * (len(t) - 1))]
            print(f"| {model} | {name} | {rows} | {p50:.2f} | {p90:.2f} | {p50 / plain:.2f} |")


if __name__ == "__main__":
    main()
