"""A replica is lost under load behind nginx and no client request fails that nginx could retry
(the short version of ``python -m bench.scale``; docs/deploy.md).

Real parts: nginx from Debian (``make sysdeps``) with ``deploy/nginx/proxy.conf``, two real
``python -m app`` processes on loopback. In CI a missing nginx fails the tests; elsewhere they skip.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from bench.__main__ import payload
from bench.scale import Cluster, Failover, failover
from bench.server import ROOT

pytestmark = pytest.mark.slow
CLIENTS = 6


@pytest.fixture(scope="module", autouse=True)
def _nginx() -> None:
    if shutil.which("nginx") is None:
        message = "nginx is not installed (make sysdeps installs Debian's nginx)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def lose_a_replica(workdir: Path, sig: int) -> tuple[Failover, list[tuple[list[str], str]]]:
    with Cluster(2, ROOT / "models", workdir) as cluster:
        result = failover(cluster, payload(), phase_s=2.5, sig=sig, concurrency=CLIENTS)
        rows = cluster.upstream_log()
    assert result.load.ok > 0
    # Both replicas served before the loss, and the restarted one serves again on its old port.
    first = {addrs[-1] for addrs, _ in rows[:50]}
    assert first == {f"127.0.0.1:{p}" for p in cluster.ports}, first
    assert result.after_restart > 0, result.summary()
    return result, rows


def test_a_replica_stopped_under_load_costs_no_request(tmp_path: Path) -> None:
    """SIGTERM, as Kubernetes, scaling down and `docker compose stop` send: answers in flight finish."""
    result, rows = lose_a_replica(tmp_path, signal.SIGTERM)
    assert result.load.failed == 0, result.summary()
    assert {status for _, status in rows} == {"200"}


def test_a_replica_killed_under_load_costs_no_request(tmp_path: Path) -> None:
    """SIGKILL (a crash): nginx retries every request the replica had not answered.

    An answer leaves the server in one write (``app.server.OneWriteSend``), so nginx never holds a
    status line without its body, which it could not retry elsewhere.
    """
    result, rows = lose_a_replica(tmp_path, signal.SIGKILL)
    assert result.load.failed == 0, result.summary()
    assert not [s for _, s in rows if s != "200" and s != "-"], (
        "nginx answered an error it should have retried"
    )
