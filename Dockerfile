# syntax=docker/dockerfile:1
#
# fusionserve images. Targets (the last one, `cpu`, is the default):
#   cpu      small CPU server on python:3.11-slim: the serving extra only (no torch, no compilers)
#   gpu      the same server with onnxruntime-gpu on an NVIDIA CUDA + cuDNN runtime base
#   trainer  the training package (CPU torch) plus the speech engines (espeak-ng, flite, festival
#            and its voices) and npm for the built-in data set
#
#   docker build -t fusionserve:cpu .
#   docker build --target gpu -t fusionserve:gpu .
#   docker compose up                                  (see docker-compose.yml and docs/docker.md)
#
# tests/docker/test_podman.py builds the `cpu` target with Podman and runs it (docker/podman-setup.sh,
# docs/docker.md). Where no engine runs, tests/docker/test_replay.py replays the `wheel` and
# `venv-cpu` RUN steps outside Docker (paths /src, /wheels, /opt/venv and /models mapped to a
# temporary folder), so keep those steps plain POSIX shell on those paths.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# onnxruntime-gpu 1.31 is built against CUDA 13 and cuDNN 9.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
# wheel: build the (pure Python) fusionserve wheel from the sources.
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app/ app/
COPY training/ training/
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
# venv-cpu: the wheel with the serving extra only, in a venv that the runtime stage copies.
FROM ${PYTHON_IMAGE} AS venv-cpu
COPY --from=wheel /wheels/ /wheels/
RUN python -m venv /opt/venv \
 && for whl in /wheels/fusionserve-*.whl; do /opt/venv/bin/pip install --no-cache-dir "${whl}[serving]"; done \
 && /opt/venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

# ---------------------------------------------------------------------------------------------
# gpu: Python from Ubuntu on the CUDA runtime base; onnxruntime replaced by onnxruntime-gpu.
FROM ${CUDA_IMAGE} AS gpu-base
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12=3.12.* python3.12-venv=3.12.* \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 fusion \
 && useradd --system --uid 10001 --gid fusion --create-home --home-dir /home/fusion \
      --shell /usr/sbin/nologin fusion \
 && install -d -o fusion -g fusion /models

FROM gpu-base AS venv-gpu
# Keep in step with the onnxruntime pin of the serving extra (pyproject.toml) once PyPI has it.
ARG ONNXRUNTIME_GPU_VERSION=1.31.1
COPY --from=wheel /wheels/ /wheels/
RUN python3.12 -m venv /opt/venv \
 && for whl in /wheels/fusionserve-*.whl; do /opt/venv/bin/pip install --no-cache-dir "${whl}[serving]"; done \
 && /opt/venv/bin/pip uninstall -y onnxruntime \
 && /opt/venv/bin/pip install --no-cache-dir "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
 && /opt/venv/bin/python -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()"

FROM gpu-base AS gpu
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FUSION_MODELS_DIR=/models \
    FUSION_HOST=0.0.0.0 \
    FUSION_PORT=8000 \
    FUSION_PROVIDERS=auto
COPY --from=venv-gpu /opt/venv/ /opt/venv/
COPY docker/healthcheck.py /usr/local/bin/fusionserve-healthcheck
COPY --chown=10001:10001 models/ /models/
USER 10001:10001
WORKDIR /home/fusion
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["fusionserve-healthcheck"]
CMD ["python", "-m", "app"]

# ---------------------------------------------------------------------------------------------
# trainer: `python -m training train ...` writing into /models (mount the models volume there).
FROM ${PYTHON_IMAGE} AS trainer
# CPU-only torch wheels (the default PyPI torch wheel pulls in several GB of CUDA libraries).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng=1.51* npm=9.2.* flite=2.2-* festival=1:2.5.* \
      festvox-kallpc16k=2.4-* festvox-kdlpc16k=1.4.* festvox-us-slt-hts=0.2010.* \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 fusion \
 && useradd --system --uid 10001 --gid fusion --create-home --home-dir /home/fusion \
      --shell /usr/sbin/nologin fusion \
 && install -d -o fusion -g fusion /models /home/fusion/.cache
COPY --from=wheel /wheels/ /wheels/
# The built-in data set is cached in <site-packages>/.cache/data (training/data/digits.py) when the
# package is installed; point that at the user's cache folder, which compose mounts as a volume.
RUN python -m venv /opt/venv \
 && for whl in /wheels/fusionserve-*.whl; do \
      /opt/venv/bin/pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" "${whl}[training]"; \
    done \
 && ln -s /home/fusion/.cache "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/.cache"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg
COPY --chown=10001:10001 models/ /models/
USER 10001:10001
WORKDIR /home/fusion
CMD ["python", "-m", "training", "train", "--fusion", "all", "--data", "default", "--out", "/models"]

# ---------------------------------------------------------------------------------------------
# cpu (default): python:3.11-slim, the serving venv, the committed models, a non-root user.
FROM ${PYTHON_IMAGE} AS cpu
RUN groupadd --system --gid 10001 fusion \
 && useradd --system --uid 10001 --gid fusion --create-home --home-dir /home/fusion \
      --shell /usr/sbin/nologin fusion \
 && install -d -o fusion -g fusion /models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FUSION_MODELS_DIR=/models \
    FUSION_HOST=0.0.0.0 \
    FUSION_PORT=8000 \
    FUSION_PROVIDERS=cpu
COPY --from=venv-cpu /opt/venv/ /opt/venv/
# GET /health/ready with the standard library (slim images have no curl). One word, no arguments:
# Podman's Docker API splits a compose healthcheck's arguments at every space.
COPY docker/healthcheck.py /usr/local/bin/fusionserve-healthcheck
# The default models; mount a volume (or your own folder) on /models to replace them.
COPY --chown=10001:10001 models/ /models/
USER 10001:10001
WORKDIR /home/fusion
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["fusionserve-healthcheck"]
CMD ["python", "-m", "app"]
