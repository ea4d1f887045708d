"""The real image: built from the repository's Dockerfile with Podman, run, and run by compose.

Only the base image is substituted (the Dockerfile's PYTHON_IMAGE argument; docker/podman-setup.sh
builds a stand-in, since CI reaches no image registry). In CI these tests must run: a missing or
broken Podman fails them there, and only skips them elsewhere, saying why. Timings and the image
size are printed; docs/docker.md quotes them.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.server import free_port, status_of
from tests.docker import podman as pm
from tests.docker.helpers import ROOT, compose, http, parse_dockerfile, stage_map

pytestmark = pytest.mark.slow

TAG = "fusionserve:cpu"  # the compose file's image name for the `api` service
SERVER_UID = "10001"
EXITED_ON_SIGTERM = {"0", "143"}  # uvicorn re-raises SIGTERM after its graceful shutdown
VENV_SIZE_LIMIT_MB = 400
READY_TIMEOUT_S = 75.0  # the HEALTHCHECK's start period plus `retries` intervals


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[podman] {line}")


def committed_models() -> set[str]:
    return {p.parent.parent.name for p in (ROOT / "models").glob("*/*/manifest.json")}


def readme_multipart_example(port: int) -> list[str]:
    """The README's multipart ``curl`` predict example, as argv, aimed at ``port``."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    match = re.search(r"^curl -s localhost:8000/v1/models/\S+/predict .* -F .*$", text, re.MULTILINE)
    assert match, "README.md has no multipart curl predict example"
    return [w.replace("localhost:8000", f"127.0.0.1:{port}") for w in shlex.split(match.group(0))]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> float:
    """Build the cpu target as ``fusionserve:cpu``; the seconds the build took."""
    pm.require_podman()
    return pm.build("cpu", TAG, tmp_path_factory.mktemp("podman-build") / "build.log")


@pytest.fixture
def container(built: float) -> Iterator[tuple[str, int]]:
    """``podman run`` the image with a published port; yields (name, host port)."""
    name, port = f"fusionserve-test-{uuid.uuid4().hex[:8]}", free_port()
    pm.podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", TAG)
    try:
        yield name, port
    finally:
        pm.podman("rm", "-f", "-t", "0", name, check=False)


