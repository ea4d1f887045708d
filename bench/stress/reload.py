"""Reload and rollback under load, through the repository control API.

While clients predict on ``late`` without pause, each cycle copies ``late/1`` to ``late/2``
(manifest version set to 2) and calls ``load`` (the new version is swapped in once ready), then
rolls back: deletes ``late/2``, calls ``index`` (which must not drop the version being served)
and ``load``, which must put version 1 back without a gap. The server runs on a scratch copy
of the repository with repository control on (``FUSION_REPOSITORY_CONTROL=true`` and an admin
key). Target: 0 failed requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
from collections import Counter
from pathlib import Path

import httpx

from bench.server import ServerProcess
from bench.stress.common import ADMIN_KEY, CONTROL_ENV, TEXTS, media_body, report, scratch_models

ADMIN = {"X-API-Key": ADMIN_KEY}
_JSON = {"content-type": "application/json"}

RAW = argparse.RawDescriptionHelpFormatter


def add_version(models: Path, name: str, version: int) -> None:
    """Copy version 1 of ``name`` to ``version`` (the manifest names its own version)."""
    target = models / name / str(version)
    shutil.copytree(models / name / "1", target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = version
    (target / "manifest.json").write_text(json.dumps(manifest))


async def run(url: str, models: Path, cycles: int, concurrency: int) -> dict[str, int]:
    """``cycles`` reload + rollback cycles under ``concurrency`` clients; the counts."""
    counts: Counter[str] = Counter()
    versions: Counter[int] = Counter()
    bodies = [json.dumps({"text": w}).encode() for w in TEXTS] + [media_body()]
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def predict_forever(i: int) -> None:
            while not stop.is_set():
                body = bodies[(counts["requests"] + i) % len(bodies)]
                counts["requests"] += 1
                try:
                    response = await client.post("/v1/models/late/predict", content=body, headers=_JSON)
                except httpx.TransportError:
                    counts["failed"] += 1
                    continue
                if response.status_code == 200:
                    versions[response.json()["version"]] += 1
                else:
                    counts["failed"] += 1

        async def control(path: str) -> None:
            response = await client.post(f"/v2/repository{path}", headers=ADMIN)
            counts["control_calls"] += 1
            counts["control_failed"] += response.status_code != 200

        clients = [asyncio.create_task(predict_forever(i)) for i in range(concurrency)]
        for _ in range(cycles):
            add_version(models, "late", 2)
            await control("/models/late/load")
            counts["reloads"] += 1
            await asyncio.sleep(0.3)
            shutil.rmtree(models / "late" / "2")
            await control("/index")  # must not drop the version being served
            await control("/models/late/load")  # back to version 1
            counts["rollbacks"] += 1
            await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*clients)
        final = (await client.get("/v1/models/late")).json().get("version")
    return {**counts, "served_v1": versions[1], "served_v2": versions[2], "final_version": final}


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=RAW)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    models = scratch_models()
    try:
        with ServerProcess(models, env=CONTROL_ENV) as server:
            counts = asyncio.run(run(server.url, models, args.cycles, args.concurrency))
    finally:
        shutil.rmtree(models.parent, ignore_errors=True)
    failures = counts.get("failed", 0) + counts.get("control_failed", 0)
    ok = failures == 0 and counts["final_version"] == 1
    report("reload", counts, ok)
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
