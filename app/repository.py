"""The model repository: ``models/<name>/<version>/{model.onnx,manifest.json}`` on disk -> runtimes.

At start the newest version of every model that loads is loaded (a refused one falls back to
the next highest) and becomes the model's default version; any other version is loaded the first
time a request names it. A version that cannot be loaded (broken file, manifest that lies about
the graph) is refused with one log line and kept as ``FAILED`` with a short reason; everything
else keeps serving. ``load``/``unload``/``index`` are the repository-control operations (KServe V2).

What is served never depends on a rescan alone: a loaded version keeps answering when its folder
disappears from disk (its session is in memory) until :meth:`ModelRepository.load` has swapped in
a replacement that is ready. So an index or a rollback never opens a window of 404s or 503s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from app.config import Settings
from app.contract import scan_repository
from app.errors import ModelLoadError, NotFound, NotReady
from app.metrics import Metrics
from app.runtime import CUDA, ModelRuntime, ModelState, resolve_providers

log = logging.getLogger(__name__)
GONE = "its folder is gone from disk; it serves until the next load"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One version in :meth:`ModelRepository.index`. ``state`` is a :class:`ModelState` value."""

    name: str
    version: int
    state: str
    reason: str


class ModelRepository:
    """Scans the models directory and owns every :class:`ModelRuntime` (one per loaded version)."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.providers = resolve_providers(settings.providers)
        self.ready = False
        self._disk: dict[str, dict[int, Path]] = {}
        self._runtimes: dict[tuple[str, int], ModelRuntime] = {}
        self._loading: dict[tuple[str, int], asyncio.Task[ModelRuntime]] = {}
        self._unloaded: set[str] = set()
        self._default: dict[str, int] = {}
        self._started = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the newest version of every model that loads (the default version); then ``ready``."""
        started = time.perf_counter()
        try:
            self._disk = self.scan()
        except NotReady:
            self._disk = {}  # logged by scan(); the server still starts and reports no models
        for name in sorted(self._disk):
            for version in sorted(self._disk[name], reverse=True):
                if (await self._load_version(name, version)).ready:
                    self._default[name] = version
                    break
        self.ready = True
        self._started.set()
        ok, took = len(self._default), time.perf_counter() - started
        log.info("repository ready: %d of %d models loaded in %.2f s", ok, len(self._disk), took)

    async def wait_ready(self) -> None:
        """Return once :meth:`start` has finished."""
        await self._started.wait()

    async def close(self) -> None:
        """Stop every batcher and drop every session."""
        while self._runtimes:
            await self._close(self._runtimes.popitem()[1])

    def scan(self) -> dict[str, dict[int, Path]]:
        """``{name: {version: path}}`` for every ``<name>/<integer>/`` folder on disk.

        Raises:
            NotReady: the models directory cannot be listed (the path and the OS error are logged,
                not sent: clients have no business knowing the server's paths).
        """
        try:
            return scan_repository(self.settings.models_dir)
        except OSError as exc:
            log.error("cannot read the model repository %s: %s", self.settings.models_dir, exc)
            raise NotReady("the model repository cannot be read; the server log says why") from None

    # -- lookups --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every model on disk or still serving from memory, sorted."""
        return sorted(set(self._disk) | {n for (n, _), rt in self._runtimes.items() if rt.ready})

    def is_known(self, name: str) -> bool:
        """Whether ``name`` is a model on disk (used to keep metric labels bounded)."""
        return name in self._disk or name in self._default

    def versions(self, name: str) -> list[int]:
        """The versions of ``name`` a request may name: on disk, or loaded (empty if unknown)."""
        loaded = {v for (n, v), rt in self._runtimes.items() if n == name and rt.ready}
        return sorted(set(self._disk.get(name, {})) | loaded)

    def default_version(self, name: str) -> int | None:
        """The version a request that names none gets: the newest one loaded (at start or by load)."""
        return self._default.get(name)

    def peek(self, name: str, version: int | None = None) -> ModelRuntime | None:
        """The runtime of a version (default: the default version) if it exists, without loading."""
        version = self._default.get(name) if version is None else version
        return None if version is None else self._runtimes.get((name, version))

    def require_started(self) -> None:
        """Raises :class:`NotReady` until :meth:`start` has loaded the models (readiness)."""
        if not self.ready:
            raise NotReady("the server is starting: models are still loading")

    def not_serving(self) -> list[str]:
        """Models that should answer but cannot: a default version that is not ``READY``.

        A model has a default once one of its versions loaded (at start or by :meth:`load`); one
        unloaded through repository control is not expected to answer. A model none of whose
        versions ever loaded has no default and is reported by its own readiness, not here.
        """
        defaults = self._default.items()
        return sorted(n for n, v in defaults if n not in self._unloaded and not self._ready_at(n, v))

    def require(self, name: str) -> list[int]:
        """The versions of a model that requests may use now (ascending).

        Raises:
            NotReady: the server is still starting, or the model was unloaded.
            NotFound: no such model on disk or in memory.
        """
        self.require_started()
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"model {name!r} not found; available: {self.names()}")
        if name in self._unloaded:
            raise NotReady(f"model {name!r} is unloaded; load it through repository control")
        return versions

    async def get(self, name: str, version: int | None = None) -> ModelRuntime:
        """The runtime for ``name`` (default version unless ``version``), loading it on first use.

        The returned runtime may be ``FAILED``; callers that need a session use :meth:`get_ready`.

        Raises:
            NotReady: the server is still starting, or the model was unloaded.
            NotFound: no such model or version.
        """
        versions = self.require(name)
        version = self._default.get(name, versions[-1]) if version is None else version
        if version not in versions:
            raise NotFound(f"model {name!r} has no version {version}; versions: {versions}")
        runtime = self._runtimes.get((name, version))
        if runtime is None or (name, version) in self._loading:
            return await self._load_version(name, version)  # joins a load already under way
        return runtime

    async def get_ready(self, name: str, version: int | None = None) -> ModelRuntime:
        """Like :meth:`get`, but a runtime that is not ``READY`` is a :class:`NotReady` (503)."""
        runtime = await self.get(name, version)
        runtime.serving_manifest()
        return runtime

    @asynccontextmanager
    async def serving(self, name: str, version: int | None = None) -> AsyncIterator[ModelRuntime]:
        """A ready runtime, held for one request (``async with``): a reload lets it finish.

        The lookup and the hold happen with no ``await`` in between, so :meth:`load` cannot
        retire the runtime in the gap; a request that got it keeps it until its answer is back.

        Raises:
            NotFound, NotReady: as for :meth:`get_ready`.
        """
        runtime = await self.get_ready(name, version)
        with runtime.in_use():
            yield runtime

    def index(self) -> list[IndexEntry]:
        """Every version on disk (rescanned) or still serving, with its state.

        A rescan only changes what is *known*: a loaded version whose folder is gone keeps
        serving (listed ``ready`` with :data:`GONE` as its reason), and a new folder is loaded
        the first time a request names it, or made the default by :meth:`load`.

        Raises:
            NotReady: the models directory cannot be listed.
        """
        self._disk = self.scan()
        for key, old in list(self._runtimes.items()):  # a refused version whose folder is gone
            if key[1] not in self._disk.get(key[0], {}) and not old.ready and key not in self._loading:
                del self._runtimes[key]
        entries = []
        for name in self.names():
            on_disk = self._disk.get(name, {})
            for version in self.versions(name):
                rt = self._runtimes.get((name, version))
                state, reason = (rt.state.value, rt.reason) if rt else (ModelState.UNLOADED.value, "")
                entries.append(IndexEntry(name, version, state, reason if version in on_disk else GONE))
        return entries

    # -- repository control ---------------------------------------------------------------------
    async def load(self, name: str) -> ModelRuntime:
        """(Re)load the newest version of ``name`` on disk and make it the default version.

        The old default keeps answering until the new one is ready, also when its own folder is
        gone (a rollback: delete the newest folder, then load); if the new one is refused, the
        old one stays the default. Other loaded versions of ``name`` are retired: no new request
        gets them (one naming such a version loads it again if it is still on disk), and each
        closes once the requests that hold it (:meth:`serving`) have their answers, so a reload
        fails no request. Returns once they are closed.

        Raises:
            NotFound: ``name`` has no version folder in the models directory.
            NotReady: the models directory cannot be listed.
            ModelLoadError: the newest version was refused (the short reason is the message).
        """
        self._disk = self.scan()
        if name not in self._disk:
            serving = f"; version {self._default[name]} keeps serving" if name in self._default else ""
            raise NotFound(f"model {name!r} has no version folder in the model repository{serving}")
        version = max(self._disk[name])
        runtime = await self._load_runtime(self._make_runtime(name, version))
        if not runtime.ready:
            if (name, version) not in self._runtimes or name in self._unloaded:
                self._runtimes[(name, version)] = runtime  # keep the reason visible in index()
            raise ModelLoadError(runtime.reason)
        old = [rt for key, rt in self._runtimes.items() if key[0] == name]
        self._runtimes = {k: v for k, v in self._runtimes.items() if k[0] != name}
        self._runtimes[(name, version)] = runtime
        self._default[name] = version
        self._unloaded.discard(name)
        await asyncio.gather(*(self._retire(rt) for rt in old))
        self._set_ready_metric(runtime)
        return runtime

    async def unload(self, name: str) -> None:
        """Unload every version of ``name`` now; requests get 503 until :meth:`load` is called.

        Unlike the old versions a :meth:`load` replaces, these are not drained: requests queued
        or running on them fail with :class:`NotReady` (503), as if they had come a moment later.

        Raises:
            NotFound: ``name`` is not a model on disk or in memory.
        """
        if name not in self.names():
            raise NotFound(f"model {name!r} not found; available: {self.names()}")
        self._unloaded.add(name)
        for key in [k for k in self._runtimes if k[0] == name]:
            await self._close(self._runtimes[key])  # kept (UNLOADED) so index and listing know it

    # -- internals ------------------------------------------------------------------------------
    def _ready_at(self, name: str, version: int) -> bool:
        runtime = self._runtimes.get((name, version))
        return runtime is not None and runtime.ready

    def _make_runtime(self, name: str, version: int) -> ModelRuntime:
        observe = self.metrics.batch_observer(name) if self.metrics else None
        path = self._disk[name][version]
        return ModelRuntime.from_directory(path, name, version, self.settings, self.providers, observe)

    async def _load_version(self, name: str, version: int) -> ModelRuntime:
        """Create and load one version once, however many requests ask for it at the same time."""
        key = (name, version)
        task = self._loading.get(key)
        if task is None:
            runtime = self._make_runtime(name, version)
            self._runtimes[key] = runtime
            task = asyncio.ensure_future(self._load_runtime(runtime))
            self._loading[key] = task
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(task)

    async def _load_runtime(self, runtime: ModelRuntime) -> ModelRuntime:
        started = time.perf_counter()
        runtime.state = ModelState.LOADING
        try:
            await asyncio.to_thread(runtime.load)
        except ModelLoadError:
            name, version, path, detail = runtime.name, runtime.version, runtime.path, runtime.detail
            log.error("refused model %s version %d (%s): %s", name, version, path, detail)
            if self.metrics:
                self.metrics.load_failures.labels(runtime.name).inc()
        else:
            where, ms = " on CUDA" if runtime.provider == CUDA else "", (time.perf_counter() - started) * 1e3
            name, version, provider = runtime.name, runtime.version, runtime.provider
            log.info("loaded model %s version %d%s in %.0f ms (%s)", name, version, where, ms, provider)
        self._set_ready_metric(runtime)
        return runtime

    async def _retire(self, runtime: ModelRuntime) -> None:
        """Close a runtime that is no longer handed out, once its last request has its answer."""
        await runtime.drain()
        await self._close(runtime)

    async def _close(self, runtime: ModelRuntime) -> None:
        await runtime.close()
        was_ready = runtime.ready
        runtime.unload()
        self._set_ready_metric(runtime)
        if was_ready:
            log.info("unloaded model %s version %d", runtime.name, runtime.version)

    def _set_ready_metric(self, runtime: ModelRuntime) -> None:
        if self.metrics is None:
            return
        current = self._runtimes.get((runtime.name, runtime.version))
        ready = current.ready if current is not None else runtime.ready
        self.metrics.model_ready.labels(runtime.name, str(runtime.version)).set(int(ready))
