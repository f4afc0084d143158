"""Many adapters, one base: adapter runs on the same base model share one copy of it in the server.

A service that hosts one adapter per customer would otherwise hold a whole model per customer
(MiniLM: ~90 MB of weights each; a LoRA adapter and its head: ~100 KB). ``BasePool.load`` opens a
run and asks its method whether its adapters can share a base (``Method.sharing``; the server
never looks at method names). Those that can are attached to one *host* per base (same method,
task, pooling, base folder and recorded weights fingerprint): the base is loaded (and checked
against the run's fingerprint) for the first adapter only, so attaching another takes as long as
reading its adapter and tokenizer. Every other run (full fine-tuning, an export) loads whole, as
``tunelab.load`` does.

Requests for the adapters of one host go through one ``MicroBatcher`` per *group*: where the
method mixes adapters in one forward (peft LoRA's ``adapter_names``) a group is every adapter whose
head has the same shape (peft stacks the heads' outputs), else one adapter. Each request is encoded
and decoded by its own adapter's predictor (its tokenizer settings, labels and threshold); only the
forward is shared. A host is not thread-safe (peft selects adapters per call with hooks or state),
so its forwards, attaches and detaches take its lock.

Locks: the pool's lock is held only for dictionary updates (never while loading a base, attaching,
running a forward or waiting for another lock), so the event loop may take it: an admin loading a
large base must not stall other clients' requests, retires or health checks. A host's lock may be
held for a whole forward, so only worker threads wait for it; an adapter's batching group is worked
out when it is loaded (in the loader's thread), not when the server asks for its batcher.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import threading
import weakref
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.data.encoding import Encoded, collate, inference_batches
from tunelab.errors import RunError, TunelabError
from tunelab.serve.batcher import BatcherClosed, BatchOutput, MicroBatcher

BatcherMaker = Callable[[Any, str], MicroBatcher]  # (group runner, name) -> batcher


class AdapterBackend:
    """A ``Predictor`` backend that runs one adapter of a shared host (``logits`` for one adapter)."""

    name = "torch"  # what the API reports: a trained run's adapter, served unmerged

    def __init__(self, host: SharedBase, adapter: str, group: Any) -> None:
        self.host = host
        self.adapter = adapter
        self.group = group  # its batching group (``SharedBase.group_of``), fixed when it was attached

    def logits(self, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
        return self.host.logits([enc], [self.adapter], batch_size=batch_size)[0]


def shared_backend(predictor: Any) -> AdapterBackend | None:
    """The adapter backend of a predictor ``BasePool.load`` attached to a shared base, else None."""
    backend = getattr(predictor, "backend", None)
    return backend if isinstance(backend, AdapterBackend) else None


class SharedBase:
    """One loaded base model with adapters attached, and the batchers of its adapter groups."""

    def __init__(self, key: tuple[Any, ...], method: Any, pool: BasePool) -> None:
        self.key = key
        self.method = method
        self.pool = pool
        self.model: Any = None  # the host ``Method.sharing.attach`` returned
        self.lock = threading.Lock()
        self.adapters: dict[str, Any] = {}  # adapter name -> its predictor
        self.attached: set[str] = set()  # adapters loaded into ``model``
        self.groups: dict[Any, MicroBatcher] = {}  # group key -> batcher
        self.users: dict[Any, int] = {}  # group key -> open facades
        self.dropped = False  # its last adapter went: a loader that found it must look again

    @property
    def sharing(self) -> Any:
        return self.method.sharing

    def group_of(self, adapter: str) -> Any:
        """Adapters of one group may share a forward: equal signature where the method mixes."""
        with self.lock:
            return self._group_locked(adapter)

    def _group_locked(self, adapter: str) -> Any:
        """``group_of`` for a caller that holds ``self.lock`` (the loader, right after attaching)."""
        if not self.sharing.mixed_batches:
            return ("alone", adapter)
        return ("mixed", self.sharing.signature(self.model, adapter))

    def logits(self, encs: list[Encoded], adapters: list[str], *, batch_size: int = 64) -> list[np.ndarray]:
        """One pass over the examples of all ``encs``, those of ``encs[i]`` through ``adapters[i]``.

        Written here rather than with ``inference.forward.batched_outputs``: each forward needs the
        adapter of each of its rows, which that helper's ``fn(**batch)`` does not get.
        """
        sizes = [len(e) for e in encs]
        if not sum(sizes):
            return [np.zeros((0, 0), dtype=np.float32) for _ in encs]
        with_types = all(e.token_type_ids is not None for e in encs)
        combined = Encoded(
            input_ids=[ids for e in encs for ids in e.input_ids],
            token_type_ids=[t for e in encs for t in e.token_type_ids or ()] if with_types else None,
            labels=None,
            pad_id=encs[0].pad_id,  # padded positions are masked out: any pad id gives the same logits
        )
        rows = [name for e, name in zip(encs, adapters, strict=True) for _ in range(len(e))]
        chunks: list[np.ndarray] = []
        order: list[int] = []
        with self.lock:
            for idx in inference_batches(combined.lengths, batch_size):
                out = self.sharing.forward(self.model, collate(combined, idx), [rows[i] for i in idx])
                chunks.append(out.logits.float().numpy())
                order.extend(idx)
        if chunks[0].ndim == 3:  # per-token logits: pad every batch to the longest example
            width = max(c.shape[1] for c in chunks)
            chunks = [np.pad(c, ((0, 0), (0, width - c.shape[1]), (0, 0))) for c in chunks]
        stacked = np.concatenate(chunks)
        out_rows = np.empty_like(stacked)
        out_rows[np.asarray(order)] = stacked
        bounds = np.cumsum([0, *sizes])
        return [out_rows[bounds[i] : bounds[i + 1]] for i in range(len(encs))]

    def predict_routed(
        self, parts: list[tuple[Any, list[str], list[str] | None]], *, top_k: int, batch_size: int
    ) -> list[tuple[list[dict[str, Any]], list[int]]]:
        """``(predictor, texts, pairs)`` per request -> ``(results, tokens per text)`` per request.

        Each request is encoded and decoded by its own adapter's predictor; the forward is shared.
        """
        encs = [p.encode(texts) if pairs is None else p.encode(texts, pairs) for p, texts, pairs in parts]
        names = [shared_backend(p).adapter for p, _, _ in parts]  # type: ignore[union-attr]
        logits = self.logits(encs, names, batch_size=batch_size)
        out = []
        for (predictor, texts, _), enc, rows in zip(parts, encs, logits, strict=True):
            results = (
                predictor.task.decode(
                    rows, enc, texts, predictor.labels, threshold=predictor.threshold, top_k=top_k
                )
                if len(enc)
                else []
            )
            out.append((results, list(enc.text_lengths)))
        return out


class AdapterBatcher:
    """One model version's face of its group's batcher: what the registry starts, submits to, closes.

    Closing it detaches the adapter; the group's batcher closes with its last adapter, and the host
    (the base weights) is dropped with its last adapter.
    """

    def __init__(
        self, pool: BasePool, predictor: Any, group: Any, batcher: MicroBatcher, on_batch: Any
    ) -> None:
        self.pool = pool
        self.predictor = predictor
        self.group = group
        self.batcher = batcher
        self.on_batch = on_batch
        self._closed = False

    def start(self) -> None:
        self.batcher.start()

    async def submit(
        self, texts: list[str], *, top_k: int = 3, pairs: list[str] | None = None, lane: Hashable = None
    ) -> BatchOutput:
        if self._closed:
            raise BatcherClosed(f"{self.batcher.name}: this adapter is unloaded")
        return await self.batcher.submit(
            texts, top_k=top_k, pairs=pairs, route=self.predictor, observe=self.on_batch, lane=lane
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.pool.release(self)


class BasePool:
    """Loads runs for a server: adapters that can share a base attach to one host per base.

    Args:
        load_whole: how a run that cannot share is loaded (default ``tunelab.load``).
    """

    def __init__(self, load_whole: Callable[[str], Any] | None = None) -> None:
        if load_whole is None:
            from tunelab.inference import load as load_whole
        self._load_whole = load_whole
        self._hosts: dict[tuple[Any, ...], SharedBase] = {}
        self._lock = threading.Lock()  # dictionary updates only (see the module docstring)
        self._loading: dict[tuple[Any, ...], threading.Event] = {}  # bases being loaded, by host key
        self._names = itertools.count()
        # tokenizers in use, by their files and truncation; dropped with the last adapter using one
        self._tokenizers: weakref.WeakValueDictionary[tuple[Any, ...], Any] = weakref.WeakValueDictionary()

    def hosts(self) -> list[SharedBase]:
        return list(self._hosts.values())

    def load(self, path: str | Path) -> Any:
        """A ``Predictor`` for the run or artifact at ``path``; adapters attach to a shared base."""
        from tunelab.inference.backends import LoadContext, model_loader, run_method
        from tunelab.inference.predictor import read_run_files
        from tunelab.runs import find_run

        try:
            run = find_run(path)
        except TunelabError:  # not a finished run: the whole loader says why, in its own words
            return self._load_whole(str(path))
        # Read as Predictor.load reads them: a damaged run.json or config.json is one RunError
        # naming the file (a 400 for an admin load), never a JSONDecodeError or a run.json read
        # as {} (no base fingerprint check, a multi-label run's tuned threshold back to 0.5).
        # (a labels.json of another run, a bad threshold: a 400, before the base is loaded or attached to)
        summary, config, labels, threshold = read_run_files(run)
        if summary.get("format", "torch") != "torch":
            return self._load_whole(str(path))  # an export: a whole model in its own format
        ctx = LoadContext(run=run, config=config, labels=labels, summary=summary)
        method = run_method(ctx)
        if not method.shares_base:
            return self._load_whole(str(path))
        key = self._host_key(ctx, method)
        adapter = f"adapter{next(self._names)}"
        host, group = self._attach(key, method, run, model_loader(ctx), adapter)
        return self._predictor(host, adapter, group, run, config, labels, threshold)

    def _attach(
        self, key: tuple[Any, ...], method: Any, run: Any, loader: Any, adapter: str
    ) -> tuple[SharedBase, Any]:
        """Attach ``adapter`` to the host of ``key``, loading that base first if no host has it.

        The base is loaded and the adapter attached without the pool's lock (a large base takes
        seconds); the host is published under it afterwards. A second loader of a base that is
        being loaded waits for the first and attaches to its host: the base is never loaded twice.
        Returns ``(host, the adapter's batching group)``.
        """
        while True:
            with self._lock:
                host = self._hosts.get(key)
                loading = self._loading.get(key) if host is None else None
                if host is None and loading is None:
                    self._loading[key] = threading.Event()  # this thread loads the base
            if loading is not None:
                loading.wait()  # another thread loads this base; then attach to its host (or load)
                continue
            if host is None:
                return self._attach_new(key, method, run, loader, adapter)
            with host.lock:  # a forward on the host waits (peft layers are being added)
                if host.dropped:  # its last adapter was detached meanwhile: start again
                    continue
                self._call_attach(host.model, method, run, loader, adapter)
                host.attached.add(adapter)
                return host, host._group_locked(adapter)

    def _attach_new(
        self, key: tuple[Any, ...], method: Any, run: Any, loader: Any, adapter: str
    ) -> tuple[SharedBase, Any]:
        """Load the base of ``key`` with ``adapter`` on it (no lock held), then publish its host."""
        try:
            host = SharedBase(key, method, self)
            host.model = self._call_attach(None, method, run, loader, adapter)
            host.attached.add(adapter)
            group = host._group_locked(adapter)  # nobody else sees this host yet
            with self._lock:
                self._hosts[key] = host
            return host, group
        finally:
            with self._lock:
                self._loading.pop(key).set()

    @staticmethod
    def _call_attach(model: Any, method: Any, run: Any, loader: Any, adapter: str) -> Any:
        """``method.sharing.attach``, its errors in one line (the caller holds what it needs)."""
        try:
            return method.sharing.attach(model, run.weights, loader, adapter)
        except TunelabError:
            raise
        except Exception as exc:  # a damaged adapter folder: whatever peft or safetensors say
            reason = (str(exc).strip().splitlines() or [""])[0]
            raise RunError(
                f"{run.root}: cannot attach its adapter ({type(exc).__name__}: {reason}); train the run again"
            ) from None

    def _predictor(
        self,
        host: SharedBase,
        adapter: str,
        group: Any,
        run: Any,
        config: Any,
        labels: Any,
        threshold: float | None,
    ) -> Any:
        from tunelab.inference import Predictor
        from tunelab.models import load_tokenizer

        try:
            tokenizer = self._tokenizer(run.tokenizer, labels.task, config, load_tokenizer)
        except BaseException:
            self._detach(host, adapter)
            raise
        predictor = Predictor(
            AdapterBackend(host, adapter, group),
            tokenizer,
            labels,
            config=config,
            threshold=threshold,
            run=run,
        )
        host.adapters[adapter] = predictor
        return predictor

    def _tokenizer(self, folder: Path, task: str, config: Any, load: Callable[[Path], Any]) -> Any:
        """The run's tokenizer, shared by the adapters whose tokenizer files are the same.

        A fast tokenizer takes ~10 MB, a LoRA adapter of MiniLM ~0.4 MB: unshared, the tokenizers
        would be most of an adapter's cost. Shared only between runs that encode the same way:
        the same task (each task calls the tokenizer with its own arguments: token classification
        asks for overflowing windows with a stride, classification for plain truncation) and the
        same ``max_length`` and ``stride``. A call with other truncation arguments resets the
        tokenizer's state, which is not safe while another batcher's thread encodes with it.
        """
        digest = hashlib.sha256()
        for file in sorted(p for p in Path(folder).iterdir() if p.is_file()):
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
        key = (digest.hexdigest(), task, config.model.max_length, config.model.stride)
        with self._lock:
            tokenizer = self._tokenizers.get(key)
        if tokenizer is None:
            tokenizer = load(folder)
            with self._lock:
                tokenizer = self._tokenizers.setdefault(key, tokenizer)
        return tokenizer

    @staticmethod
    def _host_key(ctx: Any, method: Any) -> tuple[Any, ...]:
        """Runs with equal keys load the same base model: method, task, pooling, base folder, weights,
        and the modules the adapter saves whole (peft's ``modules_to_save``).

        The last because once one adapter on a host has its own copy of a module (the pooler of a
        ``train_pooler`` run), peft looks up every adapter's copy of it by name: an adapter without
        one failed each forward with a KeyError, so runs differing only in ``train_pooler`` load
        on separate hosts.
        """
        from tunelab.inference.backends import base_folder

        # as loading the run finds its base (a relative local base: the folder recorded at training)
        source = Path(base_folder(ctx)).resolve()
        pooling = ctx.summary.get("pooling") or ctx.config.model.pooling
        return (
            method.name,
            ctx.labels.task,
            pooling,
            str(source),
            ctx.summary.get("base_fingerprint"),
            _saved_whole(Path(ctx.run.weights)),
        )

    def batcher(
        self, predictor: Any, make: BatcherMaker, *, on_batch: Callable[[int], None] | None = None
    ) -> AdapterBatcher:
        """The batcher a model version of an attached adapter submits to (its group's, shared)."""
        backend = shared_backend(predictor)
        if backend is None:
            raise ValueError("not an adapter attached by this pool")
        host, group = backend.host, backend.group  # no host lock: this runs on the event loop
        with self._lock:
            if group not in host.groups:
                host.groups[group] = make(host, f"{host.key[0]}-base{id(host) % 10000}")
            host.users[group] = host.users.get(group, 0) + 1
            shared = host.groups[group]
        return AdapterBatcher(self, predictor, group, shared, on_batch)

    async def release(self, face: AdapterBatcher) -> None:
        """A version was retired (or the server stops): detach its adapter; close what it was last in."""
        backend = shared_backend(face.predictor)
        host = backend.host  # type: ignore[union-attr]
        with self._lock:
            host.users[face.group] -= 1
            last_in_group = host.users[face.group] == 0
            if last_in_group:
                del host.users[face.group]
                host.groups.pop(face.group, None)
        if last_in_group:
            await face.batcher.close()
        await asyncio.to_thread(self._detach, host, backend.adapter)  # type: ignore[union-attr]

    def _detach(self, host: SharedBase, adapter: str) -> None:
        """Unload ``adapter``; the host's last adapter takes the host (the base weights) with it.

        Takes the host's lock (it waits for a forward), and the pool's lock inside it only to drop
        the host: the pool's lock is never held while waiting for a host's.
        """
        with host.lock:
            host.adapters.pop(adapter, None)
            if adapter not in host.attached:
                return
            host.attached.discard(adapter)
            if host.attached:
                host.sharing.detach(host.model, adapter)
                return
            host.model = None
            host.dropped = True
            with self._lock:
                if self._hosts.get(host.key) is host:
                    del self._hosts[host.key]


__all__ = ["AdapterBackend", "AdapterBatcher", "BasePool", "SharedBase", "shared_backend"]


def _saved_whole(weights: Path) -> tuple[str, ...]:
    """The modules an adapter saves whole (``modules_to_save`` in its ``adapter_config.json``),
    sorted; none for a config that cannot be read (attaching the adapter then says why)."""
    try:
        config = json.loads((weights / "adapter_config.json").read_text(encoding="utf-8"))
        saved = config.get("modules_to_save")
    except (OSError, ValueError, AttributeError):
        return ()
    if isinstance(saved, str):
        saved = [saved]
    if not isinstance(saved, list | tuple | set):
        return ()
    return tuple(sorted(str(m) for m in saved))
