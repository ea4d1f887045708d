"""``python -m bench.frontend_ab [--ref REV] [MODEL ...]``: a committed model file against its
version at ``REV`` (default ``8fb8b2f``, before the DFT-bin pruning of ``training/prune.py``).

Both files run in this process on one onnxruntime thread (pin it: ``taskset -c 1``) with the same
random inputs, at batch 1 and 32, interleaved for ``--rounds`` rounds so that a slow phase of a
shared machine hits both alike. Prints the median ms per run, the ratio old/new and the largest
output difference (0.0: the same numbers).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from training.prune import random_feeds, single_thread_session

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["late", "intermediate", "gated", "early", "audio_only"]


def _ms(session: ort.InferenceSession, feeds: dict[str, np.ndarray], runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        session.run(None, feeds)
    return (time.perf_counter() - start) / runs * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="*", default=MODELS)
    parser.add_argument("--ref", default="8fb8b2f", help="git revision of the old files")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, onnxruntime {ort.__version__}, old = {args.ref}")
    print("| model | batch | old ms | new ms | old/new | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.models:
        rel = f"models/{name}/1/model.onnx"
        old_bytes = subprocess.run(
            ["git", "show", f"{args.ref}:{rel}"], cwd=ROOT, capture_output=True, check=True
        )
        old, new = single_thread_session(old_bytes.stdout), single_thread_session(ROOT / rel)
        for batch, runs in ((1, 50), (32, 5)):
            feeds = random_feeds(old, batch, seed=batch)
            diff = max(
                float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(old.run(None, feeds), new.run(None, feeds), strict=True)
            )
            times: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(args.rounds):
                times["old"].append(_ms(old, feeds, runs))
                times["new"].append(_ms(new, feeds, runs))
            a, b = statistics.median(times["old"]), statistics.median(times["new"])
            print(f"| {name} | {batch} | {a:.3f} | {b:.3f} | {a / b:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
