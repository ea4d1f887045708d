"""Start a real fusionserve process on a free port and stop it: the one helper the benchmarks,
the stress suite and the live-server tests share (tests import it; it imports nothing of tests).

``python -m app`` (or another module serving through :func:`app.server.serve`, such as
``bench.constant``) runs with ``FUSION_*`` settings from ``env`` on top of a clean environment,
optionally pinned to one core; :meth:`ServerProcess.start` waits for ``/health/ready``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_of(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of ``GET url``, or ``None`` when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


class ServerProcess:
    """One server process. Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
        models: the model repository (``FUSION_MODELS_DIR``).
        env: more ``FUSION_*`` settings (they win over the defaults set here).
        module: the module run with ``python -m`` (``app``, or ``bench.constant``).
        core: pin the process to this CPU core with ``taskset`` when it is installed.
        log: write the server's output here (default: inherit this process's).
    """

    def __init__(
        self,
        models: Path,
        *,
        env: Mapping[str, str] | None = None,
        module: str = "app",
        core: int | None = None,
        log: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FUSION_")}
        self.env |= {
            "PYTHONPATH": str(ROOT),
            "FUSION_MODELS_DIR": str(models),
            "FUSION_HOST": "127.0.0.1",
            "FUSION_PORT": str(self.port),
            "FUSION_LOG_LEVEL": "warning",
            **(env or {}),
        }
        self.cmd = [sys.executable, "-m", module]
        if core is not None and shutil.which("taskset"):
            self.cmd = ["taskset", "-c", str(core), *self.cmd]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.cold_start_s = float("nan")

    def start(self, timeout: float = 60.0) -> ServerProcess:
        """Start the process and wait until ``/health/ready`` answers 200.

        Raises:
            RuntimeError: it exited or was not ready in time (with the end of its log if any).
        """
        out = self.log.open("wb") if self.log else None
        started = time.perf_counter()
        try:
            self.proc = subprocess.Popen(
                self.cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None
            )
        finally:
            if out:
                out.close()
        while status_of(f"{self.url}/health/ready") != 200:
            if self.proc.poll() is not None or time.perf_counter() - started > timeout:
                self.stop()
                tail = self.log.read_text(errors="replace")[-3000:] if self.log else ""
                raise RuntimeError(f"server {' '.join(self.cmd)} did not become ready\n{tail}")
            time.sleep(0.02)
        self.cold_start_s = time.perf_counter() - started
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def rss_mb(self) -> float:
        """Resident memory of the server process now, in MB (Linux)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+)", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the server (SIGTERM: the graceful shutdown)."""
        assert self.proc is not None, "not started"
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code (raises ``TimeoutExpired``)."""
        assert self.proc is not None, "not started"
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (``None`` if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
