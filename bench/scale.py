"""``python -m bench.scale``: replicas behind nginx without containers (docs/deploy.md).

The topology of docker-compose.yml's ``scale`` profile on loopback: nginx from Debian in front of
N ``python -m app`` processes, with the proxy rules of ``deploy/nginx/proxy.conf``. It measures
  - throughput with 1 and with 2 replicas (wrk when installed, else the Python load below);
  - a replica killed under load (SIGKILL, then a graceful SIGTERM), with every request counted:
    nginx must retry on the other replica so that no client sees a failure; then the replica is
    started again on its port and must get traffic again.
tests/deploy/test_failover.py runs a short version of the failover.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bench.__main__ import payload
from bench.server import ROOT, ServerProcess, free_port, status_of

PROXY_CONF = ROOT / "deploy" / "nginx" / "proxy.conf"
PREDICT = "/v1/models/late/predict"
SERVER_ENV = {"FUSION_INTRA_OP_THREADS": "1", "FUSION_INTER_OP_THREADS": "1"}
LOG_FORMAT = "$upstream_addr|$upstream_status|$status"


def nginx_conf(workdir: Path, listen: int, upstreams: list[int]) -> str:
    """A whole nginx.conf: the replicas as one upstream, ``proxy.conf``'s rules, files in ``workdir``."""
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=3 fail_timeout=5s;" for p in upstreams)
    temp = "\n".join(
        f"    {k}_temp_path {workdir}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstreams '{LOG_FORMAT}';
    access_log {workdir}/access.log upstreams;
{temp}
    upstream fusionserve {{
{servers}
        keepalive 32;
        keepalive_timeout 4s;  # under the replicas' FUSION_KEEP_ALIVE_TIMEOUT_S (5 s)
    }}
    server {{
        listen 127.0.0.1:{listen};
        include {PROXY_CONF};
    }}
}}
"""


class Cluster:
    """N replicas (``python -m app`` on fixed loopback ports) behind one nginx.

    Args:
        replicas: how many server processes.
        models: the model repository they serve.
        workdir: nginx's config, logs and temporary files; the replicas' logs.
    """

    def __init__(self, replicas: int, models: Path, workdir: Path) -> None:
        if shutil.which("nginx") is None:
            raise RuntimeError("nginx is not installed: apt-get install nginx (make sysdeps)")
        self.models, self.workdir = models, workdir
        self.ports = [free_port() for _ in range(replicas)]
        self.servers: list[ServerProcess | None] = [None] * replicas
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.nginx: subprocess.Popen[bytes] | None = None

    def start_replica(self, i: int) -> ServerProcess:
        """Start replica ``i`` on its own port (again, after :meth:`kill`) and wait until it is ready."""
        server = ServerProcess(
            self.models,
            env={**SERVER_ENV, "FUSION_PORT": str(self.ports[i])},
            log=self.workdir / f"replica{i}.log",
        )
        server.port, server.url = self.ports[i], f"http://127.0.0.1:{self.ports[i]}"
        self.servers[i] = server.start()
        return server

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Stop replica ``i`` with ``sig`` (SIGKILL: a crash; SIGTERM: a graceful drain) and reap it."""
        server = self.servers[i]
        assert server is not None, f"replica {i} is not running"
        server.signal(sig)
        server.wait(30)
        self.servers[i] = None

    def __enter__(self) -> Cluster:
        for i in range(len(self.ports)):
            self.start_replica(i)
        conf = self.workdir / "nginx.conf"
        conf.write_text(nginx_conf(self.workdir, self.port, self.ports))
        err = (self.workdir / "nginx.out").open("wb")
        self.nginx = subprocess.Popen(
            ["nginx", "-p", str(self.workdir), "-e", str(self.workdir / "error.log"), "-c", str(conf)],
            stdout=err,
            stderr=err,
        )
        err.close()
        deadline = time.monotonic() + 10
        while status_of(f"{self.url}/health/ready") != 200:
            if self.nginx.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"nginx did not start: {(self.workdir / 'nginx.out').read_text()}")
            time.sleep(0.05)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        for server in self.servers:
            if server is not None:
                server.stop()

    def upstream_log(self) -> list[tuple[list[str], str]]:
        """nginx's access log so far: for each request, the replicas tried in order and the final status."""
        rows = []
        for line in (self.workdir / "access.log").read_text().splitlines():
            addrs, _, status = line.split("|")
            rows.append(([a.strip() for a in addrs.split(",")], status))
        return rows


