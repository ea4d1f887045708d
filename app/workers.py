"""Worker processes sharing one listening socket (``FUSION_WORKERS``): one event loop per core.

One event loop serves HTTP, JSON and media decoding on one core; onnxruntime runs beside it in
the model's thread. On a machine with more cores, forked workers sharing the bound socket
(the kernel hands each new connection to one of them) scale the whole pipeline. Each worker is
the same server as a single process (:mod:`app.server`): same limits, timeouts and graceful
shutdown, its own models (loaded after the fork) and its own ``/metrics``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("app.server")
RESPAWN_AFTER_S = 10.0
"""A worker that exits sooner than this after its start is a start-up failure, not replaced."""


def run_workers(count: int, target: Callable[[], None], on_stop: Callable[[], object] | None = None) -> None:
    """Fork ``count`` workers running ``target`` and supervise them until they have all exited.

    SIGTERM or SIGINT to this process is passed on to every worker as SIGTERM: each one drains
    gracefully, with its own shutdown timeout (a Ctrl-C in a terminal reaches the workers
    directly too; SIGINT then SIGTERM is still a graceful stop for uvicorn). A worker that dies
    after running a while is replaced; one that dies within ``RESPAWN_AFTER_S`` of its start
    (a start-up failure) stops the others and the process exits with status 1. ``on_stop`` runs
    once, before the workers are signalled (the server stops new handshakes on the shared socket).
    """
    if threading.active_count() > 1:
        log.warning("forking %d workers with %d threads running", count, threading.active_count())
    children: dict[int, float] = {}
    stopping = failed = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker: uvicorn installs its own signal handlers
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                target()
                code = 0
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                os._exit(code)
        children[pid] = time.monotonic()

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping and on_stop is not None:
            on_stop()
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(count):
        spawn()
    log.info("serving with %d worker processes: %s", count, sorted(children))
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        started = children.pop(pid, time.monotonic())
        if stopping:
            continue
        code = os.waitstatus_to_exitcode(status)
        if time.monotonic() - started < RESPAWN_AFTER_S:
            log.error("worker %d exited at start-up (status %d); stopping", pid, code)
            failed = True
            stop(signal.SIGTERM, None)
            continue
        log.error("worker %d exited (status %d); starting another", pid, code)
        spawn()
    if failed:
        raise SystemExit(1)
