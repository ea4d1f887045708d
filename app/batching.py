"""Adaptive batching: concurrent requests for one model share one onnxruntime run.

One queue and one worker task per model version. The worker takes the first waiting request,
adds whatever else is queued (waiting up to ``max_delay_s`` for more) until ``max_batch_size``
rows, concatenates the inputs, runs them in the model's own thread, checks that every output has
as many rows as went in, and splits the outputs back by each request's own row count.

Requests are validated before they are submitted, so a batch holds only well-formed inputs.
If a run still fails, a batch of several requests is re-run one request at a time, so the
exception reaches only the future of the request that causes it. Under load, batches form by
themselves: while one run is busy the next requests queue up and go together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from app.errors import FusionError, InferenceFailed, NotReady

log = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
RunFn = Callable[[Tensors], Tensors]
Observer = Callable[[int, float], None]


@dataclass(slots=True)
class _Request:
    inputs: Tensors
    rows: int
    future: asyncio.Future[Tensors] = field(repr=False)


class AdaptiveBatcher:
    """Queue, futures and size/time limits in front of one blocking ``run`` function.

    Args:
        run: the blocking model call (``{input: [N, ...]} -> {output: [N, ...]}``).
        name: used for the worker thread's name and log lines.
        max_batch_size: most rows per run; a single larger request runs alone, never split.
        max_delay_s: how long the first request of a batch waits for company (0 = no wait).
        observe: called with (rows, seconds) after every run, for metrics.
    """

    def __init__(
        self,
        run: RunFn,
        *,
        name: str,
        max_batch_size: int,
        max_delay_s: float = 0.0,
        observe: Observer | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must be >= 0, got {max_delay_s}")
        self._run = run
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self._observe = observe
        self._queue: asyncio.Queue[_Request] | None = None
        self._carry: _Request | None = None
        self._worker: asyncio.Task[None] | None = None
        self._inflight: list[_Request] = []
        self._buffers: Tensors = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{name}")
        self._closed = False

    @property
    def closed(self) -> bool:
        """True after :meth:`close`: the batcher takes no more requests."""
        return self._closed

    async def submit(self, inputs: Tensors) -> Tensors:
        """Queue one request (already validated, every input with the same row count); await its rows."""
        if self._closed:
            raise NotReady(f"model {self.name} is unloaded")
        rows = next(iter(inputs.values())).shape[0]
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None:
            self._worker = loop.create_task(self._work(), name=f"batcher-{self.name}")
        request = _Request(inputs, rows, loop.create_future())
        self._queue.put_nowait(request)
        return await request.future

    async def close(self) -> None:
        """Stop the worker, fail everything queued or running, wait for the thread to finish."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        pending = [*self._inflight, *([self._carry] if self._carry else [])]
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for request in pending:
            _fail(request, NotReady(f"model {self.name} was unloaded before it answered"))
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def _work(self) -> None:
        while True:
            batch = await self._collect()
            if not batch:
                continue
            self._inflight = batch  # left set if cancelled mid-run, so close() can fail these
            try:
                await self._execute(batch)
            except Exception as exc:  # a bug here must not kill the worker and hang every request
                log.exception("batcher %s failed", self.name)
                for request in batch:
                    _fail(request, exc)
            self._inflight = []

    async def _collect(self) -> list[_Request]:
        """Take the first live request, then more until the batch is full or the delay runs out."""
        assert self._queue is not None
        first, self._carry = self._carry, None
        while first is None or first.future.done():  # skip requests whose client went away
            first = await self._queue.get()
        batch, rows = [first], first.rows
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay_s
        while rows < self.max_batch_size:
            try:
                request = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
            if request.future.done():
                continue
            if rows + request.rows > self.max_batch_size:
                self._carry = request  # first in line for the next batch
                break
            batch.append(request)
            rows += request.rows
        return batch

    async def _execute(self, batch: list[_Request]) -> None:
        try:
            outputs = await self._call(self._concat([r.inputs for r in batch]), sum(r.rows for r in batch))
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            log.warning(
                "batch of %d requests for %s failed (%s); retrying one by one", len(batch), self.name, exc
            )
            for request in batch:
                try:
                    _deliver(request, await self._call(request.inputs, request.rows))
                except Exception as single:
                    _fail(request, single)
            return
        if len(batch) > 1:  # a run that hands back its input must not hand back a buffer reused next time
            outputs = {
                k: v.copy() if any(np.may_share_memory(v, b) for b in self._buffers.values()) else v
                for k, v in outputs.items()
            }
        start = 0
        for request in batch:
            _deliver(request, {k: v[start : start + request.rows] for k, v in outputs.items()})
            start += request.rows

    def _concat(self, parts: list[Tensors]) -> Tensors:
        """The batch's inputs, copied into this batcher's own buffers when they fit.

        One run at a time uses them (the next batch is put together after it), so they are
        reused: a fresh 2 MB array per batch would be page-faulted in anew every time.
        """
        if len(parts) == 1:
            return parts[0]
        out: Tensors = {}
        for name in parts[0]:
            arrays = [p[name] for p in parts]
            rows = sum(a.shape[0] for a in arrays)
            buffer = self._buffers.get(name)
            first = arrays[0]
            if rows > self.max_batch_size:
                out[name] = np.concatenate(arrays)
                continue
            if buffer is None or buffer.dtype != first.dtype or buffer.shape[1:] != first.shape[1:]:
                buffer = self._buffers[name] = np.empty((self.max_batch_size, *first.shape[1:]), first.dtype)
            out[name] = np.concatenate(arrays, out=buffer[:rows])
        return out

    async def _call(self, inputs: Tensors, rows: int) -> Tensors:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        outputs = await loop.run_in_executor(self._executor, self._run, inputs)
        if self._observe is not None:
            self._observe(rows, time.perf_counter() - started)
        wrong = {
            k: v.shape[0] if v.ndim else 0 for k, v in outputs.items() if v.ndim == 0 or v.shape[0] != rows
        }
        if wrong:
            raise InferenceFailed(
                f"model {self.name} returned {wrong} rows for outputs given {rows} input rows"
            )
        return outputs


def _deliver(request: _Request, outputs: Tensors) -> None:
    if not request.future.done():
        request.future.set_result(outputs)


def _fail(request: _Request, exc: BaseException) -> None:
    if request.future.done():
        return
    if not isinstance(exc, FusionError):
        wrapped = InferenceFailed(f"inference failed: {type(exc).__name__}: {exc}")
        wrapped.__cause__ = exc
        exc = wrapped
    request.future.set_exception(exc)
