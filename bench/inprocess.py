"""``python -m bench.inprocess [--kind v2bin|v1] [--requests N]``: where a c=1 request's time goes.

The app (``create_app()``, the committed models) is called as an ASGI app in this process, one
request after another, with no sockets: what is left is the server's own work. Four variants of
the same request path (pin it: ``taskset -c 1``), each a median over ``--requests`` requests:

- as served;
- the model run inline on the event loop (no hop to the onnxruntime thread);
- the model's answer cached (the first one), the hop kept;
- the model's answer cached, no hop: the Python of the request path alone.

Bodies: the peer-bench's (``../shared/peer-bench/run_all.sh`` writes them), ``v2bin`` (V2 binary
tensors) or ``v1`` (PNG + WAV + text, JSON base64), for ``late``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from app import batching
from app.main import create_app

BODIES = Path(os.environ.get("BODIES", "/tmp/peer-bench-work/bodies"))
KINDS = {"v2bin": ("v2bin.bin", "/v2/models/late/infer"), "v1": ("v1.json", "/v1/models/late/predict")}
HEADER = re.compile(r'^wrk\.headers\["([^"]+)"\] = "([^"]*)"$', re.M)
Call = Callable[[batching.AdaptiveBatcher, Any, int], Awaitable[Any]]


def _request(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> Callable[[], Awaitable[int]]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": [*headers, (b"content-length", str(len(body)).encode()), (b"host", b"bench")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "root_path": "",
    }  # fmt: skip

    async def one() -> int:
        sent, status = False, 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app({**scope, "state": {}}, receive, send)
        return status

    return one


async def _median_ms(one: Callable[[], Awaitable[int]], n: int) -> float:
    for _ in range(max(n // 10, 10)):  # warm up
        if await one() != 200:
            raise SystemExit("the request was refused: is the body right for this kind?")
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await one()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


async def _main(kind: str, n: int) -> None:
    name, path = KINDS[kind]
    body = (BODIES / name).read_bytes()
    script = (BODIES / f"{kind}.lua").read_text()  # the headers wrk sends with this body
    headers = [(k.lower().encode(), v.encode()) for k, v in HEADER.findall(script)]
    app = create_app()
    one = _request(app, path, headers, body)
    real: Call = batching.AdaptiveBatcher._call
    cached: dict[str, Any] = {}

    async def inline(self: batching.AdaptiveBatcher, inputs: Any, rows: int) -> Any:
        return self._run(inputs)

    async def cached_hop(self: batching.AdaptiveBatcher, inputs: Any, rows: int) -> Any:
        if self.name not in cached:
            cached[self.name] = await real(self, inputs, rows)
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: cached[self.name])

    async def cached_inline(self: batching.AdaptiveBatcher, inputs: Any, rows: int) -> Any:
        return cached[self.name]

    variants: list[tuple[str, Call]] = [
        ("as served", real),
        ("model run inline on the event loop (no hop)", inline),
        ("model answer cached, hop kept", cached_hop),
        ("model answer cached, no hop", cached_inline),
    ]
    async with app.router.lifespan_context(app):
        while not app.state.repository.ready:
            await asyncio.sleep(0.1)
        print(f"| request path, in process ({kind}, {n} requests) | p50 ms |\n|---|---:|")
        try:
            for label, call in variants:
                batching.AdaptiveBatcher._call = call  # type: ignore[method-assign,assignment]
                print(f"| {label} | {await _median_ms(one, n):.3f} |", flush=True)
        finally:
            batching.AdaptiveBatcher._call = real  # type: ignore[method-assign,assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=sorted(KINDS), default="v2bin")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("FUSION_LOG_LEVEL", "warning")  # no load/unload lines between the rows
    asyncio.run(_main(args.kind, args.requests))


if __name__ == "__main__":
    main()