def test_image_serves_the_readme_example_as_non_root(
    built: float, container: tuple[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    name, port = container
    ready_s = pm.wait_ready(port, READY_TIMEOUT_S, name)
    size_mb = pm.image_size_mb(TAG)
    venv_mb = int(pm.podman("exec", name, "du", "-s", "-B1", "/opt/venv").stdout.split()[0]) / 1e6
    report(
        capsys,
        f"cpu image built in {built:.0f} s: {size_mb:.0f} MB, /opt/venv {venv_mb:.0f} MB;"
        f" ready {ready_s:.1f} s after run",
    )
    assert venv_mb < VENV_SIZE_LIMIT_MB

    assert pm.podman("exec", name, "id", "-u").stdout.strip() == SERVER_UID
    probe = "import importlib.util as u; print(u.find_spec('torch') is None)"
    assert pm.podman("exec", name, "python", "-c", probe).stdout.strip() == "True", "torch in the image"
    assert pm.healthcheck_run(name) == "healthy"

    curl = readme_multipart_example(port)
    answer = subprocess.run(curl, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    result = json.loads(answer.stdout)
    assert result["label"] == "7", result
    assert result["modalities_used"] == ["image", "audio", "text"], result

    status, listing = http("GET", f"http://127.0.0.1:{port}/v1/models")
    assert status == 200, listing
    served = {m["name"] for m in listing["models"]}
    assert served == committed_models() and len(served) == 7, served

    start = time.monotonic()
    pm.podman("stop", "-t", "15", name)
    report(capsys, f"podman stop took {time.monotonic() - start:.1f} s")
    assert pm.inspect(name, "{{.State.ExitCode}}") in EXITED_ON_SIGTERM


@pytest.fixture
def my_models() -> Iterator[Path]:
    """A user's model folder with one model, readable by the server's uid (not under a 0700 tmp)."""
    folder = Path(tempfile.mkdtemp(prefix="fusionserve-my-models-"))
    try:
        folder.chmod(0o755)
        shutil.copytree(ROOT / "models" / "late", folder / "late")
        yield folder
    finally:
        shutil.rmtree(folder)


def test_compose_up_predicts_and_stops(
    built: float, my_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project, port = f"fusionserve-test-{uuid.uuid4().hex[:8]}", free_port()
    with pm.docker_api(tmp_path) as docker_host:
        env = {"DOCKER_HOST": docker_host, "FUSIONSERVE_PORT": str(port)}

        def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            proc = compose(["-p", project, *args], timeout=180, env={**env, **extra})
            assert proc.returncode == 0, f"docker compose {' '.join(args)}:\n{proc.stderr[-3000:]}"
            return proc

        try:
            start = time.monotonic()
            run("up", "-d")
            up_s = time.monotonic() - start
            container = f"{project}-api-1"
            ready_s = pm.wait_ready(port, READY_TIMEOUT_S, container) + up_s
            report(capsys, f"docker compose up -d {up_s:.1f} s, ready after {ready_s:.1f} s")

            # The compose file's own settings, as the engine applied them.
            api = json.loads(run("config", "--format", "json").stdout)["services"]["api"]
            limits = api["deploy"]["resources"]["limits"]
            assert pm.inspect(container, "{{.Config.User}}").split(":")[0] == SERVER_UID
            assert pm.inspect(container, "{{.HostConfig.Memory}}") == str(limits["memory"])
            assert pm.inspect(container, "{{.HostConfig.NanoCpus}}") == str(int(float(limits["cpus"]) * 1e9))
            assert "no-new-privileges" in pm.inspect(container, "{{.HostConfig.SecurityOpt}}")
            assert pm.healthcheck_run(container) == "healthy"
            (ps,) = [json.loads(line) for line in run("ps", "--format", "json").stdout.splitlines() if line]
            assert ps["Health"] == "healthy", ps

            status, answer = http("POST", f"http://127.0.0.1:{port}/v1/models/late/predict", {"text": "sept"})
            assert status == 200 and answer["label"] == "7", answer
            status, listing = http("GET", f"http://127.0.0.1:{port}/v1/models")
            assert {m["name"] for m in listing["models"]} == committed_models()

            # A user's own folder instead of the models volume: the container is recreated on it.
            run("up", "-d", FUSIONSERVE_MODELS=str(my_models))
            pm.wait_ready(port, READY_TIMEOUT_S, container)
            status, listing = http("GET", f"http://127.0.0.1:{port}/v1/models")
            assert status == 200 and [m["name"] for m in listing["models"]] == ["late"], listing

            # `docker compose stop` sends SIGTERM; the server must exit on it, not be killed.
            start = time.monotonic()
            run("stop")
            stop_s = time.monotonic() - start
            assert pm.inspect(container, "{{.State.ExitCode}}") in EXITED_ON_SIGTERM
            start = time.monotonic()
            run("down", "-v")
            report(capsys, f"docker compose stop {stop_s:.1f} s, down -v {time.monotonic() - start:.1f} s")
            assert pm.podman("ps", "-a", "-q", "--filter", f"name={project}").stdout.strip() == ""
        finally:
            compose(["-p", project, "down", "-v", "-t", "0"], timeout=120, env=env)


def test_trainer_target_where_cpu_torch_is_reachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The trainer image needs CPU torch from its TORCH_INDEX_URL; where that does not answer
    (CI reaches only PyPI, Debian and npm), this says so instead of pretending."""
    pm.require_podman()
    _, stages = parse_dockerfile()
    args = [i.args for i in stage_map(stages)["trainer"].all("ARG")]
    (index,) = [a.partition("=")[2] for a in args if a.startswith("TORCH_INDEX_URL=")]
    if status_of(f"{index}/torch/", timeout=10) != 200:
        pytest.skip(
            f"trainer image not built: its CPU torch index {index} does not answer from here (CI reaches"
            " only PyPI, Debian and npm; PyPI's torch wheel pulls several GB of CUDA libraries). Where it"
            " answers: podman build --target trainer -t fusionserve:trainer . ; behind a mirror, add"
            " --build-arg TORCH_INDEX_URL=<the mirror's CPU torch index>"
        )
    seconds = pm.build("trainer", "fusionserve:trainer", tmp_path / "trainer-build.log")
    probe = "import torch, training; print(torch.version.cuda)"
    cuda = pm.podman("run", "--rm", "fusionserve:trainer", "python", "-c", probe, timeout=300).stdout.strip()
    size_mb = pm.image_size_mb("fusionserve:trainer")
    report(capsys, f"trainer image built in {seconds:.0f} s: {size_mb:.0f} MB")
    assert cuda == "None", "the trainer image must carry CPU-only torch"
