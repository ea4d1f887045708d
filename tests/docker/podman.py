"""Podman for the tests in tests/docker: is it usable here, build an image, serve its Docker API.

CI installs and configures Podman with ``make podman`` (docker/podman-setup.sh), which also builds
the stand-in base image; see docs/docker.md.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.server import status_of
from tests.docker.helpers import ROOT

# The base image substituted through the Dockerfile's PYTHON_IMAGE argument (docker/podman-setup.sh
# builds it from Debian, since no image registry is reachable from CI).
PYTHON_IMAGE = os.environ.get("FUSIONSERVE_PYTHON_IMAGE", "localhost/pybase:3.11")
SETUP_HINT = "run `sudo make podman` (docker/podman-setup.sh)"


def unusable_reason() -> str | None:
    """Why Podman cannot build and run the image here, or None when it can."""
    exe = shutil.which("podman")
    if exe is None:
        return f"podman is not installed: {SETUP_HINT}"
    try:
        info = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "`podman info` hung for 60 s"
    if info.returncode != 0:
        return f"podman cannot start here ({info.stderr.strip()[-300:]}): {SETUP_HINT}"
    if subprocess.run([exe, "image", "exists", PYTHON_IMAGE], timeout=60).returncode != 0:
        return f"the base image {PYTHON_IMAGE} does not exist: {SETUP_HINT}"
    return None


def require_podman() -> None:
    """Skip (on a developer's machine) or fail (in CI, where it must run) when Podman is unusable."""
    reason = unusable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must build and run the image with Podman, but {reason}")
    pytest.skip(reason)


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"podman {' '.join(args)} -> {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def build(target: str, tag: str, log: Path) -> float:
    """``podman build`` one target of the repository's Dockerfile; the seconds it took.

    ``--format docker``: in the OCI format Podman drops the HEALTHCHECK. ``--network host``: RUN
    steps reach the package index as the host does. ``--layers=false`` and removing the image the
    tag pointed at before: repeated runs leave no untagged images behind (about 500 MB each);
    the layer cache would rarely help, as nearly every change to the sources rebuilds the venv.
    """
    before = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False)
    old = before.stdout.strip() if before.returncode == 0 else ""
    argv = [
        "podman", "build", "--layers=false", "--network", "host", "--format", "docker",
        "--build-arg", f"PYTHON_IMAGE={PYTHON_IMAGE}", "--target", target, "-t", tag, str(ROOT),
    ]  # fmt: skip
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=900)
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{log.read_text()[-4000:]}"
    seconds = time.monotonic() - start
    if old and old != podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip():
        podman("rmi", old, check=False)  # fails, harmlessly, while a container still uses it
    return seconds


def image_size_mb(tag: str) -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout) / 1e6


def inspect(container: str, template: str) -> str:
    return podman("inspect", "--format", template, container).stdout.strip()


def healthcheck_run(container: str) -> str:
    """Run the image's HEALTHCHECK now; the health status it leaves.

    Without systemd, Podman never schedules health checks (the status stays "starting"), so the
    test runs them on demand, as a timer would.
    """
    podman("healthcheck", "run", container, check=False, timeout=30)
    return inspect(container, "{{.State.Health.Status}}")


def wait_ready(port: int, timeout: float, container: str) -> float:
    """Poll ``/health/ready`` until it answers 200; the seconds that took.

    Fails at once, with the container's log, when the container stops meanwhile.
    """
    start = time.monotonic()
    url = f"http://127.0.0.1:{port}/health/ready"
    while (status := status_of(url, timeout=5)) != 200:
        assert time.monotonic() - start < timeout, f"{url} not 200 after {timeout:.0f} s (last: {status})"
        state = podman("inspect", "--format", "{{.State.Status}}", container, check=False).stdout.strip()
        if state not in {"created", "running"}:
            logs = podman("logs", container, check=False)
            tail = (logs.stdout + logs.stderr)[-3000:]
            raise AssertionError(f"{container} is {state!r}, not serving:\n{tail}")
        time.sleep(0.25)
    return time.monotonic() - start


@contextmanager
def docker_api(folder: Path) -> Iterator[str]:
    """Podman's Docker-compatible API on a unix socket, for ``docker compose``; yields DOCKER_HOST."""
    sock = folder / "podman.sock"
    log = folder / "podman-service.log"
    with log.open("w") as out:
        argv = ["podman", "system", "service", "--time=0", f"unix://{sock}"]
        service = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert service.poll() is None, f"podman system service exited:\n{log.read_text()[-2000:]}"
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(sock))
                break
            except OSError:
                assert time.monotonic() < deadline, "podman system service did not listen within 30 s"
                time.sleep(0.2)
        yield f"unix://{sock}"
    finally:
        service.terminate()
        try:
            service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
