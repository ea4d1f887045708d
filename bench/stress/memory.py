"""Probe 2 of the hardening issue: 8 concurrent ~16 MiB JSON bodies of number arrays.

Prints the server's RSS idle, at its peak (sampled every 5 ms) and 3 s after, the statuses of the
large requests, and the latency of small text-only predicts sent meanwhile. Two rounds: the
probe's own shape ``{"image": [[...]]}`` (refused by the schema: an array where an object goes)
and ``{"image": {"array": [[...]]}}`` (valid: parsed, decoded, answered). Large requests that get
503 (the in-flight budget) retry after their Retry-After, as a client should.
Targets: peak <= 400 MB, after <= idle + 20%, small request <= 20 ms.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

from bench.server import ROOT, ServerProcess
from bench.stress.common import report

LIMIT = 16 * 1024 * 1024
SMALL = b'{"text": "sept"}'

RAW = argparse.RawDescriptionHelpFormatter


def array_body(nbytes: int, *, wrapped: bool, width: int = 1400) -> bytes:
    """A JSON body of about ``nbytes`` holding an image as rows of 6-decimal floats in [0, 1)."""
    row = b"[" + b",".join(b"0.%06d" % ((i * 7919) % 1_000_000) for i in range(width)) + b"]"
    head, tail = (b'{"image": {"array": [', b"]}}") if wrapped else (b'{"image": [', b"]}")
    rows = max(1, (nbytes - len(head) - len(tail)) // (len(row) + 1))
    return head + b",".join([row] * rows) + tail


def post(port: int, body: bytes, retries: int = 0) -> tuple[int, int]:
    """POST to late's predict on a new connection; (final status, number of 503s retried)."""
    retried = 0
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            conn.request("POST", "/v1/models/late/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            status, wait = response.status, float(response.getheader("Retry-After") or 1)
        except OSError:  # refused before the body was all sent: the server said 503 and closed
            status, wait = 503, 1.0
        finally:
            conn.close()
        if status != 503 or retried >= retries:
            return status, retried
        retried += 1
        time.sleep(wait)


def probe(server: ServerProcess, body: bytes, concurrency: int, retries: int) -> dict[str, float | int]:
    """Send ``concurrency`` copies of ``body`` at once; measure RSS and small-request latency."""
    alone = []
    for _ in range(40):  # warm up, and the small request's latency with nothing else running
        started = time.perf_counter()
        post(server.port, SMALL)
        alone.append((time.perf_counter() - started) * 1000)
        time.sleep(0.02)
    idle = server.rss_mb()
    peak, done = idle, threading.Event()
    latencies: list[float] = []

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.rss_mb())
            time.sleep(0.005)

    def small() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        while not done.is_set():
            started = time.perf_counter()
            conn.request("POST", "/v1/models/late/predict", SMALL, {"Content-Type": "application/json"})
            conn.getresponse().read()
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)
        conn.close()

    statuses: Counter[int] = Counter()
    retried = 0

    def large() -> None:
        nonlocal retried
        status, tries = post(server.port, body, retries)
        statuses[status] += 1
        retried += tries

    helpers = [threading.Thread(target=sample), threading.Thread(target=small)]
    workers = [threading.Thread(target=large) for _ in range(concurrency)]
    for thread in helpers + workers:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    for thread in helpers:
        thread.join()
    time.sleep(3)
    after = server.rss_mb()
    counts: dict[str, float | int] = {f"status_{s}": n for s, n in sorted(statuses.items())}
    counts |= {"retried_503": retried, "idle_mb": idle, "peak_mb": peak, "after_mb": after}
    counts |= {
        "small_alone_p50_ms": statistics.median(alone),
        "small_n": len(latencies),
        "small_p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "small_p90_ms": sorted(latencies)[int(0.9 * len(latencies))] if latencies else float("nan"),
        "small_max_ms": max(latencies, default=float("nan")),
    }
    return counts


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--body-mib", type=float, default=15.9)
    parser.add_argument("--retries", type=int, default=20)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)
    ok = True
    with ServerProcess(args.models_dir) as server:
        for name, wrapped in (("memory (probe 2 shape)", False), ("memory (valid arrays)", True)):
            body = array_body(int(args.body_mib * 1024 * 1024), wrapped=wrapped)
            counts = probe(server, body, args.concurrency, args.retries)
            counts["body_mib"] = len(body) / 2**20
            passed = (
                float(counts["peak_mb"]) <= 400
                and float(counts["after_mb"]) <= 1.2 * float(counts["idle_mb"])
                and not any(str(k).startswith("status_5") for k in counts)
            )
            report(name, counts, passed)
            ok = ok and passed
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
