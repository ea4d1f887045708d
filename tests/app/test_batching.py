"""The adaptive batcher: batching under concurrency, splitting, limits, isolation, shutdown.

No sleeps: a run function that blocks on an event holds the worker while requests queue up.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from app.batching import AdaptiveBatcher, Tensors
from app.errors import InferenceFailed, NotReady

POISON = -1.0


class Recorder:
    """A fake model: doubles ``x``; remembers batch sizes; can hold the first run; fails on POISON."""

    def __init__(self, hold_first: bool = False) -> None:
        self.batches: list[int] = []
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, inputs: Tensors) -> Tensors:
        self.started.set()
        self.release.wait(timeout=10)
        x = inputs["x"]
        self.batches.append(x.shape[0])
        if (x == POISON).any():
            raise RuntimeError("poisoned row")
        return {"y": x * 2, "rows": np.arange(x.shape[0])}


def rows(*values: float) -> Tensors:
    return {"x": np.array(values, dtype=np.float32).reshape(-1, 1)}


async def wait_started(model: Recorder) -> None:
    await asyncio.to_thread(model.started.wait, 10)


async def test_concurrent_requests_share_runs_and_get_their_own_rows() -> None:
    model = Recorder(hold_first=True)
    batcher = AdaptiveBatcher(model, name="m", max_batch_size=64)
    first = asyncio.create_task(batcher.submit(rows(0)))
    await wait_started(model)  # the worker is busy with the first request; the rest queue up
    others = [asyncio.create_task(batcher.submit(rows(*range(i, i + i % 3 + 1)))) for i in range(1, 20)]
    await asyncio.sleep(0)
    model.release.set()
    results = await asyncio.gather(first, *others)
    assert model.batches[0] == 1 and len(model.batches) == 2  # everything else went in one run
    for i, out in enumerate(results[1:], start=1):
        expected = np.arange(i, i + i % 3 + 1, dtype=np.float32).reshape(-1, 1) * 2
        np.testing.assert_array_equal(out["y"], expected)
    await batcher.close()


async def test_batch_buffers_are_reused_without_mixing_answers() -> None:
    def identity(inputs: Tensors) -> Tensors:  # hands back its input: the batcher's own buffer
        return {"y": inputs["x"]}

    for run in (Recorder(), identity):
        batcher = AdaptiveBatcher(run, name="m", max_batch_size=8)
        answers = []
        for start in (0, 100, 200):  # three batches through the same buffers
            values = [rows(start + i, start + i + 0.5) for i in range(3)]
            answers.append((values, await asyncio.gather(*(batcher.submit(v) for v in values))))
        scale = 2 if isinstance(run, Recorder) else 1
        for values, outs in answers:
            for sent, out in zip(values, outs, strict=True):
                np.testing.assert_array_equal(out["y"], sent["x"] * scale)
        await batcher.close()


async def test_max_batch_size_is_respected_and_a_large_request_runs_alone() -> None:
    model = Recorder(hold_first=True)
    batcher = AdaptiveBatcher(model, name="m", max_batch_size=4)
    first = asyncio.create_task(batcher.submit(rows(0)))
    await wait_started(model)
    sizes = [3, 3, 6, 1]
    tasks = [asyncio.create_task(batcher.submit(rows(*([k] * n)))) for k, n in enumerate(sizes)]
    await asyncio.sleep(0)
    model.release.set()
    await asyncio.gather(first, *tasks)
    assert model.batches == [1, 3, 3, 6, 1]  # never over 4, except the 6-row request on its own
    await batcher.close()


async def test_batch_closes_on_size_without_waiting_for_the_delay() -> None:
    model = Recorder()
    batcher = AdaptiveBatcher(model, name="m", max_batch_size=2, max_delay_s=30.0)
    a = asyncio.create_task(batcher.submit(rows(1)))
    await asyncio.sleep(0)
    b = asyncio.create_task(batcher.submit(rows(2)))
    await asyncio.wait_for(asyncio.gather(a, b), timeout=10)
    assert model.batches == [2]
    await batcher.close()


async def test_batch_closes_on_delay_when_not_full() -> None:
    model = Recorder()
    batcher = AdaptiveBatcher(model, name="m", max_batch_size=100, max_delay_s=0.005)
    out = await asyncio.wait_for(batcher.submit(rows(1)), timeout=10)
    assert model.batches == [1]
    np.testing.assert_array_equal(out["y"], [[2.0]])
    await batcher.close()


async def test_zero_delay_does_not_wait_for_company() -> None:
    model = Recorder()
    batcher = AdaptiveBatcher(model, name="m", max_batch_size=100, max_delay_s=0.0)
    await batcher.submit(rows(1))
    await batcher.submit(rows(2))
    assert model.batches == [1, 1]
    await batcher.close()


async def test_a_failing_request_fails_alone() -> None:
    model = Recorder(hold_first=True)
    batcher = AdaptiveBatcher(model, name="m", max_batch_size=64)
    first = asyncio.create_task(batcher.submit(rows(0)))
    await wait_started(model)
    good = [asyncio.create_task(batcher.submit(rows(i, i))) for i in range(1, 4)]
    bad = asyncio.create_task(batcher.submit(rows(5, POISON)))
    await asyncio.sleep(0)
    model.release.set()
    await first
    for i, task in enumerate(good, start=1):
        np.testing.assert_array_equal((await task)["y"], [[2.0 * i], [2.0 * i]])
    with pytest.raises(InferenceFailed, match="poisoned row"):
        await bad
    await batcher.close()


async def test_outputs_with_the_wrong_row_count_are_refused() -> None:
    batcher = AdaptiveBatcher(lambda inputs: {"y": np.zeros((1, 1))}, name="m", max_batch_size=8)
    with pytest.raises(InferenceFailed, match="rows"):
        await batcher.submit(rows(1, 2, 3))
    await batcher.close()


async def test_cancelled_requests_are_skipped() -> None:
    model = Recorder(hold_first=True)
    batcher = AdaptiveBatcher(model, name="m", max_batch_size=64)
    first = asyncio.create_task(batcher.submit(rows(0)))
    await wait_started(model)
    gone = asyncio.create_task(batcher.submit(rows(7, 7, 7)))
    kept = asyncio.create_task(batcher.submit(rows(8)))
    await asyncio.sleep(0)
    gone.cancel()
    model.release.set()
    await first
    np.testing.assert_array_equal((await kept)["y"], [[16.0]])
    assert model.batches == [1, 1]  # the cancelled request's 3 rows never ran
    await batcher.close()


async def test_close_fails_pending_requests_and_refuses_new_ones() -> None:
    model = Recorder(hold_first=True)
    batcher = AdaptiveBatcher(model, name="m", max_batch_size=64)
    running = asyncio.create_task(batcher.submit(rows(0)))
    await wait_started(model)
    queued = asyncio.create_task(batcher.submit(rows(1)))
    await asyncio.sleep(0)
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0)
    model.release.set()
    await closing
    for task in (running, queued):
        with pytest.raises(NotReady):
            await task
    with pytest.raises(NotReady):
        await batcher.submit(rows(2))


async def test_observer_sees_rows_and_time() -> None:
    seen: list[tuple[int, float]] = []
    batcher = AdaptiveBatcher(
        Recorder(), name="m", max_batch_size=8, observe=lambda n, s: seen.append((n, s))
    )
    await batcher.submit(rows(1, 2))
    assert len(seen) == 1 and seen[0][0] == 2 and seen[0][1] >= 0
    await batcher.close()


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        AdaptiveBatcher(Recorder(), name="m", max_batch_size=0)
    with pytest.raises(ValueError, match="max_delay_s"):
        AdaptiveBatcher(Recorder(), name="m", max_batch_size=1, max_delay_s=-1)
