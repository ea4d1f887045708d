"""docker-compose.yml's ``scale`` profile: nginx (deploy/nginx) in front of N ``api-replica``s.

Checked statically with the Compose binary, then run for real through Podman's Docker API as
tests/docker/test_podman.py does (docker/podman-setup.sh): a replica container is killed under
load and no request fails, then it is started again and serves after nginx re-resolves it. In
CI a missing or broken Podman fails the run; elsewhere it skips with the reason. The replica is
stopped with SIGTERM, as Kubernetes and ``docker compose stop`` do; tests/deploy/test_failover.py
kills one with SIGKILL (docs/deploy.md says what a crash in the middle of an answer costs).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from app.config import ENV_PREFIX, Settings
from bench.__main__ import payload
from bench.scale import Load
from bench.server import free_port, status_of
from tests.docker import podman as pm
from tests.docker.helpers import ROOT, compose, http

LB_IMAGE = "fusionserve-lb:nginx"
FAIL_TIMEOUT_S = float(re.findall(r"fail_timeout=(\d+)s", (ROOT / "deploy/nginx/nginx.conf").read_text())[0])
"""How long nginx keeps a replica out after ``max_fails`` failures (per worker process)."""
API_IMAGE = "fusionserve:cpu"


def scale_model() -> dict:
    proc = compose(["--profile", "scale", "config", "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_scale_profile_is_nginx_in_front_of_unpublished_replicas() -> None:
    services = scale_model()["services"]
    replica, lb = services["api-replica"], services["lb"]
    assert replica["image"] == API_IMAGE and replica["deploy"]["replicas"] >= 2
    assert not replica.get("ports"), "only nginx is published; replicas are reached through it"
    assert [p["target"] for p in lb["ports"]] == [8080]
    assert lb["read_only"] is True and lb["depends_on"].keys() == {"api-replica"}
    unknown = [k for k in replica["environment"] if k[len(ENV_PREFIX) :].lower() not in Settings.model_fields]
    assert not unknown
    # nginx's config names the replicas' service and port, and includes the shared retry rules.
    conf = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert f"server api-replica:{replica['environment']['FUSION_PORT']}" in conf
    assert "include /etc/nginx/fusionserve/proxy.conf;" in conf
    assert "listen 8080;" in conf


def replica_predictions(container: str) -> float:
    """Predict requests the replica answered, from its own /metrics (its port is not published)."""
    code = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8000/metrics').read().decode())"
    text = pm.podman("exec", container, "python", "-c", code).stdout
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fusion_requests_total{") and "predict" in line
    )


def reload_when_resolved(lb: str, replicas: list[str]) -> None:
    """Reload nginx once the replicas' service name resolves to every replica's current address.

    nginx (open source, 1.22) resolves upstream names when it loads its config; a replica started
    after it, or restarted with a new address, is seen after a reload. Podman's DNS may lag a new
    container by a moment, hence the wait.
    """
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    wanted = {pm.podman("inspect", "--format", template, r).stdout.strip() for r in replicas}
    deadline = time.monotonic() + 30
    while True:
        hosts = pm.podman("exec", lb, "getent", "ahostsv4", "api-replica", check=False).stdout
        if wanted <= {line.split()[0] for line in hosts.splitlines() if line.strip()}:
            break
        assert time.monotonic() < deadline, f"api-replica resolves to {hosts!r}, not all of {wanted}"
        time.sleep(0.5)
    pm.podman("exec", lb, "nginx", "-e", "stderr", "-s", "reload")


def wait_ready(container: str, seconds: float = 60) -> None:
    """Wait until the replica's own readiness check passes (its image's HEALTHCHECK command).

    Readiness through nginx is not enough: nginx sends a 503 from a replica still loading its
    models on to the next one, so it answers 200 once any replica is ready. A replica that answers
    503s under load is then taken out by ``max_fails`` for ``fail_timeout``; stopping the other one
    in that window leaves no live upstream.
    """
    deadline = time.monotonic() + seconds
    while pm.podman("exec", container, "fusionserve-healthcheck", check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{container} never became ready"
        time.sleep(0.5)


@pytest.mark.slow
def test_compose_scale_survives_a_stopped_replica_with_podman(tmp_path: Path) -> None:
    pm.require_podman()
    if pm.podman("image", "exists", API_IMAGE, check=False).returncode != 0:
        pm.build("cpu", API_IMAGE, tmp_path / "build.log")
    argv = ["podman", "build", "--network", "host", "--format", "docker", "-t", LB_IMAGE]
    argv += ["--build-arg", f"BASE_IMAGE={pm.PYTHON_IMAGE}", str(ROOT / "deploy" / "nginx")]
    built = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]

    project, port = f"fusionserve-scale-{uuid.uuid4().hex[:8]}", free_port()
    lb, replicas = f"{project}-lb-1", [f"{project}-api-replica-{i}" for i in (1, 2)]
    killed = replicas[0]
    with pm.docker_api(tmp_path) as docker_host:
        env = {"DOCKER_HOST": docker_host, "FUSIONSERVE_LB_PORT": str(port)}

        def run(*args: str) -> None:
            proc = compose(["-p", project, "--profile", "scale", *args], timeout=180, env=env)
            assert proc.returncode == 0, f"docker compose {' '.join(args)}:\n{proc.stderr[-3000:]}"

        try:
            run("up", "-d", "lb")
            reload_when_resolved(lb, replicas)
            deadline = time.monotonic() + 90
            while status_of(f"http://127.0.0.1:{port}/health/ready") != 200:
                assert time.monotonic() < deadline, pm.podman("logs", lb, check=False).stderr[-3000:]
                time.sleep(0.5)
            assert pm.podman("exec", lb, "id", "-u").stdout.strip() == "33"
            for replica in replicas:
                wait_ready(replica)
            # The readiness polls above reach a replica still loading through nginx: its 503s can
            # have taken it out in one nginx worker, for fail_timeout after the last of them (a run
            # stopped replica 1 five seconds after replica 2 was taken out so: 'no live upstreams').
            # Wait that out, so the load starts with both replicas live in every worker.
            time.sleep(FAIL_TIMEOUT_S + 1)
            with Load(port, 6, payload()) as load:
                time.sleep(3)
                pm.podman("stop", "-t", "10", killed)  # SIGTERM, as `docker compose stop` and Kubernetes
                time.sleep(3)
                pm.podman("start", killed)
                wait_ready(killed)
                time.sleep(2)
            nginx_log = pm.podman("logs", lb, check=False).stderr[-4000:]
            assert load.result.failed == 0, (dict(load.result.errors), dict(load.result.statuses), nginx_log)
            assert load.result.ok > 0
            # It may have a new address. The reload comes after the load: a graceful reload closes
            # idle client keep-alive connections, which a client sending at that moment sees fail.
            # `nginx -s reload` only signals the master: old workers, which still hold the replica's
            # old address, may answer the first requests. Poll for a bounded time.
            reload_when_resolved(lb, replicas)
            deadline, served = time.monotonic() + 30, 0.0
            while served == 0:
                assert time.monotonic() < deadline, (
                    "the restarted replica got no request in 30 s after the reload",
                    pm.podman("exec", lb, "getent", "ahostsv4", "api-replica", check=False).stdout,
                    pm.podman("logs", lb, check=False).stderr[-3000:],
                )
                for _ in range(10):
                    status, answer = http(
                        "POST", f"http://127.0.0.1:{port}/v1/models/late/predict", {"text": "sept"}
                    )
                    assert (status, answer["label"]) == (200, "7")
                served = replica_predictions(killed)
        finally:
            compose(["-p", project, "--profile", "scale", "down", "-v", "-t", "0"], timeout=120, env=env)
