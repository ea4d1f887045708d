"""The image's own steps, replayed outside any container engine, where Podman cannot run.

tests/docker/test_podman.py builds and runs the real image; CI always does (make podman). On a
machine without a usable Podman this module stands in: the ``wheel`` and ``venv-cpu`` RUN steps of
the Dockerfile are executed as written (container paths mapped into a temporary folder), so the
wheel is built and installed with only the serving extra into a fresh venv; then the image's CMD
runs with the image's ENV until the image's HEALTHCHECK passes, and a prediction is made with the
committed models. CMD, ENV, HEALTHCHECK and the RUN steps are parsed from the Dockerfile.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.server import free_port
from tests.docker import podman as pm
from tests.docker.helpers import (
    ROOT,
    RUNTIME_STAGE,
    SERVING_STAGES,
    Instruction,
    Stage,
    build_context,
    copy_args,
    env_of,
    exec_form,
    healthcheck,
    http,
    parse_dockerfile,
    stage_map,
)

pytestmark = pytest.mark.slow

# Container paths that the replay maps into its temporary root.
MAPPED_PATHS = ("/src", "/wheels", "/opt/venv", "/models", "/home/fusion")
VENV_SIZE_LIMIT_MB = 400


# ------------------------------------------------------------------------------------------------
# The image's own steps, outside Docker.


@dataclass
class Replay:
    """A temporary root standing in for the image's filesystem."""

    root: Path

    def host(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def map_text(self, text: str) -> str:
        """Rewrite the mapped container paths inside a shell command or an ENV value."""
        for path in MAPPED_PATHS:
            text = re.sub(rf"(?<![\w./-]){re.escape(path)}(?=[/\s\"':]|$)", str(self.host(path)), text)
        return text


def _run_step(replay: Replay, stage: Stage, ins: Instruction, cwd: Path) -> None:
    script = replay.map_text(ins.args)
    # The image's `python` is the base image's interpreter; here it is the one running the tests.
    script = re.sub(r"(?<![\w/.-])python(?= )", shlex.quote(sys.executable), script)
    # Docker builds throw pip's cache away; here it is reused, which keeps the test about a minute.
    script = script.replace("--no-cache-dir ", "")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_USER"}
    }
    proc = subprocess.run(
        ["/bin/sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, (
        f"Dockerfile line {ins.line} (stage {stage.name}) failed outside Docker:\n{script}\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )


def _copy_from_context(replay: Replay, context: set[str], sources: list[str], dest: str, cwd: str) -> None:
    dest_path = replay.host(dest if dest.startswith("/") else f"{cwd}/{dest}")
    for src in sources:
        src = src.rstrip("/")
        chosen = [f for f in context if f == src or f.startswith(src + "/")]
        assert chosen or (ROOT / src).is_dir(), f"COPY {src}: not in the build context"
        for rel in chosen:
            if (ROOT / src).is_dir():
                target = dest_path / rel[len(src) + 1 :]
            elif dest.endswith("/") or len(sources) > 1:
                target = dest_path / Path(rel).name
            else:
                target = dest_path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, target)
        if (ROOT / src).is_dir():
            dest_path.mkdir(parents=True, exist_ok=True)


def _replay_stage(replay: Replay, stage: Stage, context: set[str], run: bool) -> str:
    """Apply one stage's WORKDIR/COPY (and RUN when `run`) to the temporary root; return WORKDIR."""
    workdir = "/"
    for ins in stage.instructions:
        if ins.keyword == "WORKDIR":
            workdir = ins.args
            replay.host(workdir).mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            flags, sources, dest = copy_args(ins)
            if "from" in flags:  # stages share the one temporary root: the files are already there
                for src in sources:
                    assert replay.host(src).exists(), f"line {ins.line}: {src} was not built"
            else:
                _copy_from_context(replay, context, sources, dest, workdir)
        elif ins.keyword == "RUN" and run:
            _run_step(replay, stage, ins, replay.host(workdir))
    return workdir


def _dir_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Replay, Stage]]:
    """Build the cpu image's filesystem in a temporary root by replaying the Dockerfile."""
    reason = pm.unusable_reason()
    if reason is None:
        pytest.skip("Podman builds and runs the real image here (tests/docker/test_podman.py)")
    print(f"replaying the Dockerfile outside a container: {reason}")
    root = tmp_path_factory.mktemp("image-root")
    assert not re.search(r"\s", str(root)), "the replay needs a temporary path without blanks"
    replay = Replay(root)
    _, stages = parse_dockerfile()
    by_name = stage_map(stages)
    context = set(build_context())
    for name in SERVING_STAGES:
        _replay_stage(replay, by_name[name], context, run=True)
    # The runtime stage's own RUN steps only create the user and /models (checked above).
    _replay_stage(replay, by_name[RUNTIME_STAGE], context, run=False)
    yield replay, by_name[RUNTIME_STAGE]


