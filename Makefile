# fusionserve — every target sets up what it needs in ./.venv and is safe to run again.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# DATA: the built-in data set of `make data` / `make train`: default (the digits, into models/) or
# shapes (coloured shapes at 48x48 RGB, 1.5 s, 128 bytes, into models/shapes/; docs/specs.md)
DATA   ?= default
MODELS_OUT = $(if $(filter default,$(DATA)),models/,models/$(DATA)/)

.PHONY: serve test data train seeds report bench stress lint sysdeps clean podman checkov scale-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Serving install: no torch.
$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[serving]'
	@touch $@

# Everything the tests need: server, trainer (CPU torch), dev tools, the client SDK.
$(VENV)/.dev: pyproject.toml client/pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[serving,training,dev]' -e ./client
	@touch $@ $(VENV)/.serve

## serve: install the server and serve the committed models on http://$(HOST):$(PORT)
serve: $(VENV)/.serve
	FUSION_HOST=$(HOST) FUSION_PORT=$(PORT) $(BIN)/python -m app

## test: install everything the tests need and run them
test: $(VENV)/.dev sysdeps
	$(BIN)/python -m pytest

## data: build the built-in "spoken, written and drawn digits" data set (cached in .cache/); DATA=shapes for the other
data: $(VENV)/.dev sysdeps
	$(BIN)/python -m training data --data $(DATA)

## train: train every fusion and baseline on DATA (default: the digits), export to models/ (shapes: models/shapes/), write REPORT.md
train: $(VENV)/.dev sysdeps
	$(BIN)/python -m training train --fusion all --data $(DATA) --out $(MODELS_OUT) --version 1 --jobs 2

## seeds: after make train, retrain late and gated with seeds 1 and 2 (slow) and add mean +- sd to REPORT.md
seeds: $(VENV)/.dev sysdeps
	$(BIN)/python -m training seeds --models late,gated --seeds 1,2 --jobs 2

## podman: Podman, its settings and the stand-in base image the container tests build on (as root;
## docs/docker.md). CI runs it before `make test`, where tests/docker/test_podman.py builds the image.
podman:
	bash docker/podman-setup.sh

## bench: measure the server (see docs/benchmarks.md)
bench: $(VENV)/.dev
	$(BIN)/python -m bench

## scale-demo: nginx in front of 1, then 2 server processes: throughput, and a replica killed under
## load with no failed request, then started again (bench/scale.py, docs/deploy.md)
scale-demo: $(VENV)/.dev sysdeps
	$(BIN)/python -m bench.scale

## checkov: static checks of the Dockerfile, compose file, Kubernetes and KServe manifests
## (in its own venv under .cache/; deploy/checkov.sh says why). CI runs it.
checkov:
	PYTHON=$(PYTHON) bash deploy/checkov.sh

## stress: the reliability suite: fuzzing, error isolation, reload/rollback, slow clients, SIGTERM
## and memory under load, each printing its counts (docs/serving.md; ~10 min on 2 cores; CI runs a short one)
stress: $(VENV)/.dev
	$(BIN)/python -m bench.stress

## lint: ruff and mypy
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app training client/fusion_client bench

## sysdeps: the system tools the data set and the tests need, each checked and installed on its own
# (one apt-get call per missing tool, so a tool installed outside apt -- npm from nodesource, say --
# never drags the others into a "held broken packages" failure). Add a tool as `command:package`;
# a check starting with / is a file that must exist (festival voices have no command of their own;
# dnsname: container names resolve on Podman networks with CNI, for the compose `scale` profile;
# chromium: the browser tests/browser drive through Playwright, which downloads no browser).
SYSDEPS := espeak-ng:espeak-ng npm:npm flite:flite festival:festival \
  /usr/share/festival/voices/english/kal_diphone:festvox-kallpc16k \
  /usr/share/festival/voices/english/ked_diphone:festvox-kdlpc16k \
  /usr/share/festival/voices/us/cmu_us_slt_arctic_hts:festvox-us-slt-hts \
  nginx:nginx /usr/lib/cni/dnsname:golang-github-containernetworking-plugin-dnsname \
  chromium:chromium
sysdeps:
	@for pair in $(SYSDEPS); do \
	  cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  case $$cmd in /*) test -e $$cmd && continue;; *) command -v $$cmd >/dev/null 2>&1 && continue;; esac; \
	  if [ "$$(id -u)" != 0 ]; then echo "Need $$cmd: run 'sudo apt-get install $$pkg' (Debian/Ubuntu)"; exit 1; fi; \
	  [ -n "$$APT_UPDATED" ] || { apt-get update -qq >/dev/null; APT_UPDATED=1; }; \
	  echo "sysdeps: apt-get install $$pkg"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkg >/dev/null || exit 1; \
	done

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache build *.egg-info
