"""Repository, runtime and the tensor-level service path: loading, refusals, versions, control."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.config import Settings
from app.errors import InvalidInput, ModelLoadError, NotFound, NotReady
from app.manifest import Manifest
from app.metrics import Metrics
from app.repository import ModelRepository
from app.runtime import CPU, ModelState
from app.service import InferenceService
from tests.app import fakes

ALL = fakes.ALL


def batch(n: int, mask: list[float] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    return {
        "image": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "audio": rng.uniform(-1, 1, (n, 16000)).astype(np.float32),
        "text": rng.integers(0, 128, (n, 64), dtype=np.uint8),
        "mask": np.tile(np.array(mask or [1, 1, 1], dtype=np.float32), (n, 1)),
    }


async def started(root: Path, **settings: object) -> ModelRepository:
    repo = ModelRepository(Settings(models_dir=root, **settings), Metrics())  # type: ignore[arg-type]
    await repo.start()
    return repo


async def test_loads_the_latest_version_of_each_model_and_refuses_the_broken_one(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app"):
        repo = await started(models_dir)
    try:
        states = {(e.name, e.version): e.state for e in repo.index()}
        assert states[("late", 2)] == "ready" and states[("late", 1)] == "unloaded"
        assert states[("broken", 1)] == "failed"
        assert sum(s == "ready" for s in states.values()) == 7
        assert any("refused model broken version 1" in r.message for r in caplog.records)
        runtime = await repo.get_ready("late")
        assert (runtime.version, runtime.provider) == (2, CPU)
        with pytest.raises(NotReady, match="broken.*failed"):
            await repo.get_ready("broken")
    finally:
        await repo.close()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("shape", "has shape"),
        ("dtype", "is float32 in the graph, uint8 in the manifest"),
        ("rows", "for 2 input rows"),
        ("sha", "onnx_sha256"),
        ("name", "manifest says"),
        ("garbled_manifest", "manifest.json is unreadable"),
        ("no_onnx", "model.onnx is missing"),
        ("extra_output", "output 'weights' is not in the graph"),
        ("decode", "decoding makes"),
    ],
)
async def test_a_lying_or_broken_model_is_refused_and_the_rest_keep_serving(
    tmp_path: Path, case: str, reason: str
) -> None:
    fakes.write_model(tmp_path, "good", 1, ["text"], seed=1)
    target = tmp_path / "bad" / "1"
    if case == "shape":
        fakes.write_model(tmp_path, "bad", 1, ALL, image_size=32)
    elif case == "dtype":
        fakes.write_model(tmp_path, "bad", 1, ALL, text_dtype="float32")
    elif case == "rows":
        fakes.write_model(tmp_path, "bad", 1, ALL, constant_rows=True)
    elif case == "sha":
        fakes.write_model(tmp_path, "bad", 1, ALL)
        (target / "model.onnx").write_bytes((target / "model.onnx").read_bytes() + b"\0")
    elif case == "name":
        fakes.write_model(tmp_path, "bad", 1, ALL, manifest=fakes.make_manifest("other", 1, ALL))
    elif case == "garbled_manifest":
        fakes.write_model(tmp_path, "bad", 1, ALL)
        (target / "manifest.json").write_text("{not json")
    elif case == "no_onnx":
        fakes.write_model(tmp_path, "bad", 1, ALL)
        (target / "model.onnx").unlink()
    elif case == "extra_output":
        fakes.write_model(tmp_path, "bad", 1, ALL, manifest=fakes.make_manifest("bad", 1, ALL, gated=True))
    elif case == "decode":
        manifest = fakes.make_manifest("bad", 1, ALL)
        manifest = manifest.model_copy(
            update={"decode": manifest.decode.model_copy(update={"text_bytes": 32})}
        )
        fakes.write_model(tmp_path, "bad", 1, ALL, manifest=manifest)
    repo = await started(tmp_path)
    try:
        bad = await repo.get("bad")
        assert bad.state is ModelState.FAILED and reason in bad.reason, bad.reason
        assert (await repo.get_ready("good")).ready
    finally:
        await repo.close()


async def test_lookups_before_start_and_of_unknown_names(models_dir: Path) -> None:
    repo = ModelRepository(Settings(models_dir=models_dir))
    with pytest.raises(NotReady, match="starting"):
        await repo.get("late")
    await repo.start()
    try:
        with pytest.raises(NotFound, match="nope"):
            await repo.get("nope")
        with pytest.raises(NotFound, match="no version 9"):
            await repo.get("late", 9)
    finally:
        await repo.close()


async def test_a_named_version_is_loaded_once_on_first_use(models_dir: Path) -> None:
    repo = await started(models_dir)
    try:
        runtimes = await asyncio.gather(*[repo.get_ready("late", 1) for _ in range(5)])
        assert all(rt is runtimes[0] for rt in runtimes) and runtimes[0].version == 1
        assert (await repo.get("late")).version == 2  # the default did not move
    finally:
        await repo.close()


async def test_load_picks_up_a_new_version_and_keeps_the_old_one_if_it_is_broken(tmp_path: Path) -> None:
    fakes.write_model(tmp_path, "m", 1, ALL, seed=1)
    repo = await started(tmp_path)
    try:
        fakes.write_model(tmp_path, "m", 2, ALL, seed=2)
        assert (await repo.load("m")).version == 2
        assert (await repo.get_ready("m")).version == 2
        fakes.write_model(tmp_path, "m", 3, ALL, constant_rows=True)
        with pytest.raises(ModelLoadError, match="rows"):
            await repo.load("m")
        assert (await repo.get_ready("m")).version == 2  # still serving the last good one
        assert {(e.version, e.state) for e in repo.index()} == {(1, "unloaded"), (2, "ready"), (3, "failed")}
        with pytest.raises(NotFound):
            await repo.load("nope")
    finally:
        await repo.close()


async def test_unload_then_load(models_dir: Path) -> None:
    repo = await started(models_dir)
    service = InferenceService(repo, repo.settings)
    try:
        await repo.unload("text_only")
        with pytest.raises(NotReady, match="unloaded"):
            await service.infer("text_only", None, {"text": np.zeros((1, 64), np.uint8)})
        assert {e.state for e in repo.index() if e.name == "text_only"} == {"unloaded"}
        assert repo.peek("text_only") is not None  # metadata survives an unload
        await repo.load("text_only")
        out = await service.infer("text_only", None, {"text": np.zeros((1, 64), np.uint8)})
        assert out["logits"].shape == (1, 10)
        with pytest.raises(NotFound):
            await repo.unload("nope")
    finally:
        await repo.close()


async def test_infer_matches_a_direct_session_run(models_dir: Path) -> None:
    repo = await started(models_dir)
    service = InferenceService(repo, repo.settings)
    try:
        inputs = batch(5, [1, 0, 1])
        outputs = await service.infer("gated", None, inputs)
        session = ort.InferenceSession(str(models_dir / "gated" / "1" / "model.onnx"))
        logits, weights = session.run(["logits", "weights"], inputs)
        np.testing.assert_allclose(outputs["logits"], logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outputs["weights"], weights, rtol=1e-5, atol=1e-6)
        assert np.allclose(outputs["weights"][:, 1], 0)  # the masked modality gets no weight
    finally:
        await repo.close()


async def test_concurrent_infer_answers_are_not_swapped(models_dir: Path) -> None:
    repo = await started(models_dir)
    service = InferenceService(repo, repo.settings)
    try:
        requests = [batch(1 + i % 4, [1, i % 2, 1]) for i in range(40)]
        alone = [await service.infer("late", None, r) for r in requests]
        together = await asyncio.gather(*[service.infer("late", None, r) for r in requests])
        for a, b in zip(alone, together, strict=True):
            np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-5, atol=1e-5)
    finally:
        await repo.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.pop("mask"), "missing: ['mask']"),
        (lambda b: b.update(extra=np.zeros((2, 1))), "unknown: ['extra']"),
        (lambda b: b.update(image=b["image"].astype(np.float32)), "dtype float32"),
        (lambda b: b.update(audio=b["audio"][:, :100]), "shape [2, 100]"),
        (lambda b: b.update(text=b["text"][:1]), "different batch sizes"),
        (lambda b: b.update(text=b["text"][:0]), "no rows"),
        (lambda b: b.update(mask=[[1, 1, 1]]), "must be an array"),
        (lambda b: b["audio"].__setitem__((1, 5), np.inf), "input 'audio' holds NaN or infinite values"),
        (lambda b: b["mask"].__setitem__((0, 0), np.nan), "input 'mask' holds NaN or infinite values"),
    ],
)
async def test_infer_validates_before_batching(models_dir: Path, change: object, message: str) -> None:
    repo = await started(models_dir)
    service = InferenceService(repo, repo.settings)
    try:
        inputs: dict[str, object] = dict(batch(2))
        change(inputs)  # type: ignore[operator]
        with pytest.raises(InvalidInput) as info:
            await service.infer("late", None, inputs)  # type: ignore[arg-type]
        assert message in str(info.value)
    finally:
        await repo.close()


async def test_models_dir_entries_that_are_not_models_are_ignored(tmp_path: Path) -> None:
    fakes.write_model(tmp_path, "m", 1, ["text"])
    (tmp_path / "REPORT.md").write_text("# report")
    (tmp_path / "Bad Name" / "1").mkdir(parents=True)
    (tmp_path / "m" / "notes").mkdir()
    (tmp_path / "m" / "\u00b2").mkdir()  # "²": str.isdigit() says yes, int() says no
    (tmp_path / "empty").mkdir()
    repo = await started(tmp_path)
    try:
        assert repo.names() == ["m"] and repo.versions("m") == [1]
        assert json.loads((tmp_path / "m" / "1" / "manifest.json").read_text())["name"] == "m"
    finally:
        await repo.close()


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
@pytest.mark.parametrize(("setting", "ready"), [("auto", True), ("cuda", False)])
async def test_cuda_that_does_not_really_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, ready: bool
) -> None:
    """onnxruntime lists CUDA but the session lands on CPU: auto falls back, cuda refuses."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", CPU])
    fakes.write_model(tmp_path, "m", 1, ["text"])
    repo = await started(tmp_path, providers=setting)
    try:
        runtime = await repo.get("m")
        assert runtime.ready is ready
        if ready:
            assert runtime.provider == CPU
        else:
            assert "FUSION_PROVIDERS=cuda" in runtime.reason
    finally:
        await repo.close()


