"""GPU checks for ``bench/gpu.sh``: a CUDA session starts, CPU and CUDA agree, bodies, a fallback loadgen.

``python -m bench.gpu_check providers``  onnxruntime's build and a CUDA session on ``late`` (exit 1
                                         unless CUDAExecutionProvider is the session's first provider)
``python -m bench.gpu_check parity``     every default model, CPU vs CUDA on the same random batch
                                         (exit 1 if any output differs by more than ``--tol``)
``python -m bench.gpu_check bodies DIR`` the V2 binary and raw-media JSON bodies (+ wrk scripts)
``python -m bench.gpu_check load URL BODY CONC SECONDS [HEADER=VALUE ...]``  keep-alive POST load
                                         when wrk is missing (prints one RESULT line like the wrk scripts)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.server import ROOT

MODELS = ROOT / "models"
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
DTYPES = {"uint8": np.uint8, "float32": np.float32}


def latest(name: str) -> Path:
    """The newest version folder of a model (what the server serves by default)."""
    return max((p for p in (MODELS / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def session(path: Path, provider: str, options: dict[str, str] | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    providers: list = [(CUDA, options or {}), CPU] if provider == CUDA else [CPU]
    return ort.InferenceSession(str(path / "model.onnx"), opts, providers=providers)


def random_inputs(manifest: dict, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A batch of plausible inputs for every tensor the manifest lists (mask: at least one 1)."""
    out: dict[str, np.ndarray] = {}
    for spec in manifest["inputs"]:
        shape, dtype = [rows, *spec["shape"][1:]], DTYPES[spec["dtype"]]
        if spec["name"] == "mask":
            mask = rng.integers(0, 2, shape).astype(np.float32)
            mask[mask.sum(axis=1) == 0, 0] = 1.0
            out["mask"] = mask
        elif dtype == np.uint8:
            out[spec["name"]] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            out[spec["name"]] = rng.uniform(-1, 1, shape).astype(np.float32)
    return out


def providers() -> int:
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):  # the CUDA/cuDNN libraries pip installed beside onnxruntime
        ort.preload_dlls()
    print(
        f"onnxruntime {ort.__version__}, device {ort.get_device()}, available {ort.get_available_providers()}"
    )
    started = time.perf_counter()
    sess = session(latest("late"), CUDA)
    print(f"late: session providers {sess.get_providers()} ({time.perf_counter() - started:.2f} s)")
    return 0 if sess.get_providers()[0] == CUDA else 1


def parity(tol: float, rows: int) -> int:
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    worst_all, failed = 0.0, []
    rng = np.random.default_rng(0)
    print(f"| model | rows | max abs diff (default) | max abs diff (use_tf32=0) | <= {tol:g} |")
    print("|---|---:|---:|---:|---|")
    for folder in sorted(
        p for p in MODELS.iterdir() if p.is_dir() and any(v.name.isdigit() for v in p.iterdir())
    ):
        path = latest(folder.name)
        manifest = json.loads((path / "manifest.json").read_text())
        inputs = random_inputs(manifest, rows, rng)
        cpu = session(path, CPU).run(None, inputs)
        diffs = []
        for options in (None, {"use_tf32": "0"}):
            cuda_sess = session(path, CUDA, options)
            if cuda_sess.get_providers()[0] != CUDA:
                print(f"{folder.name}: CUDA session did not start ({cuda_sess.get_providers()})")
                return 1
            cuda = cuda_sess.run(None, inputs)
            diffs.append(
                max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(cpu, cuda, strict=True))
            )
        ok = diffs[0] <= tol
        worst_all = max(worst_all, diffs[0])
        if not ok:
            failed.append(folder.name)
        print(f"| {folder.name} | {rows} | {diffs[0]:.2e} | {diffs[1]:.2e} | {'yes' if ok else 'NO'} |")
    print(f"worst {worst_all:.2e}; failed: {failed or 'none'}")
    return 1 if failed else 0


def bodies(out: Path) -> int:
    """V2 binary (all four inputs of ``late``) and raw media JSON bodies built from examples/."""
    out.mkdir(parents=True, exist_ok=True)
    png, wav = (ROOT / "examples/seven.png").read_bytes(), (ROOT / "examples/seven.wav").read_bytes()
    v1 = {"image": {"b64": base64.b64encode(png).decode()}, "audio": {"b64": base64.b64encode(wav).decode()}}
    (out / "v1.json").write_bytes(json.dumps({**v1, "text": "sept"}).encode())
    from app.media import decode_audio, decode_image, encode_text

    tensors = {
        "image": decode_image(png)[None],
        "audio": decode_audio(wav)[None],
        "text": encode_text("sept")[None],
        "mask": np.ones((1, 3), dtype=np.float32),
    }
    types = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32"}
    header = {
        "inputs": [
            {
                "name": k,
                "shape": list(v.shape),
                "datatype": types[v.dtype],
                "parameters": {"binary_data_size": v.nbytes},
            }
            for k, v in tensors.items()
        ],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
    }
    head = json.dumps(header).encode()
    (out / "v2bin.bin").write_bytes(head + b"".join(v.tobytes() for v in tensors.values()))
    for kind, body, headers in (
        ("v1", "v1.json", {"Content-Type": "application/json"}),
        (
            "v2bin",
            "v2bin.bin",
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))},
        ),
    ):
        lines = ['wrk.method = "POST"', *(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())]
        lines += [f'local f = assert(io.open("{out / body}", "rb"))', "wrk.body = f:read('*a')", "f:close()"]
        (out / f"{kind}.lua").write_text("\n".join(lines) + "\n")
        (out / f"{kind}.headers").write_text("\n".join(f"{k}={v}" for k, v in headers.items()) + "\n")
    print(f"bodies in {out}: v1.json {len((out / 'v1.json').read_bytes())} B, v2bin.bin {len(head)} B header")
    return 0


async def _load(url: str, body: bytes, headers: dict[str, str], conc: int, seconds: float) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while time.perf_counter() < end:
            started = time.perf_counter()
            writer.write(request)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            errors += not status.startswith(b"HTTP/1.1 200")
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(conc)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else 0.0
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0
    print(
        f"RESULT requests={len(latencies)} rps={len(latencies) / elapsed:.1f} p50_us={p50 * 1e6:.0f} "
        f"p99_us={p99 * 1e6:.0f} non2xx={errors} (python loadgen)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("providers")
    p = sub.add_parser("parity")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--rows", type=int, default=8)
    b = sub.add_parser("bodies")
    b.add_argument("out", type=Path)
    ld = sub.add_parser("load")
    ld.add_argument("url")
    ld.add_argument("body", type=Path)
    ld.add_argument("conc", type=int)
    ld.add_argument("seconds", type=float)
    ld.add_argument("headers", nargs="*")
    args = parser.parse_args()
    if args.cmd == "providers":
        return providers()
    if args.cmd == "parity":
        return parity(args.tol, args.rows)
    if args.cmd == "bodies":
        return bodies(args.out)
    headers = dict(h.split("=", 1) for h in args.headers)
    asyncio.run(_load(args.url, args.body.read_bytes(), headers, args.conc, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
