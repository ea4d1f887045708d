"""Error isolation under load: good requests with malformed ones mixed in, many at once.

Every good request is a text-only or media predict whose right answer is known (asked alone
first), so a failed, lost or swapped answer shows; every bad one must get a 4xx. Requests share
batches (the server batches whatever is queued), so one bad request in a batch would fail its
batch-mates if validation let it through. Target: 0 collateral failures, 0 bad ones with a 5xx.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
from pathlib import Path

import httpx

from bench.server import ROOT, ServerProcess
from bench.stress.common import EXAMPLES, TEXTS, media_body, report

PATH = "/v1/models/{model}/predict"
MODELS = ("late", "gated", "early")
_JSON = {"content-type": "application/json"}

RAW = argparse.RawDescriptionHelpFormatter


def bad_requests() -> list[tuple[bytes, dict[str, str]]]:
    """Malformed or refused requests (body, headers): each must get a 4xx, never a 5xx."""
    png = (EXAMPLES / "seven.png").read_bytes()
    cases: list[object] = [
        {"image": {"b64": "not base64!!"}},
        {"image": {"b64": base64.b64encode(png[:40]).decode()}},  # a truncated PNG
        {"image": {"array": [[1, 2], [3]]}},
        {"image": {"array": [[1e308] * 28] * 28}},
        {"audio": {"array": [0.1] * 100}},  # no sample_rate
        {"audio": {"array": [[0.1, 0.2]] * 8, "sample_rate": 0}},
        {"text": "x", "nope": 1},
        {"instances": []},
        {},
        {"text": 5},
        {"options": {"top_k": -1}, "text": "a"},
    ]
    out = [(json.dumps(c).encode(), _JSON) for c in cases]
    out += [(b"{garbage", _JSON), (b'{"text": "sept"}', {"content-type": "text/plain"}), (b"", _JSON)]
    return out


async def expected_labels(client: httpx.AsyncClient) -> dict[tuple[str, bytes], str]:
    """The answer to each good request, asked alone."""
    answers = {}
    for model in MODELS:
        bodies = [json.dumps({"text": w}).encode() for w in TEXTS] + [media_body("deux")]
        for body in bodies:
            response = await client.post(PATH.format(model=model), content=body, headers=_JSON)
            response.raise_for_status()
            answers[(model, body)] = response.json()["label"]
    return answers


async def run(url: str, requests: int, bad_share: float, concurrency: int, seed: int = 0) -> dict[str, int]:
    """Send ``requests`` requests, ``bad_share`` of them bad, ``concurrency`` at a time."""
    rng = random.Random(seed)
    bad = bad_requests()
    counts = {"requests": 0, "good": 0, "bad": 0, "collateral": 0, "bad_5xx": 0, "transport_errors": 0}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        expected = await expected_labels(client)
        good = list(expected)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                counts["requests"] += 1
                try:
                    if rng.random() < bad_share:
                        counts["bad"] += 1
                        body, headers = rng.choice(bad)
                        response = await client.post(PATH.format(model="late"), content=body, headers=headers)
                        counts["bad_5xx"] += response.status_code >= 500
                        continue
                    counts["good"] += 1
                    model, body = rng.choice(good)
                    response = await client.post(PATH.format(model=model), content=body, headers=_JSON)
                    want = expected[(model, body)]
                    counts["collateral"] += response.status_code != 200 or response.json()["label"] != want
                except httpx.TransportError:
                    counts["transport_errors"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--bad-share", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)
    with ServerProcess(args.models_dir) as server:
        counts = asyncio.run(run(server.url, args.requests, args.bad_share, args.concurrency))
    ok = counts["collateral"] == 0 and counts["bad_5xx"] == 0 and counts["transport_errors"] == 0
    report("isolation", counts, ok)
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