async def test_a_runtime_can_be_loaded_again_after_unload(models_dir: Path) -> None:
    repo = await started(models_dir)
    try:
        runtime = await repo.get_ready("text_only")
        await runtime.batcher.close()
        runtime.unload()
        assert not runtime.ready and runtime.provider is None
        await asyncio.to_thread(runtime.load)
        out = await runtime.batcher.submit(runtime.validate({"text": np.zeros((2, 64), np.uint8)}))
        assert out["logits"].shape == (2, 10)
    finally:
        await repo.close()


async def test_a_replaced_version_drains_before_it_closes(tmp_path: Path) -> None:
    """load() hands out the new version at once; the old one closes after its last request."""
    fakes.write_model(tmp_path, "m", 1, ["text"], seed=1)
    repo = await started(tmp_path)
    try:
        fakes.write_model(tmp_path, "m", 2, ["text"], seed=2)
        async with repo.serving("m") as old:  # a request that got version 1 and is still working
            draining = asyncio.Event()
            drain = old.drain

            async def announce() -> None:
                draining.set()
                await drain()

            old.drain = announce  # type: ignore[method-assign]
            load = asyncio.create_task(repo.load("m"))
            await draining.wait()
            assert (await repo.get_ready("m")).version == 2  # new requests get the new version
            out = await old.batcher.submit(old.validate({"text": np.zeros((3, 64), np.uint8)}))
            assert out["logits"].shape == (3, 10) and old.ready and not load.done()
        assert (await load).version == 2
        assert not old.ready and old.batcher.closed
    finally:
        await repo.close()


async def test_gate_weights_must_have_one_column_per_modality(tmp_path: Path) -> None:
    manifest = fakes.make_manifest("g", 1, ALL, gated=True).model_dump()
    manifest["outputs"][1]["shape"] = [-1, 4]
    with pytest.raises(ValueError, match=r"gate weights need \[-1, 3\]"):
        Manifest.model_validate(manifest)
    target = fakes.write_model(tmp_path, "g", 1, ALL, gated=True)  # and the server refuses the card
    (target / "manifest.json").write_text(json.dumps(manifest))
    repo = await started(tmp_path)
    try:
        runtime = await repo.get("g")
        assert runtime.state is ModelState.FAILED and "gate weights need [-1, 3]" in runtime.reason
    finally:
        await repo.close()
