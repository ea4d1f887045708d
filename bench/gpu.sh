#!/usr/bin/env bash
# GPU check and benchmark, one prepared script for a machine with an NVIDIA GPU (run from the repo root):
#   1. a venv with the serving install and onnxruntime-gpu (pinned) instead of onnxruntime;
#   2. proof that a CUDA session starts (CUDAExecutionProvider first in session.get_providers());
#   3. CPU-vs-CUDA parity <= 1e-4 on every default model in models/ (same random batch);
#   4. the server (python -m app, FUSION_PROVIDERS=cuda) under load at c=1/64/256, V2 binary and
#      raw media JSON, with wrk if installed (else a Python keep-alive loadgen), plus 1 vs N workers.
# Settings: GPU_VENV (venv path), WHEELS (a folder of wheels for an offline machine: pip --find-links),
# DUR (s per run, default 10), CONCS ("1 64 256"), WORKERS ("1 4"), PROVIDER (cuda; cpu = dry run here),
# LOADGEN (wrk, or python for the built-in loadgen).
# Exit status: 0 when the CUDA session starts and every model is within tolerance, else 1.
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_GPU=onnxruntime-gpu==1.31.1   # newest on PyPI (2026-12-01); CPU serving pins onnxruntime==1.32.0
V=${GPU_VENV:-/tmp/fusion-gpu-venv}; DUR=${DUR:-10}; CONCS=${CONCS:-"1 64 256"}; WORKERS=${WORKERS:-"1 4"}
PROVIDER=${PROVIDER:-cuda}; OUT=${OUT:-/tmp/fusion-gpu}; PORT=${PORT:-18900}
mkdir -p "$OUT"; LOG=$OUT/gpu.log; : > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }
FIND=(); [ -n "${WHEELS:-}" ] && FIND=(--find-links "$WHEELS")

say "# bench/gpu.sh $(date -Is) on $(hostname): $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$LOG"
say "## 1. venv $V"
if [ ! -x "$V/bin/python" ]; then
  python3 -m venv "$V"
  "$V/bin/pip" install -q "${FIND[@]}" -e ".[serving]" 2>&1 | tail -3
  if [ "$PROVIDER" = cuda ]; then
    "$V/bin/pip" uninstall -q -y onnxruntime   # both wheels install the module 'onnxruntime'
    # the [cuda,cudnn] extras bring the CUDA 12 / cuDNN 9 runtime wheels; without them, the system's
    "$V/bin/pip" install -q "${FIND[@]}" "${ORT_GPU}[cuda,cudnn]" 2>&1 | tail -3 \
      || "$V/bin/pip" install -q "${FIND[@]}" "$ORT_GPU" 2>&1 | tail -3
  fi
fi
PY=$V/bin/python
say "$($PY -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())')"

STATUS=0
if [ "$PROVIDER" = cuda ]; then
  say "## 2. CUDA session"
  $PY -m bench.gpu_check providers 2>&1 | tee -a "$LOG" || STATUS=1
  say "## 3. CPU vs CUDA parity (<= 1e-4)"
  $PY -m bench.gpu_check parity --tol 1e-4 2>&1 | tee -a "$LOG" || STATUS=1
fi

say "## 4. server on $PROVIDER: requests/s, p50"
$PY -m bench.gpu_check bodies "$OUT/bodies" | tee -a "$LOG"
load() { # kind url conc
  local kind=$1 url=$2 conc=$3
  if [ "${LOADGEN:-wrk}" = wrk ] && command -v wrk >/dev/null; then
    wrk -t"$(( conc < 4 ? conc : 4 ))" -c"$conc" -d"${DUR}s" --timeout 10s --latency -s "$OUT/bodies/$kind.lua" "$url" 2>&1 \
      | awk '/Requests\/sec/ {r=$2} /^ +50%/ {p=$2} /Non-2xx/ {e=$NF} END {printf "rps=%s p50=%s non2xx=%s (wrk)\n", r, p, e+0}'
  else
    local body; body=$([ "$kind" = v1 ] && echo v1.json || echo v2bin.bin)
    # shellcheck disable=SC2046  # one HEADER=VALUE word per line of the .headers file
    $PY -m bench.gpu_check load "$url" "$OUT/bodies/$body" "$conc" "$DUR" $(cat "$OUT/bodies/$kind.headers") | grep RESULT
  fi; }
for workers in $WORKERS; do
  env FUSION_PORT="$PORT" FUSION_PROVIDERS="$PROVIDER" FUSION_WORKERS="$workers" FUSION_LOG_LEVEL=warning \
    FUSION_MAX_CONNECTIONS=2000 "$PY" -m app > "$OUT/server_w$workers.log" 2>&1 &
  SPID=$!
  for _ in $(seq 240); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2/health/ready")" = 200 ] && break
    kill -0 $SPID 2>/dev/null || { say "server exited: $(tail -5 "$OUT/server_w$workers.log")"; STATUS=1; break; }
    sleep 0.5
  done
  sleep 2   # with several workers, let the others finish loading too
  say "providers served: $(curl -s "http://127.0.0.1:$PORT/v1/models/late" | $PY -c 'import json,sys; print(json.load(sys.stdin).get("provider"))')"
  for kind in v2bin v1; do
    url=http://127.0.0.1:$PORT/v2/models/late/infer; [ "$kind" = v1 ] && url=http://127.0.0.1:$PORT/v1/models/late/predict
    for conc in $CONCS; do say "workers=$workers $kind c=$conc $(load "$kind" "$url" "$conc")"; done
  done
  say "RSS MB (parent + workers): $(ps -o rss= -p $SPID --ppid $SPID | awk '{s+=$1} END {print s/1024}')"
  kill -TERM $SPID; wait $SPID || true
done
say "# done: status $STATUS (log $LOG)"
exit $STATUS
