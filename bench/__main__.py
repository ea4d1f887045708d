"""``python -m bench``: measure the server as DESIGN §7 asks, print a markdown table.

Server pinned to core 0, wrk pinned to core 1 (both from the same run, so ratios are fair on a
noisy shared machine). Measures, for the friendly predict route with PNG+WAV+text in JSON
(base64 media):
  - requests/s at 64 connections, vs the same stack answering a constant (transport limit);
  - latency percentiles at 1 connection;
  - server RSS with all models loaded, and cold start to ready.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.server import ROOT, ServerProcess

EXAMPLES = ROOT / "examples"
SERVER_ENV = {"FUSION_INTRA_OP_THREADS": "1", "FUSION_INTER_OP_THREADS": "1"}


def payload(text: str = "sept") -> bytes:
    """The README's example request: a real PNG digit, a real WAV clip, a text."""
    image = base64.b64encode((EXAMPLES / "seven.png").read_bytes()).decode()
    audio = base64.b64encode((EXAMPLES / "seven.wav").read_bytes()).decode()
    return json.dumps({"image": {"b64": image}, "audio": {"b64": audio}, "text": text}).encode()


def wrk(url: str, body: Path, connections: int, seconds: int, core: int) -> dict[str, float]:
    """Run wrk with a POST body; returns requests/s, latency percentiles (ms) and error counts."""
    script = body.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
        "done = function(summary, latency, requests)\n"
        "  for _, p in pairs({50, 90, 99}) do\n"
        '    io.write(string.format("P%d %f\\n", p, latency:percentile(p)))\n'
        "  end\n"
        "end\n"
    )
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for p in (50, 90, 99):
        result[f"p{p}_ms"] = float(re.search(rf"P{p} ([\d.]+)", out).group(1)) / 1000  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="late")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench needs wrk: apt-get install wrk")
    cores = os.cpu_count() or 1
    server_core, load_core = 0, 1 if cores > 1 else 0
    body_dir = Path(tempfile.mkdtemp())
    body = body_dir / "predict.json"
    body.write_bytes(payload())
    rows = {}

    with ServerProcess(args.models_dir, env=SERVER_ENV, module="bench.constant", core=server_core) as const:
        rows["constant c=64"] = wrk(
            f"{const.url}/bench/constant/{args.model}", body, 64, args.seconds, load_core
        )

    with ServerProcess(args.models_dir, env=SERVER_ENV, core=server_core) as real:
        rss, cold = real.rss_mb(), real.cold_start_s
        url = f"{real.url}/v1/models/{args.model}/predict"
        rows["predict c=1"] = wrk(url, body, 1, args.seconds, load_core)
        rows["predict c=64"] = wrk(url, body, 64, args.seconds, load_core)
        rss_after = real.rss_mb()

    ratio = rows["predict c=64"]["rps"] / rows["constant c=64"]["rps"]
    print(
        f"machine: {platform.machine()}, {cores} cores, {platform.python_version()}; server on core "
        f"{server_core}, wrk on core {load_core}; model `{args.model}`; body {body.stat().st_size} bytes "
        f"(JSON, base64 PNG + WAV + text); {args.seconds} s per run"
    )
    print()
    print("| run | requests/s | p50 ms | p90 ms | p99 ms | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        cells = [
            f"{r['rps']:.0f}",
            *(f"{r[k]:.2f}" for k in ("p50_ms", "p90_ms", "p99_ms")),
            f"{r['non2xx']:.0f}",
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    print(f"- predict/constant throughput at c=64: {ratio:.2f} (target >= 0.70)")
    print(f"- p50 at c=1: {rows['predict c=1']['p50_ms']:.2f} ms (target <= 3 ms)")
    print(f"- RSS after load: {rss:.0f} MB, after the runs: {rss_after:.0f} MB (target <= 300 MB)")
    print(f"- cold start to ready: {cold:.2f} s (target <= 3 s)")
    shutil.rmtree(body_dir)


if __name__ == "__main__":
    main()
