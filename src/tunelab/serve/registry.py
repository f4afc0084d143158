"""Which models the server answers for, their loaded versions, and the switch between versions.

A name maps to versions; one is active. Requests take a version with ``use()``, which counts
them in flight for as long as they hold it. Loading a version happens in a worker thread while
the current one keeps serving; activating it is a pointer swap (no ``await`` between reading and
writing, so no request sees a half-switched model). A version is unloaded only by ``retire()``,
which removes it from the map at once and closes its batcher after its last request finishes:
no request is ever dropped by a switch. Older versions stay loaded (and pinnable) until retired.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError
from tunelab.serve.batcher import MicroBatcher

log = logging.getLogger(__name__)

# A served name is a segment of its URLs (/v1/models/{name}/predict, /v1/apps/support/{name}/...):
# one a client can write without percent-encoding, and never "." or "..".
SERVED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class ModelNotServedError(TunelabError):
    """An unknown model name or version (HTTP 404)."""

    def __init__(self, message: str, *, code: str = "unknown_model") -> None:
        super().__init__(message)
        self.code = code


class ModelStateError(TunelabError):
    """A version operation that conflicts with the current state (HTTP 409)."""

    code = "conflict"


@dataclass
class ModelVersion:
    """One loaded version: its predictor, its batcher, and how many requests hold it."""

    name: str
    version: str
    source: str
    predictor: Any
    batcher: MicroBatcher
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    in_flight: int = 0
    retired: bool = False
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def format(self) -> str:
        return str(getattr(self.predictor, "format", "torch"))

    @property
    def task(self) -> str:
        """The task's registered name (``single_label``, ...), as responses carry it."""
        return str(self.predictor.task_name)

    @property
    def result_schema(self) -> Any:
        """The pydantic model of one result of this version's task (``Task.result_schema``)."""
        return self.predictor.task.result_schema

    @property
    def labels(self) -> int:
        return len(self.predictor.labels.names)

    @property
    def pair_column(self) -> str | None:
        """The run's ``data.text_pair_column`` for a text-pair model (it takes ``pairs``), else None."""
        return getattr(self.predictor, "text_pair_column", None)

    @property
    def run_name(self) -> str:
        run = getattr(self.predictor, "run", None)
        return run.name if run is not None else Path(self.source).name


BatcherFactory = Callable[[str, str, Any], MicroBatcher]


class ModelRegistry:
    """Name -> versions -> (predictor, batcher, in-flight count), with an active version per name.

    Args:
        make_batcher: builds the batcher of a (name, version, predictor).
        loader: turns a folder into a predictor (``tunelab.load``); runs in a worker thread.
    """

    def __init__(self, make_batcher: BatcherFactory, loader: Callable[[str], Any] | None = None) -> None:
        self._make_batcher = make_batcher
        self._loader = loader
        self._versions: dict[str, dict[str, ModelVersion]] = {}
        self._active: dict[str, str] = {}
        self._loading: set[tuple[str, str]] = set()  # (name, version) being loaded: taken, not yet added
        # version changes one at a time (a load takes it to name and to add); requests never take it
        self._lock = asyncio.Lock()

    # -- reading -----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._versions)

    def active(self, name: str) -> str:
        return self._active[name]

    def versions(self, name: str) -> list[ModelVersion]:
        return sorted(self._versions.get(name, {}).values(), key=lambda v: _version_key(v.version))

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """The pinned or the active version; unknown names and versions name what is served."""
        versions = self._versions.get(name)
        if not versions:
            served = ", ".join(self.names()) or "none"
            raise ModelNotServedError(f"model {name!r} is not served (served: {served})")
        key = version if version is not None else self._active[name]
        if key not in versions:
            known = ", ".join(v.version for v in self.versions(name))
            raise ModelNotServedError(
                f"model {name!r} has no version {key!r} (loaded: {known})", code="unknown_version"
            )
        return versions[key]

    @asynccontextmanager
    async def use(self, name: str, version: str | None = None) -> AsyncIterator[ModelVersion]:
        """Hold a version for one request; a retired version closes when its last holder leaves."""
        mv = self.get(name, version)  # no await between looking up and counting: atomic on the loop
        mv.in_flight += 1
        try:
            yield mv
        finally:
            mv.in_flight -= 1
            if mv.in_flight == 0 and mv.retired:
                mv.drained.set()

    # -- changing ----------------------------------------------------------------------------------

    def add(
        self, name: str, version: str, predictor: Any, *, source: str, activate: bool = True
    ) -> ModelVersion:
        """Register an already loaded predictor (the CLI loads before binding the port)."""
        if version in self._versions.get(name, {}):
            raise ModelStateError(
                f"model {name!r} already has version {version!r}; retire it or pick another"
            )
        mv = ModelVersion(name, version, source, predictor, self._make_batcher(name, version, predictor))
        self._versions.setdefault(name, {})[version] = mv
        if activate or name not in self._active:
            self.set_active(name, version)
        return mv

    def next_version(self, name: str) -> str:
        taken = [*self._versions.get(name, {}), *(v for n, v in self._loading if n == name)]
        numbers = [int(v) for v in taken if v.isdigit()]
        return str(max(numbers, default=0) + 1)

    async def load(
        self, name: str, path: str, *, version: str | None = None, activate: bool = True
    ) -> ModelVersion:
        """Load ``path`` in a worker thread (serving goes on meanwhile), then add and maybe activate it.

        The lock is held to take the version name and to add the loaded version, not during the
        load itself (seconds to minutes for a real model): an ``activate`` or ``retire`` meanwhile,
        a rollback of another model say, went through only once the unrelated load had finished.
        """
        if self._loader is None:
            raise ModelStateError("this server cannot load models at run time")
        async with self._lock:
            version = version or self.next_version(name)
            if version in self._versions.get(name, {}) or (name, version) in self._loading:
                raise ModelStateError(
                    f"model {name!r} already has version {version!r}; retire it or pick another"
                )
            self._loading.add((name, version))
        try:
            predictor = await asyncio.to_thread(self._loader, path)
            async with self._lock:
                mv = self.add(name, version, predictor, source=str(path), activate=activate)
                mv.batcher.start()
        finally:
            self._loading.discard((name, version))
        log.info("loaded %s@%s from %s%s", name, version, path, " (active)" if activate else "")
        return mv

    def set_active(self, name: str, version: str) -> ModelVersion:
        """Point unpinned requests at ``version``: one assignment, so a switch is atomic."""
        mv = self.get(name, version)
        previous, self._active[name] = self._active.get(name), version
        if previous is not None and previous != version:
            log.info("switched %s from version %s to %s", name, previous, version)
        return mv

    async def activate(self, name: str, version: str) -> ModelVersion:
        async with self._lock:
            return self.set_active(name, version)

    async def retire(self, name: str, version: str) -> ModelVersion:
        """Unload a version that is not active: gone for new requests now, closed once drained."""
        async with self._lock:
            mv = self.get(name, version)
            if self._active.get(name) == version:
                raise ModelStateError(f"{name}@{version} is active; activate another version first")
            del self._versions[name][version]
            mv.retired = True
            if mv.in_flight == 0:
                mv.drained.set()
        await mv.drained.wait()
        await mv.batcher.close()
        log.info("retired %s@%s", name, version)
        return mv

    def start(self) -> None:
        for versions in self._versions.values():
            for mv in versions.values():
                mv.batcher.start()

    async def close(self) -> None:
        for versions in self._versions.values():
            for mv in versions.values():
                await mv.batcher.close()


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


__all__ = ["ModelNotServedError", "ModelRegistry", "ModelStateError", "ModelVersion"]
