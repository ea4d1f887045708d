"""SIGTERM under load: every request either refused at connect or answered in full.

``--clients`` threads send predicts without pause, each on a new connection (so connections keep
opening across the signal). After ``--before`` seconds the server gets SIGTERM; clients go on
until it has exited. Each request ends ``answered`` (a full response), ``refused`` (connection
refused: the listener is closed) or ``lost`` (accepted, then closed or reset without a full
response). Also prints how long the process took to exit and readiness right after the signal.
Target: 0 lost, 0 5xx, exit within FUSION_SHUTDOWN_TIMEOUT_S.
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from bench.server import ROOT, ServerProcess
from bench.stress.common import exchange, http_request, media_body, report

SHUTDOWN_S = 8.0

RAW = argparse.RawDescriptionHelpFormatter


def run(server: ServerProcess, clients: int, before_s: float) -> dict[str, int | float]:
    """Load ``server``, SIGTERM it after ``before_s``, count outcomes until it has exited."""
    requests = [
        http_request("POST", "/v1/models/late/predict", b'{"text": "sept"}'),
        http_request("POST", "/v1/models/late/predict", media_body()),
    ]
    outcomes: Counter[str] = Counter()
    signalled = threading.Event()
    stop = threading.Event()

    def client(i: int) -> None:
        n = i
        while not stop.is_set():
            after = signalled.is_set()
            result = exchange(server.port, requests[n % 2])
            n += 1
            phase = "after" if after else "before"
            outcomes[f"{result.outcome}_{phase}"] += 1
            if result.outcome == "answered" and result.status >= 500:
                outcomes[f"5xx_{phase}"] += 1
            if result.outcome == "refused":
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(before_s)
    ready_probe = http_request("GET", "/health/ready")
    started = time.monotonic()
    server.signal()
    signalled.set()
    ready = exchange(server.port, ready_probe, timeout=5)
    try:
        code = server.wait(timeout=SHUTDOWN_S + 10)
    except subprocess.TimeoutExpired:
        code = -999
    exit_s = time.monotonic() - started
    time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join()
    counts: dict[str, int | float] = dict(sorted(outcomes.items()))
    counts |= {"ready_after_signal": ready.status or ready.outcome, "exit_s": exit_s, "exit_code": code}  # type: ignore[dict-item]
    return counts


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--before", type=float, default=3.0)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)
    server = ServerProcess(args.models_dir, env={"FUSION_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_S)})
    with server:
        counts = run(server, args.clients, args.before)
    lost = int(counts.get("lost_before", 0)) + int(counts.get("lost_after", 0))
    errors = int(counts.get("5xx_before", 0)) + int(counts.get("5xx_after", 0))
    ok = lost == 0 and errors == 0 and float(counts["exit_s"]) <= SHUTDOWN_S + 1
    report("sigterm", counts, ok)
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
