"""A real server process over raw sockets: idle, header and body timeouts, the connection cap,
and SIGTERM (readiness 503 at once, listener closed, in-flight requests answered, exit in time).

Timeouts are set to fractions of a second; every wait is bounded by a socket timeout.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.server import refuse_new_connections
from bench.server import ServerProcess
from tests.app import fakes

pytestmark = pytest.mark.slow

LIMITS = {
    "FUSION_KEEP_ALIVE_TIMEOUT_S": "0.5",
    "FUSION_HEADER_TIMEOUT_S": "0.5",
    "FUSION_BODY_TIMEOUT_S": "0.5",
    "FUSION_MAX_CONNECTIONS": "4",
    "FUSION_SHUTDOWN_TIMEOUT_S": "2",
}
PREDICT_HEAD = (
    b"POST /v1/models/text_only/predict HTTP/1.1\r\nHost: t\r\n"
    b"Content-Type: application/json\r\nContent-Length: 16\r\n\r\n"
)
PREDICT_BODY = b'{"text": "sept"}'


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fakes.write_repository(tmp_path_factory.mktemp("shutdown-models"))


@pytest.fixture
def server(models: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(models, env=LIMITS, log=tmp_path / "server.log") as live:
        yield live


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (bounded by the socket timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_an_idle_connection_is_closed(server: ServerProcess) -> None:
    with connect(server) as sock:
        assert read_all(sock) == b""  # closed without a request: nothing was asked


def test_headers_that_trickle_get_408_and_are_closed(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n")  # and never the blank line
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b'"error"' in answer


def test_a_body_that_trickles_gets_408_and_is_closed(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(PREDICT_HEAD + PREDICT_BODY[:5])  # and never the rest
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 0.5 s" in answer


def test_a_connection_over_the_cap_gets_503(server: ServerProcess) -> None:
    socks = [connect(server) for _ in range(4)]
    try:
        with connect(server) as extra:
            answer = read_all(extra)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer
    finally:
        for sock in socks:
            sock.close()


def test_sigterm_drains_and_exits(server: ServerProcess) -> None:
    in_flight = connect(server)
    in_flight.sendall(PREDICT_HEAD + PREDICT_BODY[:5])
    fresh = connect(server)  # connected before the signal, request sent after it
    time.sleep(0.05)  # let the server take both connections in (not an assertion)
    server.signal()
    fresh.sendall(b"GET /health/ready HTTP/1.1\r\nHost: t\r\n\r\n")
    in_flight.sendall(PREDICT_BODY[5:])
    ready, answer = read_all(fresh), read_all(in_flight)
    assert ready.startswith(b"HTTP/1.1 503 ") and b"shutting down" in ready
    assert answer.startswith(b"HTTP/1.1 200 ") and b"connection: close" in answer.lower()
    with pytest.raises(ConnectionRefusedError):
        connect(server)
    assert server.wait(timeout=10) in (0, -15)


def test_sigterm_exits_in_time_whatever_clients_do(models: Path, tmp_path: Path) -> None:
    slow = {**LIMITS, "FUSION_BODY_TIMEOUT_S": "60"}  # a body that would trickle for a minute
    with ServerProcess(models, env=slow, log=tmp_path / "server.log") as live:
        with connect(live) as sock:
            sock.sendall(PREDICT_HEAD + PREDICT_BODY[:5])
            time.sleep(0.05)
            started = time.monotonic()
            live.signal()
            live.wait(timeout=15)
            took = time.monotonic() - started
    assert took < 2 + 5  # FUSION_SHUTDOWN_TIMEOUT_S, plus the watchdog's margin at most


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux socket option")
def test_a_stopped_listener_completes_no_new_handshake_but_keeps_its_queue() -> None:
    """What makes the SIGTERM drain lossless: after refuse_new_connections, a connection already
    queued is still accepted, a new one is never completed (its SYN is dropped), so the queue can
    be emptied and closed with no connection in it to reset."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as queued:
            assert refuse_new_connections(listener)
            with pytest.raises(TimeoutError):
                socket.create_connection(("127.0.0.1", port), timeout=0.3)
            listener.settimeout(1)
            accepted, _ = listener.accept()
            with accepted:
                queued.sendall(b"ping")
                assert accepted.recv(4) == b"ping"
            listener.setblocking(False)
            with pytest.raises(BlockingIOError):  # the late connect never reached the queue
                listener.accept()
