"""Slow clients: idle connections, header trickles and body trickles, with normal traffic beside.

Opens ``--idle`` connections that send nothing, ``--headers`` that send one header byte every
0.2 s and ``--bodies`` that send one body byte every 0.2 s, while a client predicts normally.
Every slow connection must be closed by the server (408 for trickles) within its timeout plus a
margin, and every normal request must succeed. The server gets short timeouts (2 s / 2 s / 3 s)
so the run is quick; the defaults are documented in docs/serving.md.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import threading
import time
from pathlib import Path

from bench.server import ROOT, ServerProcess
from bench.stress.common import report

TIMEOUTS = {"FUSION_KEEP_ALIVE_TIMEOUT_S": "2", "FUSION_HEADER_TIMEOUT_S": "2", "FUSION_BODY_TIMEOUT_S": "3"}
MARGIN_S = 3.0
JSON_HEADERS = {"Content-Type": "application/json"}
BODY_HEAD = (
    b"POST /v1/models/late/predict HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100000\r\n\r\n{"
)

RAW = argparse.RawDescriptionHelpFormatter


def is_closed(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (EOF, reset, or a final error response read)."""
    sock.setblocking(False)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def run(server: ServerProcess, idle: int, headers: int, bodies: int) -> dict[str, int | float]:
    """Open the slow connections, trickle, and count which the server closed in time."""
    kinds: dict[str, list[socket.socket]] = {"idle": [], "headers": [], "bodies": []}
    for kind, n in (("idle", idle), ("headers", headers), ("bodies", bodies)):
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if kind == "headers":
                sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: s\r\n")
            elif kind == "bodies":
                sock.sendall(BODY_HEAD)
            kinds[kind].append(sock)
    normal = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def predict() -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request("POST", "/v1/models/late/predict", b'{"text": "sept"}', JSON_HEADERS)
                normal["ok" if conn.getresponse().status == 200 else "failed"] += 1
            except OSError:
                normal["failed"] += 1
            finally:
                conn.close()
            time.sleep(0.05)

    traffic = threading.Thread(target=predict)
    traffic.start()
    deadline = time.monotonic() + max(float(v) for v in TIMEOUTS.values()) + MARGIN_S
    while time.monotonic() < deadline:
        for sock in kinds["headers"]:
            try:
                sock.sendall(b"x")
            except OSError:
                pass
        for sock in kinds["bodies"]:
            try:
                sock.sendall(b" ")
            except OSError:
                pass
        time.sleep(0.2)
    stop.set()
    traffic.join()
    counts: dict[str, int | float] = {}
    for kind, socks in kinds.items():
        counts[f"{kind}_open"] = len(socks)
        counts[f"{kind}_closed"] = sum(is_closed(s) for s in socks)
        for sock in socks:
            sock.close()
    counts |= {"normal_ok": normal["ok"], "normal_failed": normal["failed"]}
    return counts


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--headers", type=int, default=100)
    parser.add_argument("--bodies", type=int, default=100)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)
    with ServerProcess(args.models_dir, env=TIMEOUTS) as server:
        counts = run(server, args.idle, args.headers, args.bodies)
    ok = (
        all(counts[f"{k}_closed"] == counts[f"{k}_open"] for k in ("idle", "headers", "bodies"))
        and counts["normal_failed"] == 0
        and counts["normal_ok"] > 0
    )
    report("slow clients", counts, ok)
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
