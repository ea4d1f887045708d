"""A replica crashes under load behind nginx and no client request fails (the short version of
``python -m bench.scale``; docs/deploy.md).

Real parts: nginx from Debian (``make sysdeps``) with ``deploy/nginx/proxy.conf``, two real
``python -m app`` processes on loopback. In CI a missing nginx fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from bench.__main__ import payload
from bench.scale import Cluster, failover
from bench.server import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _nginx() -> None:
    if shutil.which("nginx") is None:
        message = "nginx is not installed (make sysdeps installs Debian's nginx)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_a_killed_replica_costs_no_request_and_comes_back(tmp_path: Path) -> None:
    with Cluster(2, ROOT / "models", tmp_path) as cluster:
        result = failover(cluster, payload(), phase_s=2.5, sig=signal.SIGKILL, concurrency=6)
        rows = cluster.upstream_log()
    assert result.load.failed == 0, result.summary()
    assert result.load.ok > 0
    # Both replicas served before the kill, and the restarted one serves again on its old port.
    first = {addrs[-1] for addrs, _ in rows[:50]}
    assert first == {f"127.0.0.1:{p}" for p in cluster.ports}, first
    assert result.after_restart > 0, result.summary()
    # nginx saw only successes: every retry ended on a replica that answered 200.
    assert {status for _, status in rows} == {"200"}