@dataclass
class LoadResult:
    """What a load run saw, client side: answers by status and failures by kind."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses[200]

    @property
    def failed(self) -> int:
        return sum(self.errors.values()) + sum(n for s, n in self.statuses.items() if s != 200)


class Load:
    """Python load: ``concurrency`` threads, each POSTing the README example over a keep-alive connection.

    A request fails when it gets a status other than 200 or no answer at all (the connection is then
    opened again). Runs until :meth:`stop`; slower than wrk, but it counts every request itself.
    """

    def __init__(self, port: int, concurrency: int, body: bytes) -> None:
        self.port, self.body = port, body
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(concurrency)]
        self._started = 0.0

    def _worker(self) -> None:
        headers = {"Content-Type": "application/json"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            try:
                conn.request("POST", PREDICT, body=self.body, headers=headers)
                response = conn.getresponse()
                response.read()
                with self._lock:
                    self.result.statuses[response.status] += 1
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.result.errors[type(exc).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.close()

    def __enter__(self) -> Load:
        self._started = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        self.result.seconds = time.perf_counter() - self._started


def wrk(url: str, body: Path, connections: int, seconds: int) -> dict[str, float]:
    """Requests/s and errors from wrk (2 threads, unpinned: replicas, nginx and wrk share the cores)."""
    script = body.with_suffix(".lua")
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
    )
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "failed": float(non2xx.group(1) if non2xx else 0)
        + (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0),
    }


def throughput(cluster: Cluster, body: bytes, seconds: int, connections: int) -> dict[str, float]:
    """Requests/s through nginx (wrk when installed, else :class:`Load`) and the load average after."""
    if shutil.which("wrk"):
        path = cluster.workdir / "body.json"
        path.write_bytes(body)
        result = wrk(cluster.url + PREDICT, path, connections, seconds)
    else:
        with Load(cluster.port, connections, body) as load:
            time.sleep(seconds)
        result = {"rps": load.result.ok / load.result.seconds, "failed": float(load.result.failed)}
    return result | {"load1": os.getloadavg()[0]}


@dataclass(frozen=True)
class Failover:
    """One failover run: client-side counts and what nginx's log shows.

    Attributes:
        load: every request the clients sent, by outcome.
        retried: requests nginx sent to more than one replica.
        after_restart: requests the restarted replica answered after it was back.
        restart_s: from starting the replica again to its readiness.
    """

    load: LoadResult
    retried: int
    after_restart: int
    restart_s: float

    def summary(self) -> str:
        failures = dict(self.load.errors) | {str(s): n for s, n in self.load.statuses.items() if s != 200}
        return (
            f"{self.load.ok} ok, {self.load.failed} failed {failures or ''}, {self.retried} retried by "
            f"nginx, restart {self.restart_s:.1f} s, then {self.after_restart} answered by the "
            f"restarted replica; {self.load.ok / self.load.seconds:.0f} req/s"
        )


def failover(cluster: Cluster, body: bytes, phase_s: float, sig: int, concurrency: int = 8) -> Failover:
    """Load through nginx; kill replica 0 with ``sig``; later start it again; count every request."""
    with Load(cluster.port, concurrency, body) as load:
        time.sleep(phase_s)
        cluster.kill(0, sig)
        time.sleep(phase_s)
        restarted = time.perf_counter()
        cluster.start_replica(0)
        restart_s = time.perf_counter() - restarted
        before_back = len(cluster.upstream_log())
        time.sleep(phase_s)
        back = f"127.0.0.1:{cluster.ports[0]}"
        deadline = time.monotonic() + 10  # nginx probes a failed replica again after fail_timeout
        while not any(a[-1] == back for a, _ in cluster.upstream_log()[before_back:]):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    rows = cluster.upstream_log()
    return Failover(
        load=load.result,
        retried=sum(1 for addrs, _ in rows if len(addrs) > 1),
        after_restart=sum(1 for addrs, _ in rows[before_back:] if addrs[-1] == back),
        restart_s=restart_s,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--seconds", type=int, default=15, help="length of each throughput run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--phase", type=float, default=5.0, help="seconds before the kill, down, after return"
    )
    args = parser.parse_args()
    body = payload()
    print(f"# bench.scale  cores={os.cpu_count()}  load average at start={os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="fusion-scale-") as tmp:
        rates = {}
        for n in (1, 2):
            work = Path(tmp) / f"n{n}"
            work.mkdir()
            with Cluster(n, args.models_dir, work) as cluster:
                rates[n] = throughput(cluster, body, args.seconds, args.connections)
                rss = [s.rss_mb() for s in cluster.servers if s is not None]
            print(
                f"replicas={n}: {rates[n]['rps']:.0f} req/s, failed {rates[n]['failed']:.0f}, "
                f"load1 after {rates[n]['load1']:.2f}, replica RSS MB {[round(r) for r in rss]}"
            )
        print(f"2 vs 1 replica: x{rates[2]['rps'] / rates[1]['rps']:.2f}")
        for name, sig in (("SIGKILL", signal.SIGKILL), ("SIGTERM", signal.SIGTERM)):
            work = Path(tmp) / f"failover-{name}"
            work.mkdir()
            with Cluster(2, args.models_dir, work) as cluster:
                result = failover(cluster, body, args.phase, sig)
            print(f"failover {name}: {result.summary()}; load1 {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
