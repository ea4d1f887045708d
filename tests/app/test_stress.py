"""The reliability suite (``make stress``, ``bench/stress``) at a small size, against real server
processes on the committed models: fuzzing, error isolation, reload and rollback, slow clients
and SIGTERM under load. Each script asserts its own counts (0 5xx, 0 collateral failures, 0
failed requests, every slow connection closed, 0 requests lost at SIGTERM). The memory probe
measures rather than checks behaviour, so it runs only in ``make stress``."""

from __future__ import annotations

import pytest

from bench.stress import fuzz, isolation, reload, sigterm, slow_clients

pytestmark = pytest.mark.slow


def test_fuzzing_finds_no_server_error() -> None:
    assert fuzz.main(["--requests", "150", "--examples", "5"])


def test_bad_requests_under_load_fail_nobody_else() -> None:
    assert isolation.main(["--requests", "300", "--concurrency", "16"])


def test_reload_and_rollback_under_load_fail_no_request() -> None:
    assert reload.main(["--cycles", "2", "--concurrency", "8"])


def test_slow_clients_are_closed_and_others_served() -> None:
    assert slow_clients.main(["--idle", "20", "--headers", "5", "--bodies", "5"])


def test_sigterm_under_load_loses_no_request() -> None:
    assert sigterm.main(["--clients", "8", "--before", "1"])
