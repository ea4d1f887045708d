"""``FUSION_WORKERS``: forked workers share the port, answer, and all stop on one SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from bench.server import ServerProcess
from tests.app import fakes


def children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


@pytest.mark.slow
def test_two_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    models = fakes.write_repository(tmp_path / "models")
    with ServerProcess(models, env={"FUSION_WORKERS": "2"}) as live:
        workers = children(live.pid)
        assert len(workers) == 2
        with httpx.Client(base_url=live.url, timeout=30) as client:
            ready, deadline = 0, time.monotonic() + 30
            while ready < 10 and time.monotonic() < deadline:  # both workers, not just the first
                probe = client.get("/health/ready", headers={"Connection": "close"})
                ready = ready + 1 if probe.status_code == 200 else 0
            assert ready == 10
            for _ in range(20):  # a fresh connection each time: either worker may take it
                answer = client.post(
                    "/v1/models/late/predict", json={"text": "sept"}, headers={"Connection": "close"}
                )
                assert answer.status_code == 200, answer.text
        live.signal(signal.SIGTERM)
        assert live.wait(timeout=30) == 0
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
