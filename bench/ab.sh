#!/usr/bin/env bash
# A/B of the hot path: one checkout's server against the peer-bench bodies, the same way for every
# checkout, so two versions compare on one machine within minutes (issue 13's step-by-step table).
#   bench/ab.sh DIR [KINDS] [CONC] [SECONDS]    e.g. git worktree add /tmp/base <rev>;
#   bench/ab.sh /tmp/base; bench/ab.sh .        (bodies: ../shared/peer-bench/run_all.sh makes them)
# Server (DIR/.venv or this checkout's .venv) pinned to CPU 1, wrk -t1 pinned to CPU 0, a 1 s warm-up,
# then one run per kind (v2bin, v1 = raw media JSON, v1mp = multipart, v2 = V2 JSON). Prints one line each.
set -u
DIR=$(cd "${1:-.}" && pwd); KINDS=${2:-"v2bin v1 v1mp v2"}; C=${3:-64}; D=${4:-5}
BODIES=${BODIES:-${TMPDIR:-/tmp}/peer-bench-work/bodies}; PORT=${PORT:-18690}
PY=$DIR/.venv/bin/python; [ -x "$PY" ] || PY=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python
[ -f "$BODIES/v2bin.lua" ] || { echo "no bodies in $BODIES: run ../shared/peer-bench/run_all.sh once"; exit 2; }
( cd "$DIR" && exec setsid taskset -c 1 env OMP_NUM_THREADS=1 FUSION_PORT="$PORT" FUSION_LOG_LEVEL=warning "$PY" -m app ) \
  > "${TMPDIR:-/tmp}/ab_server.log" 2>&1 &
SPID=$!
for _ in $(seq 120); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v2/health/ready")" = 200 ] && break; sleep 0.5
done
for k in $KINDS; do
  url=http://127.0.0.1:$PORT/v2/models/late/infer
  case $k in v1|v1mp) url=http://127.0.0.1:$PORT/v1/models/late/predict;; esac
  taskset -c 0 wrk -t1 -c16 -d1s -s "$BODIES/$k.lua" "$url" > /dev/null 2>&1
  r=$(taskset -c 0 wrk -t1 -c"$C" -d"${D}s" --timeout 10s --latency -s "$BODIES/$k.lua" "$url" 2>&1 | grep RESULT)
  echo "$DIR $k c=$C $(grep -o 'rps=[0-9.]*' <<< "$r") $(grep -o 'p50_us=[0-9]*' <<< "$r") $(grep -o 'non2xx=[0-9]*' <<< "$r")"
done
kill -TERM -- -"$SPID" 2>/dev/null; sleep 1; kill -KILL -- -"$SPID" 2>/dev/null; true