def _venv_python(replay: Replay) -> Path:
    return replay.host("/opt/venv") / "bin" / "python"


def test_serving_venv_has_the_package_and_no_torch(image: tuple[Replay, Stage]) -> None:
    replay, _ = image
    probe = (
        "import importlib.metadata as m, importlib.util as u, json, app;"
        "print(json.dumps({'app': app.__file__, 'torch': u.find_spec('torch') is not None,"
        "'onnxruntime': m.version('onnxruntime'), 'dists': sorted(d.metadata['Name'].lower()"
        " for d in m.distributions())}))"
    )
    proc = subprocess.run(
        [str(_venv_python(replay)), "-c", probe],
        cwd=replay.root,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"]},
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert Path(info["app"]).is_relative_to(replay.host("/opt/venv")), "app must come from the wheel"
    assert not info["torch"] and "torch" not in info["dists"]
    assert "fusionserve" in info["dists"] and "fastapi" in info["dists"]
    assert not {"onnx", "onnxscript", "matplotlib", "scikit-learn"} & set(info["dists"])


def test_serving_venv_size(image: tuple[Replay, Stage], capsys: pytest.CaptureFixture[str]) -> None:
    replay, _ = image
    size_mb = _dir_size(replay.host("/opt/venv")) / 1e6
    models_mb = _dir_size(replay.host("/models")) / 1e6
    with capsys.disabled():
        print(
            f"\n[docker] serving venv (stand-in for the image's /opt/venv): {size_mb:.0f} MB;"
            f" models: {models_mb:.1f} MB; the python:3.11-slim base adds about 130 MB"
        )
    assert size_mb < VENV_SIZE_LIMIT_MB


def test_image_cmd_serves_the_committed_models(image: tuple[Replay, Stage]) -> None:
    replay, stage = image
    manifests = sorted(replay.host("/models").glob("*/*/manifest.json"))
    assert manifests, "no committed models (models/<name>/<version>/manifest.json) in the image"

    # The image's environment: its ENV, with $PATH from the host and container paths mapped. Only
    # the port changes (the container has a port of its own; this machine may not have 8000 free).
    env = {"HOME": str(replay.host("/home/fusion")), "LANG": "C.UTF-8"}
    for key, value in env_of(stage).items():
        value = re.sub(r"\$\{PATH\}|\$PATH", os.environ["PATH"], value)
        env[key] = replay.map_text(value)
    port = free_port()
    env["FUSION_PORT"] = str(port)

    cmd = exec_form(stage.last("CMD").args)
    executable = shutil.which(cmd[0], path=env["PATH"])
    assert executable and Path(executable).parent == replay.host("/opt/venv/bin"), executable
    hc = healthcheck(stage)
    # The base image's own PATH (here the host's) also has /usr/local/bin, where the check lives.
    hc_exe = shutil.which(hc.argv[0], path=env["PATH"] + os.pathsep + str(replay.host("/usr/local/bin")))
    assert hc_exe

    workdir = replay.host(stage.last("WORKDIR").args)
    log = replay.root / "server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [executable, *cmd[1:]], cwd=workdir, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        # Wait as Docker would at most: start period plus `retries` failed intervals.
        deadline = (
            time.monotonic()
            + hc.seconds("start-period")
            + hc.seconds("interval") * int(hc.options["retries"])
        )
        started = time.monotonic()
        healthy = False
        while time.monotonic() < deadline and server.poll() is None:
            check = subprocess.run(
                [hc_exe, *hc.argv[1:]], env=env, capture_output=True, timeout=hc.seconds("timeout") + 5
            )
            if check.returncode == 0:
                healthy = True
                break
            time.sleep(0.3)
        assert healthy, f"HEALTHCHECK never passed (server exit {server.poll()}):\n{log.read_text()[-4000:]}"
        print(f"healthy after {time.monotonic() - started:.1f} s")

        base = f"http://127.0.0.1:{port}"
        status, ready = http("GET", f"{base}/health/ready")
        assert status == 200, ready
        status, answer = http("POST", f"{base}/v1/models/late/predict", {"text": "sept"})
        assert status == 200, answer
        assert answer["model"] == "late" and answer["label"] in [str(d) for d in range(10)], answer
        assert answer["modalities_used"] == ["text"], answer
        probabilities = [p["probability"] for p in answer["probabilities"]]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < probabilities[0] <= 1
    finally:
        # `docker stop`: SIGTERM, then the container's grace period.
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        code: int | None
        try:
            code = server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            code = None
    # uvicorn re-raises the SIGTERM after its graceful shutdown (exit 143 in a container).
    assert code in (0, -signal.SIGTERM), f"no clean stop on SIGTERM (exit {code}):\n{log.read_text()[-4000:]}"
