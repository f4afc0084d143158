"""``Recommender``: a built recommender folder, loaded; rank items for a user, add items, record events.

A recommender folder (``recs/<name>/``)::

    recommender.json   config, counts, build time, feature names, the reference times
    build_report.json  what the build read, dropped, fitted and how long each stage took
    items.parquet      item_id, text (catalog order)
    history.parquet    the interactions the build learned from (user_id, item_id, time, positive)
    vectors.npy        unit-length item vectors (N, H); ann.faiss: their HNSW index (large catalogs)
    encoder/           the fine-tuned sentence-transformers bi-encoder
    cf.npz             implicit ALS/BPR user and item factors (EASE: its factors)
    cf2.npz            (cf.second) the second CF model's
    ranker.skops       the scikit-learn ranker (skops: loaded without unpickling, types allow-listed)
    cross_encoder/     (model.cross_encoder) the sentence-transformers CrossEncoder
    cross_calibration.skops  (model.cross_encoder) its blend with the ranker's score, how many it re-scores
    live.sqlite        items added and events recorded since (created empty by build; WAL mode from
                       the first write, so a reader without write access loads a fresh build)

Ranking a known user scores every item (a vectorised feature matrix and one ranker call) up to
``index.full_rank_max_items`` (5,000); past that, candidates come from the item index (nearest to
the user's query and to their profile), CF's top items (each CF model's), and the popular and the
newly added ones, ~1,000-1,300 in all, and only those are scored. ``score_items`` always scores
what it is given (the benchmark's full ranking); with the cross-encoder stage it re-scores the best
of *those*, so an item's score depends on what else is in the call (give the whole candidate set at
once). An unknown user (or one without a positive yet) gets the popular-and-fresh list, flagged
``fallback``. All public methods take one lock: one object serves every thread of a server, and
each call first applies what other processes wrote to ``live.sqlite``.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import sqlite3
import threading
import time as _time
import zipfile
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors import SafetensorError

from tunelab.apps.recommend import live as live_store
from tunelab.apps.recommend.cf import SECOND_FILE, CFModel
from tunelab.apps.recommend.config import RecommendConfig
from tunelab.apps.recommend.crossencoder import CrossStage
from tunelab.apps.recommend.data import compose_text, id_text, values_of
from tunelab.apps.recommend.features import MAX_PROFILE, ItemStats, UserContext, compute, moments, profile_of
from tunelab.apps.recommend.index import VECTORS, ItemIndex
from tunelab.apps.recommend.live import FILE as LIVE_FILE
from tunelab.apps.recommend.live import ItemExistsError, LiveStore, folder_identity, is_locked
from tunelab.apps.recommend.ranker import Ranker
from tunelab.apps.recommend.textmodel import TextModel, query_text
from tunelab.atomic import path_exists
from tunelab.data.scripts import has_visible_text
from tunelab.errors import ConfigError, DataError, RunError, first_line
from tunelab.serve.inputs import check_epoch_number

META = "recommender.json"
REPORT = "build_report.json"
ITEMS = "items.parquet"
HISTORY = "history.parquet"
#: The largest k a ranking may ask for.
MAX_K = 1000
#: How many of the user's items a recommendation names as its reason.
REASONS = 3
#: The fallback's "popular now": the users' first positives on an item among the most recent
#: TREND_SHARE of them (at least TREND_MIN), so it follows what is liked lately whatever the time
#: scale of the data.
TREND_SHARE, TREND_MIN = 0.1, 1000
#: The fallback gives one place in FRESH_EVERY (the 5th, 10th, ...) to the items added since the
#: build, newest first: ranked by popularity alone a new item, with no positive yet, came last.
FRESH_EVERY = 5
_MAX_ID = 200
#: The most users whose ranking context is kept (least recently used dropped first). A server
#: ranks whoever asks: unbounded, the cache grew with every user ever ranked. A context is the
#: query, the profile, the recent positives' indices and the CF vectors: ~4 KB at 384 dims, so
#: ~40 MB at this bound, and a returning user past it costs one query encoding.
CONTEXT_CACHE = 10_000


@dataclass(frozen=True)
class RankedItem:
    """One recommended item: its score, its text, and the user's items that matched it most."""

    item_id: str
    score: float
    text: str
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ranking:
    """A user's top items, best first; ``fallback`` when they are the popular-and-fresh list."""

    user_id: str
    items: list[RankedItem]
    fallback: bool = False
    fallback_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _History:
    """One user's interactions in time order, as catalog indices."""

    times: list[float] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    positive: list[bool] = field(default_factory=list)
    # the items with a positive: a live event asks whether the user liked its item before (counted
    # once per user, as _item_stats counts them); scanning the history for it was quadratic in a
    # user's history (20,000 positives by one user: 2 s, replayed at every load)
    liked: set[int] = field(default_factory=set)
    live_positive: bool = False  # a recorded positive since the build: refold the CF vector
    version: int = 0

    def add(self, t: float, item: int, positive: bool) -> None:
        at = bisect.bisect_right(self.times, t)
        self.times.insert(at, t)
        self.items.insert(at, item)
        self.positive.insert(at, positive)
        if positive:
            self.liked.add(item)
        self.version += 1

    def positives(self) -> list[int]:
        """The items the user engaged with positively, each once, ordered by their latest positive.

        A repeated positive (three events on one item) counted three times: the query repeated
        that item's text and pushed the rest of the user's taste out of it, and reasons named it
        three times.
        """
        latest: dict[int, None] = {}
        for item, positive in zip(self.items, self.positive, strict=True):
            if positive:
                latest.pop(item, None)
                latest[item] = None
        return list(latest)


class Recommender:
    """A loaded recommender folder (see the module docstring). Build one with ``build``."""

    def __init__(
        self,
        *,
        folder: Path | None,
        config: RecommendConfig,
        meta: dict[str, Any],
        text: TextModel,
        items: pd.DataFrame,
        index: ItemIndex,
        cf: CFModel,
        history: pd.DataFrame,
        ranker: Ranker | None,
        cross: CrossStage | None = None,
        cf2: CFModel | None = None,
    ) -> None:
        self.folder = folder
        self.cf2 = cf2
        self.cross = cross
        self.config = config
        self.meta = meta
        self.text = text
        self.index = index
        self.cf = cf
        self.ranker = ranker
        self._lock = threading.RLock()
        self._ids: list[str] = items["item_id"].astype(str).tolist()
        self._texts: list[str] = items["text"].astype(str).tolist()
        self.index_of: dict[str, int] = {i: n for n, i in enumerate(self._ids)}
        self._has_cf = np.zeros(len(self._ids), dtype=bool)
        self._has_cf[: cf.n_items] = cf.has_cf
        self._added = np.full(len(self._ids), np.nan)
        self._stats = _item_stats(history, self.index_of, len(self._ids), meta.get("age_never"))
        self.meta.setdefault("age_never", self._stats.age_never)
        self._users: dict[str, _History] = {}
        for user, t, item, pos in zip(
            history["user_id"].astype(str),
            history["time"].to_numpy(dtype=np.float64),
            history["item_id"].astype(str).map(self.index_of).to_numpy(),
            history["positive"].to_numpy(dtype=bool),
            strict=True,
        ):
            h = self._users.setdefault(user, _History())
            h.times.append(float(t))
            h.items.append(int(item))
            h.positive.append(bool(pos))
        for h in self._users.values():  # build history comes sorted by time; keep it so if not
            order = np.argsort(h.times, kind="stable")
            h.times = [h.times[i] for i in order]
            h.items = [h.items[i] for i in order]
            h.positive = [h.positive[i] for i in order]
            h.liked = {i for i, p in zip(h.items, h.positive, strict=True) if p}
        self._data_end = self._stats.ref_time
        self._clock_gap = max(0.0, _built_time(meta) - self._data_end)
        # user -> (history version, catalog size, context), least recently used first (bounded by
        # CONTEXT_CACHE): the text score's moments are taken over the whole catalog, so a grown
        # catalog rebuilds the context (not the query's encoding).
        self._cache: OrderedDict[str, tuple[int, int, UserContext]] = OrderedDict()
        self._live = LiveStore(folder) if folder is not None else None
        self._seq_items = self._seq_events = 0
        self._n_added = self._n_events = 0

    # -- loading ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, folder: str | Path) -> Recommender:
        """Open a recommender folder written by ``build``, with its live items and events.

        Raises:
            ConfigError: not a recommender folder, or a damaged one.
            RunError: its ``live.sqlite`` stayed locked by another process.
        """
        root = Path(folder)
        # path_exists: a name too long for the OS (ENAMETOOLONG) is no such folder, not "unexpected OSError"
        if not (path_exists(root / META) and (root / META).is_file()):
            what = "no such folder" if not path_exists(root) else f"not a recommender folder (no {META})"
            raise ConfigError(f"{root}: {what}; build one with tunelab app recommend build")
        # the folder as the reads below begin: its live rows are read only while it stays this one
        identity = folder_identity(root)
        try:
            meta = json.loads((root / META).read_text(encoding="utf-8"))
            config = RecommendConfig.model_validate(meta["config"])
            text = TextModel.load(root, max_length=config.model.max_length, device=config.model.device)
            items = _stored_ids(pd.read_parquet(root / ITEMS), ["item_id"], root / ITEMS)
            index = ItemIndex.load(root)
            _check_vectors(index, len(items))
            rec = cls(
                folder=root,
                config=config,
                meta=meta,
                text=text,
                items=items,
                index=index,
                cf=CFModel.load(root, config.cf.model_dump()),
                cf2=(
                    CFModel.load(root, config.cf.second.model_dump(), file=SECOND_FILE)
                    if config.cf.second is not None
                    else None
                ),
                history=_stored_ids(pd.read_parquet(root / HISTORY), ["user_id", "item_id"], root / HISTORY),
                ranker=Ranker.load(root, meta.get("ranker")),
                cross=CrossStage.load(
                    root,
                    max_length=config.model.max_length,
                    device=config.model.device,
                    report=meta.get("cross_encoder"),
                ),
            )
        except (
            OSError, KeyError, ValueError, TypeError, RuntimeError, EOFError, zipfile.BadZipFile,
            SafetensorError,  # a truncated encoder/model.safetensors
        ) as exc:  # fmt: skip
            raise ConfigError(
                f"{root}: a damaged recommender folder ({type(exc).__name__}: {first_line(exc)}); "
                f"{live_store.REBUILD}"
            ) from None
        if rec._live is not None and rec._live._loaded != identity:
            # replaced (build --overwrite) while its files were read: the index may be the old
            # folder's and live.sqlite the new one's
            raise ConfigError(f"{root} was rebuilt while it was being loaded; load it again")
        try:
            rec._sync()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise _unreadable_live(root, exc) from None
            # another process held it past the timeout: the file is fine, so not "move it away"
            raise RunError(
                f"{root / LIVE_FILE}: locked by another process for over {live_store.TIMEOUT_S:g} s ({exc}); "
                "load it again once that process has finished writing"
            ) from None
        except sqlite3.DatabaseError as exc:
            raise _unreadable_live(root, exc) from None
        return rec

    def close(self) -> None:
        """Close the folder's ``live.sqlite`` connection (the server calls this at shutdown, so the
        WAL is checkpointed and the file released). Safe to call twice; a later call that reads or
        writes live rows opens it again."""
        if self._live is not None:
            self._live.close()

    def save(self, folder: str | Path) -> None:
        """Write the built state (not the live rows) into ``folder`` (``build`` renames it into place)."""
        root = Path(folder)
        n = len(self._ids)
        pd.DataFrame({"item_id": self._ids, "text": self._texts}).to_parquet(root / ITEMS, index=False)
        rows = [
            (u, self._ids[i], t, p)
            for u, h in self._users.items()
            for t, i, p in zip(h.times, h.items, h.positive, strict=True)
        ]
        history = pd.DataFrame(rows, columns=["user_id", "item_id", "time", "positive"])
        history.to_parquet(root / HISTORY, index=False)
        self.index.save(root)
        self.cf.save(root)
        if self.cf2 is not None:
            self.cf2.save(root, file=SECOND_FILE)
        if self.ranker is not None:
            self.ranker.save(root)
        if self.cross is not None:
            self.cross.save(root)
        self.text.save(root)
        meta = {**self.meta, "n_items": n, "n_users": len(self._users), "search": self.index.kind}
        (root / META).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")

    # -- what it knows ------------------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self._ids)

    @property
    def items(self) -> list[str]:
        """Item ids in catalog order (added items last)."""
        self._sync()
        return list(self._ids)

    @property
    def users(self) -> list[str]:
        """Ids of the users with any interaction (build history or recorded), sorted."""
        self._sync()
        return sorted(self._users)

    @property
    def info(self) -> dict[str, Any]:
        """A summary for listings: name, counts, build time, search, ranker, the config.

        Never waits behind a ranking or a write holding the lock (a server's listing would hold a
        shared thread meanwhile): then the counts are those of the last sync.
        """
        self._sync(blocking=False)
        return {
            "name": self.config.name,
            "folder": str(self.folder) if self.folder else None,
            "n_items": len(self._ids),
            "n_users": len(self._users),
            "n_added_items": self._n_added,
            "n_recorded_events": self._n_events,
            "built": self.meta.get("built"),
            "search": self.index.kind,
            "ranker": self.config.ranker.kind,
            "cf": self.config.cf.algorithm,
            "text_model": self.config.model.base,
            "features": list(self.ranker.features) if self.ranker else [],
            "config": self.config.to_dict(),
        }

    def item_text(self, item_id: str) -> str:
        self._sync()
        return self._texts[self._item_index(item_id)]

    # -- ranking ------------------------------------------------------------------------------------

    def rank(self, user_id: str, k: int = 10, *, exclude_seen: bool = True) -> Ranking:
        """The user's top ``k`` items with the reasons (their items that matched most).

        Raises:
            DataError: ``k`` out of range (1..1000 and at most the catalog's size).
        """
        self._sync()
        with self._lock:
            k = self._check_k(k)
            user_id = id_text(user_id)  # as the HTTP route and record_event take it
            h = self._users.get(user_id)
            ctx = self._context(user_id) if h is not None else None
            if ctx is None:
                reason = (
                    f"unknown user {user_id!r}"
                    if h is None
                    else f"user {user_id!r} has no positive interaction yet"
                ) + ": popular and fresh items"
                return self._fallback(user_id, k, exclude_seen, reason)
            seen = np.asarray(h.items, dtype=np.int64) if exclude_seen else None
            candidates = self._candidates(ctx, k, seen)
            scores = self._rescored(user_id, candidates, self._score(ctx, candidates))
            order = np.lexsort((candidates, -scores))[:k]  # best first; ties by catalog order
            top = candidates[order]
            sims = self.index.vectors[top] @ self.index.vectors[ctx.item_indices].T  # (k, m)
            # one spare: with exclude_seen=false an item the user liked is its own best match
            why = np.argsort(-sims, axis=1, kind="stable")[:, : REASONS + 1]
            items = [
                RankedItem(
                    item_id=self._ids[i],
                    score=float(scores[o]),
                    text=self._texts[i],
                    reasons=[self._ids[ctx.item_indices[j]] for j in why[row] if ctx.item_indices[j] != i][
                        :REASONS
                    ],
                )
                for row, (i, o) in enumerate(zip(top, order, strict=True))
            ]
            return Ranking(user_id, items)

    def score_items(self, user_id: str, item_ids: list[str]) -> np.ndarray:
        """The blended score (the ranker's) of each of ``item_ids`` for the user; the fallback's
        score (popular and fresh, 0..1) for a user without a positive. With the cross-encoder
        stage, the best ``model.cross_encoder_top`` of the given items are re-scored (and the rest
        scaled below them): score a user's whole candidate set in one call, not in pages.

        Raises:
            DataError: an item id is unknown.
        """
        self._sync()
        with self._lock:
            items = self._item_indices(item_ids)
            user_id = id_text(user_id)  # as rank takes it: " u0 " is u0
            ctx = self._context(user_id) if user_id in self._users else None
            if ctx is None:
                return self._fallback_scores()[items]
            return self._rescored(user_id, items, self._score(ctx, items))

    def text_scores(self, user_id: str, item_ids: list[str]) -> np.ndarray:
        """The text model's score alone: cosine of the user's query and each item.

        Raises:
            DataError: unknown item, or a user without a positive interaction (no text to go on).
        """
        self._sync()
        with self._lock:
            items = self._item_indices(item_ids)
            user_id = id_text(user_id)  # as rank takes it: " u0 " is u0
            ctx = self._context(user_id) if user_id in self._users else None
            if ctx is None:
                raise DataError(
                    f"user {user_id!r} has no positive interaction: the text model has nothing to read"
                )
            return (self.index.vectors[items] @ ctx.query).astype(np.float32)

    # -- writing ------------------------------------------------------------------------------------

    def add_item(self, item_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Add an item from its text fields; rankable at once, kept in ``live.sqlite``.

        ``fields`` holds the config's text fields (and extra-text names, e.g. ``tags``), and may
        hold ``text``: free text appended to them.

        Returns:
            ``{"item_id", "text"}``.

        Raises:
            DataError: a bad or taken id, an unknown field, or no text at all.
        """
        return self.add_items([(item_id, fields)])[0]

    def add_items(self, items: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Add several items as ``add_item`` does, all or none: every one is checked and its text
        encoded before any is written, and they are written in one transaction.

        Raises:
            DataError: a bad or repeated id, an unknown field, or no text (nothing added);
                ``ItemExistsError`` (a ``DataError``): a taken id, also one another process added
                since this call looked.
        """
        checked = [self.check_item(item_id, fields) for item_id, fields in items]
        ids = [item_id for item_id, _ in checked]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise DataError(f"item {repeated[0]!r} is given twice; give each new item once")
        self._sync()
        taken = [i for i in ids if i in self.index_of]
        if taken:
            raise ItemExistsError(taken[0])
        vectors = self.text.encode([text for _, text in checked]).astype(np.float32)
        now = _time.time()
        rows = [
            (item_id, fields, text, vector.tobytes(), now)
            for (item_id, text), (_, fields), vector in zip(checked, items, vectors, strict=True)
        ]
        live = self._writable()
        with self._lock:
            live.add_items(rows)
            self._sync()
        return [{"item_id": item_id, "text": text} for item_id, text in checked]

    def check_item(self, item_id: str, fields: dict[str, Any]) -> tuple[str, str]:
        """``(id, text)`` of an item ``add_item`` would take, checked without adding it, so that a
        batch can be refused whole before any of it is added.

        Raises:
            DataError: a bad id, an unknown field, or no text at all.
        """
        item_id = _check_id(item_id, "item id")
        if not isinstance(fields, dict):
            raise DataError(f"item {item_id!r}: fields must be a mapping of field name to text")
        known = [*self.config.items.text_fields, *(e.name for e in self.config.items.extra_text), "text"]
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise DataError(
                f"item {item_id!r}: unknown field {', '.join(unknown)} (known: {', '.join(known)})"
            )
        text = compose_text(self.config.items, fields)
        named = {*self.config.items.text_fields, *(e.name for e in self.config.items.extra_text)}
        free = fields.get("text") if "text" not in named else None  # else compose_text has it already
        # formatted as the named fields are: a list is its values ("great space, fun", not its
        # repr), a whole float its integer ("1999", not "1999.0")
        free_text = ", ".join(values_of(free, None))
        if free_text:
            text = ". ".join(p for p in (text, free_text) if p)
        if not has_visible_text(text):
            raise DataError(
                f"item {item_id!r}: empty text; give at least one of {', '.join(known)} with some words"
            )
        return item_id, text

    def record_event(
        self,
        user_id: str,
        item_id: str,
        time: float | str | None = None,
        rating: float | None = None,
        event: str | None = None,
    ) -> dict[str, Any]:
        """Record an interaction; the user's next ranking reflects it (no retraining).

        Whether it is positive follows the config's rule on ``rating`` or ``event``, read as the
        build reads the interactions file: when the value the rule reads is not given, the event
        is not positive (the item counts as seen); with the rule ``all`` every event is positive.

        Returns:
            ``{"user_id", "item_id", "time", "positive"}``.

        Raises:
            DataError: unknown item, empty user id, a bad time or rating.
        """
        user_id = _check_id(user_id, "user id")
        item_id = _check_id(item_id, "item id")
        when = _event_time(time)
        if rating is not None:
            try:
                rating = float(rating)
            except (TypeError, ValueError):
                raise DataError(f"rating {rating!r} is not a number") from None
            if not np.isfinite(rating):
                raise DataError(f"rating {rating!r} is not a finite number")
        if event is not None:
            event = str(event).strip() or None
        self._sync()
        if item_id not in self.index_of:
            raise DataError(
                f"unknown item {item_id!r}: add it first (add_item / POST .../items) or check the id"
            )
        positive = self._is_positive(rating, event)
        row = {
            "user_id": user_id,
            "item_id": item_id,
            "time": when,
            "rating": rating,
            "event": event,
            "positive": int(positive),
            "recorded": _time.time(),
        }
        live = self._writable()
        with self._lock:
            live.add_event(row)
            self._sync()
        return {"user_id": user_id, "item_id": item_id, "time": when, "positive": positive}

    # -- internals ----------------------------------------------------------------------------------

    def _writable(self) -> LiveStore:
        if self._live is None:
            raise DataError("this recommender has no folder yet (it is being built); load it from its folder")
        return self._live

    def _is_positive(self, rating: float | None, event: str | None) -> bool:
        icfg = self.config.interactions
        source = icfg.rule_source()
        value = rating if source == "rating" else event if source == "event" else None
        if source is None:
            return True
        if value is None:  # as a blank cell in the file: not positive
            return False
        return bool(icfg.rule.apply([value])[0])

    def _check_k(self, k: Any) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise DataError(f"k {k!r} must be a whole number between 1 and {min(MAX_K, len(self._ids))}")
        top = min(MAX_K, len(self._ids))
        if not 1 <= int(k) <= top:
            if int(k) < 1:
                raise DataError(f"k={int(k)} is out of range: give 1 to {top}")
            why = f"the catalog has {len(self._ids)} items" if int(k) > len(self._ids) else f"at most {MAX_K}"
            raise DataError(f"k={int(k)} is out of range: give 1 to {top} ({why})")
        return int(k)

    def _item_index(self, item_id: str) -> int:
        index = self.index_of.get(id_text(item_id))  # "7.0" is "7", as rank and record_event take it
        if index is None:
            raise DataError(f"unknown item {item_id!r}")
        return index

    def _item_indices(self, item_ids: list[str]) -> np.ndarray:
        found = [self.index_of.get(id_text(i), -1) for i in item_ids]  # as _item_index reads them
        missing = [str(i) for i, f in zip(item_ids, found, strict=True) if f < 0]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DataError(f"unknown item {missing[0]!r}{more}")
        return np.asarray(found, dtype=np.int64)

    def _seen_indices(self, user_id: str) -> np.ndarray:
        h = self._users.get(user_id)
        return np.asarray(sorted(set(h.items)) if h else [], dtype=np.int64)

    def _query_text(self, user_id: str) -> str | None:
        """The user's query (their recent positives as text), None without a positive."""
        h = self._users.get(user_id)
        positives = h.positives() if h is not None else []
        if not positives:
            return None
        history = self.config.model.history
        return query_text([self._texts[i] for i in positives[-history:]], history)

    def prime(self, user_ids: list[str], *, batch_size: int = 64) -> None:
        """Compute the contexts of many users at once (their queries encoded in batches): what a
        build or a benchmark scoring every user calls first; one query at a time costs a model
        call each."""
        with self._lock:
            todo = [u for u in dict.fromkeys(map(id_text, user_ids)) if self._stale(u)]
            texts = {u: t for u in todo if (t := self._query_text(u)) is not None}
            if not texts:
                return
            vectors = self.text.encode(list(texts.values()), batch_size=batch_size)
            for user, vector in zip(texts, vectors, strict=True):
                self._context(user, query_vector=vector)

    def _stale(self, user_id: str) -> bool:
        cached = self._cache.get(user_id)
        h = self._users.get(user_id)
        return h is not None and (cached is None or cached[0] != h.version)

    def _context(self, user_id: str, *, query_vector: np.ndarray | None = None) -> UserContext | None:
        """The user's query, profile and CF vector (cached until their history changes)."""
        h = self._users.get(user_id)
        if h is None:
            return None
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] == h.version:
            if cached[1] == len(self._ids):
                self._cache.move_to_end(user_id)
                return cached[2]
            query_vector = cached[2].query if query_vector is None else query_vector
        query = self._query_text(user_id)
        if query is None:
            return None
        positives = h.positives()
        recent = np.asarray(positives[-MAX_PROFILE:], dtype=np.int64)
        cf_vector, cf_moments = _cf_user(self.cf, user_id, h, positives)
        cf2_vector, cf2_moments = None, (0.0, 1.0)
        if self.cf2 is not None:
            cf2_vector, cf2_moments = _cf_user(self.cf2, user_id, h, positives)
        if query_vector is None:
            query_vector = self.text.encode([query])[0]
        ctx = UserContext(
            query=query_vector,
            profile=profile_of(self.index.vectors, recent),
            item_indices=recent,
            cf_vector=cf_vector,
            n_positives=len(positives),
            text_moments=moments(self.index.vectors @ query_vector),
            cf_moments=cf_moments,
            cf2_vector=cf2_vector,
            cf2_moments=cf2_moments,
        )
        self._cache[user_id] = (h.version, len(self._ids), ctx)
        self._cache.move_to_end(user_id)
        while len(self._cache) > CONTEXT_CACHE:
            self._cache.popitem(last=False)
        return ctx

    def _features(self, ctx: UserContext, items: np.ndarray) -> np.ndarray:
        cf_scores = self.cf.scores(ctx.cf_vector, items) if ctx.cf_vector is not None else None
        known = self._has_cf[items] if ctx.cf_vector is not None else None
        cf2_scores = None
        if self.cf2 is not None and ctx.cf2_vector is not None:
            cf2_scores = self.cf2.scores(ctx.cf2_vector, items)
        return compute(ctx, items, self.index.vectors, self._stats, cf_scores, known, cf2_scores)

    def _score(self, ctx: UserContext, items: np.ndarray) -> np.ndarray:
        if self.ranker is None:
            raise RuntimeError("the recommender has no ranker yet")
        return self.ranker.score(self._features(ctx, items))

    def _rescored(self, user_id: str, items: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``scores`` with the best candidates re-scored by the cross-encoder stage, when built."""
        query = self._query_text(user_id) if self.cross is not None else None
        if self.cross is None or query is None:
            return scores
        return self.cross.rescore(query, [self._texts[i] for i in items], scores)

    def _cf_top(self, ctx: UserContext, k: int, *, second: bool = False) -> list[int]:
        """The user's top ``k`` by CF (``second``: by ``cf.second``'s model; [] without one)."""
        cf, vector = (self.cf2, ctx.cf2_vector) if second else (self.cf, ctx.cf_vector)
        if cf is None or vector is None:
            return []
        scores = np.where(cf.has_cf, cf.item_factors @ vector, -np.inf)
        k = min(k, int(cf.has_cf.sum()))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        return top[np.argsort(-scores[top], kind="stable")].tolist()

    def _text_top(self, ctx: UserContext, k: int) -> list[int]:
        return self.index.search(ctx.query, k)[0].tolist()

    def _candidates(self, ctx: UserContext, k: int, seen: np.ndarray | None) -> np.ndarray:
        """Every item (less ``seen``) for a catalog up to ``full_rank_max_items``; past that, the
        union of the index's nearest to the query and to the profile, CF's top (each model's), the
        popular now and the newly added: ~1,000-1,300 items, so one ranker call stays ~15 ms however
        large the catalog (a gradient-boosted ranker over 10,000 rows takes 0.1-0.5 s on a busy CPU)."""
        n = len(self._ids)
        blocked = np.zeros(n, dtype=bool)
        if seen is not None:
            blocked[seen] = True
        if n > self.config.index.full_rank_max_items:
            extra = min(int(blocked.sum()), 2000)  # room for the seen items the generators return
            found = [
                self.index.search(ctx.query, 300 + extra)[0],
                self.index.search(ctx.profile, 200 + extra)[0],
                np.asarray(self._cf_top(ctx, 300 + extra), dtype=np.int64),
                np.asarray(self._cf_top(ctx, 300 + extra, second=True), dtype=np.int64),
                np.argsort(-self._stats.trend, kind="stable")[: 100 + extra],
                np.flatnonzero(~np.isnan(self._added))[-100:],
            ]
            pool = np.unique(np.concatenate(found)).astype(np.int64)
            pool = pool[~blocked[pool]]
            if len(pool) >= k:
                return pool
        return np.flatnonzero(~blocked).astype(np.int64)

    def _fallback_scores(self) -> np.ndarray:
        """Popular and fresh, as 1 - rank / N (best 1.0): popular now (by positives among the most
        recent ones, then all-time positives, then the newest added), with every FRESH_EVERY-th
        place (the 5th, 10th, ...) given to the items added since the build, newest first.

        Ranked by popularity alone, an added item (no positive yet) came 40th of 41 on a 40-item
        catalog, so the "fresh" of the list was a tie-break only. An added item that popularity
        already puts higher keeps that place (each item takes the better of its two). The places
        do not depend on k, so a longer list extends a shorter one and ``score_items`` agrees with
        ``rank``; without added items the order is popularity's.
        """
        s = self._stats
        n = len(self._ids)
        added = np.nan_to_num(self._added, nan=-np.inf)
        popular = np.lexsort((np.arange(n), -added, -s.pop, -s.trend))
        place = np.empty(n, dtype=np.int64)
        # popularity's r-th item takes the r-th place that is not a fresh one: 0, 1, 2, 3, 5, ...
        ranks = np.arange(n, dtype=np.int64)
        place[popular] = ranks + ranks // (FRESH_EVERY - 1)
        fresh = np.flatnonzero(~np.isnan(self._added))
        fresh = fresh[np.lexsort((fresh, -self._added[fresh]))]  # newest first; a batch in its order
        slots = FRESH_EVERY * np.arange(1, len(fresh) + 1, dtype=np.int64) - 1  # 4, 9, 14, ...
        place[fresh] = np.minimum(place[fresh], slots)
        order = np.argsort(place, kind="stable")  # the places are distinct: popular ones skip the fresh
        scores = np.empty(n, dtype=np.float32)
        scores[order] = 1.0 - np.arange(n) / max(1, n)
        return scores

    def _fallback(self, user_id: str, k: int, exclude_seen: bool, reason: str) -> Ranking:
        scores = self._fallback_scores()
        order = np.argsort(-scores, kind="stable")
        h = self._users.get(user_id)
        if exclude_seen and h is not None:
            seen = set(h.items)
            order = np.array([i for i in order if i not in seen], dtype=np.int64)
        items = [RankedItem(self._ids[i], float(scores[i]), self._texts[i], []) for i in order[:k]]
        return Ranking(user_id, items, fallback=True, fallback_reason=reason)

    def _sync(self, *, blocking: bool = True) -> None:
        """Apply the rows other writers (or this one) put in ``live.sqlite`` since the last call.

        ``blocking=False``: skip it when another thread holds the lock.
        """
        if self._live is None or not self._live.exists():
            return
        if not self._lock.acquire(blocking=blocking):
            return
        try:
            new_items, new_events = self._live.changes_after(self._seq_items, self._seq_events)
            if new_items:
                self._apply_items(new_items)
            for seq, user, item, t, _rating, _event, positive in new_events:
                # as a request names them: rows an earlier tunelab wrote hold "7.0" as given
                self._apply_event(id_text(user), id_text(item), float(t), bool(positive))
                self._seq_events = int(seq)
        finally:
            self._lock.release()

    def _apply_items(self, rows: list[tuple[Any, ...]]) -> None:
        # as add_item takes an id now: an earlier tunelab wrote "7.0" as given. One that is now
        # another item's id is refused before anything is applied, not merged into it.
        ids = [id_text(r[1]) for r in rows]
        seen: set[str] = set()  # a set, not ids[:n]: a load applies every live item in one call
        for item_id, row in zip(ids, rows, strict=True):
            if item_id in self.index_of or item_id in seen:
                raise ConfigError(
                    f"{self.folder / LIVE_FILE}: the item added as {row[1]!r} is {item_id!r}, already "
                    "another item's id, since a whole number written as a float reads as its integer; "
                    "build the recommender again and add that item under another id"
                )
            seen.add(item_id)
        dim = self.index.vectors.shape[1]
        vectors = np.stack([np.frombuffer(r[4], dtype=np.float32, count=dim) for r in rows])
        for item_id, (seq, _id, _fields, text, _vec, added) in zip(ids, rows, strict=True):
            self.index_of[item_id] = len(self._ids)
            self._ids.append(item_id)
            self._texts.append(str(text))
            self._added = np.append(self._added, float(added))
            self._seq_items = int(seq)
        self.index.add(vectors)
        m = len(rows)
        s = self._stats
        self._has_cf = np.r_[self._has_cf, np.zeros(m, dtype=bool)]
        s.pop = np.r_[s.pop, np.zeros(m)]
        s.trend = np.r_[s.trend, np.zeros(m)]
        s.last_time = np.r_[s.last_time, np.full(m, np.nan)]
        self._n_added += m

    def _data_time(self, t: float) -> float:
        """A live event's time on the build history's clock.

        Recency features measure an item's age from the latest interaction known. Built from
        history that ended long before the build (MovieLens small ends in 2018), one event dated
        now would jump that clock by years, so that every item looked years old, older than a
        never-seen one, and one client's event reordered every user's ranking. So the time
        between the history's end and the build is taken out: an event at the build's time lands
        at the history's end, and later events follow at the pace of the wall clock. Times within
        the history are kept as they are.
        """
        if t <= self._data_end:
            return t
        return max(self._data_end, t - self._clock_gap)

    def _apply_event(self, user: str, item_id: str, t: float, positive: bool) -> None:
        """Count one recorded event in the user's history and the items' stats.

        A user's first positive on the item counts in ``pop``, and in ``trend`` (the fallback's
        "popular now") only when dated at or after the trend window's start the build computed
        (``ItemStats.trend_since``), as that row in the build's file would: six events dated 2010
        made an item the top "popular now" one for every unknown user. The start is not moved by
        live events: the window runs from it to the newest event until the next build, so nothing
        counted is ever taken back and a reload, replaying ``live.sqlite``, counts the same.
        """
        item = self.index_of.get(item_id)
        if item is None:  # an item no row of this folder adds: written by a foreign tool; skip it
            return
        t = self._data_time(t)
        h = self._users.setdefault(user, _History())
        # a user counts once per item, as the build counts them (_item_stats): a re-rating or a
        # client retrying one event lifted the item for every user and the fallback
        liked_before = positive and item in h.liked
        h.add(t, item, positive)
        s = self._stats
        if positive:
            h.live_positive = True
        if positive and not liked_before:
            s.pop[item] += 1
            if t >= s.trend_since:  # see _apply_event's docstring
                s.trend[item] += 1
        s.last_time[item] = t if np.isnan(s.last_time[item]) else max(s.last_time[item], t)
        s.ref_time = max(s.ref_time, t)
        self._n_events += 1


def _unreadable_live(root: Path, exc: sqlite3.DatabaseError) -> ConfigError:
    # not "build it again": that would drop the live rows
    return ConfigError(
        f"{root / LIVE_FILE}: the live items and events cannot be read ({exc}); restore it from "
        "a backup, or move it away to serve the recommender as built"
    )


def _stored_ids(frame: pd.DataFrame, columns: list[str], path: Path) -> pd.DataFrame:
    """``frame`` with its id ``columns`` read as every request and event names them (``id_text``).

    A folder built before that rule kept a CSV's "7.0" as written, while requests and events now
    name it "7": its known users got the fallback and events on its items were refused as unknown.
    Two stored ids that the rule makes one ("7" and "7.0": two users or items when built) are not
    merged silently: the folder is refused, to be built again (the build now reads them as one).
    """
    for column in columns:
        stored = frame[column].astype(str)
        uniques = pd.unique(stored)  # each distinct id once: a history's millions of rows stay vectorised
        read = [id_text(u) for u in uniques]
        if read == list(uniques):
            continue
        first: dict[str, str] = {}
        for old, new in zip(uniques, read, strict=True):
            if first.setdefault(new, old) != old:
                what = column.removesuffix("_id")
                raise ConfigError(
                    f"{path}: the {what} ids {first[new]!r} and {old!r} are both {new!r} now that a whole "
                    "number written as a float reads as its integer; build the recommender again"
                )
        frame = frame.assign(**{column: stored.map(dict(zip(uniques, read, strict=True)))})
    return frame


def _built_time(meta: dict[str, Any]) -> float:
    """When the folder was built, epoch seconds (0 for a folder that does not say)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(meta["built"])).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0


def _check_vectors(index: ItemIndex, n_items: int) -> None:
    """One unit vector per catalog item: a ``vectors.npy`` of another row count (copied from another
    build, cut short) loaded, and ranking failed with "unexpected IndexError" (a server started on
    it without complaint). A ValueError, which ``load`` reports as a damaged folder."""
    shape = index.vectors.shape
    if len(shape) != 2:
        raise ValueError(f"{VECTORS} holds an array of shape {shape}, not one row per item")
    if shape[0] != n_items:
        raise ValueError(f"{VECTORS} has {shape[0]} rows for the {n_items} items of {ITEMS}")


def _item_stats(
    history: pd.DataFrame, index_of: dict[str, int], n: int, age_never: float | None
) -> ItemStats:
    items = history["item_id"].astype(str).map(index_of).to_numpy(dtype=np.int64)
    times = history["time"].to_numpy(dtype=np.float64)
    positive = history["positive"].to_numpy(dtype=bool)
    # Each user once per item, at their first positive on it, as CF, the popularity baseline and a
    # live event (_apply_event) count them: a re-rating or a repeated click counted again lifted
    # log_pop and the trend for every user, and the fallback every unknown user gets.
    firsts = pd.DataFrame({"user": history["user_id"].astype(str).to_numpy(), "item": items, "time": times})
    firsts = firsts[positive].sort_values("time", kind="stable").drop_duplicates(["user", "item"])
    liked, liked_times = firsts["item"].to_numpy(dtype=np.int64), firsts["time"].to_numpy(dtype=np.float64)
    pop = np.bincount(liked, minlength=n).astype(np.float64)
    last = np.full(n, np.nan)
    if len(items):
        last_known = np.full(n, -np.inf)
        np.maximum.at(last_known, items, times)
        last = np.where(np.isfinite(last_known), last_known, np.nan)
    pos_times = np.sort(liked_times)
    recent = max(TREND_MIN, int(len(pos_times) * TREND_SHARE))
    since = pos_times[-recent] if len(pos_times) >= recent else -np.inf
    trend = np.bincount(liked[liked_times >= since], minlength=n).astype(np.float64)
    ref = float(times.max()) if len(times) else 0.0
    if age_never is None:
        span = (ref - float(times.min())) / 86_400.0 if len(times) else 0.0
        age_never = float(np.log1p(max(span, 0.0)) + 1.0)  # older than any item seen
    return ItemStats(
        pop=pop,
        last_time=last,
        trend=trend,
        ref_time=ref,
        age_never=float(age_never),
        trend_since=float(since),
    )


def _check_id(value: Any, what: str) -> str:
    """An id as every reader takes it (``id_text``): text, or a whole number however it is typed.

    An id read from a pandas row is 7.0, np.int64(42) or np.float64(42.0): ``rank`` and the events
    route took those as "7" and "42", and this refused them as "not a string". A fractional number
    (4.5 names no id), a bool or any other type is refused.
    """
    whole = isinstance(value, int | np.integer) or (
        isinstance(value, float | np.floating) and float(value).is_integer()
    )
    if isinstance(value, bool | np.bool_) or not (isinstance(value, str) or whole):
        raise DataError(f"{what} {value!r} is not an id: an id is text or a whole number")
    text = id_text(value)  # "7.0" is "7", as the build reads the files
    if not text:
        raise DataError(f"{what} is empty")
    if len(text) > _MAX_ID:
        raise DataError(f"{what} is longer than {_MAX_ID} characters")
    return text


MAX_FUTURE_S = 3600.0  # an event dated further ahead of the clock is refused


def _event_time(value: Any) -> float:
    """Epoch seconds of an event's time (now when not given).

    A time far ahead of the clock is refused: recency is measured from the newest event's time,
    shared by every user, so one event dated 9999 would make every other item look centuries old.
    Read as the build reads a file and the HTTP route reads an event: a string is ISO 8601 only
    (``pd.Timestamp`` guessed "04/03/2024" as April 3), and a boolean or eight digits that read
    as a date (20240315) are refused, not taken as a moment in 1970.
    """
    if value is None:
        return _time.time()
    if isinstance(value, str):  # "1700000000": epoch seconds sent as a string, as a file gives them
        with contextlib.suppress(ValueError):
            value = float(value.strip())
    try:
        check_epoch_number(value)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if isinstance(value, int | float):  # a bool was refused just above
        try:
            when = float(value)  # an int past float's range (10**400) raises OverflowError
        except OverflowError:
            raise DataError("time is too large to be epoch seconds") from None
        if not np.isfinite(when):
            raise DataError(f"time {value!r} is not a finite number")
    else:
        text = str(value).strip()
        try:
            stamp = pd.to_datetime(text, format="ISO8601")
        except pd.errors.OutOfBoundsDatetime:
            # pandas before 3 holds nanoseconds only (years 1677-2262): 9999-12-31 was "not a time"
            # there, not a time ahead of the clock; Python's datetime holds years 1-9999
            when = _iso_seconds(text, value)
        except (ValueError, TypeError, OverflowError):
            raise DataError(f"time {value!r} is not a time; use epoch seconds or ISO 8601") from None
        else:
            if pd.isna(stamp):  # "", "nat" and "NaT" parse to NaT, which has no epoch seconds
                raise DataError(f"time {value!r} is not a time; use epoch seconds or ISO 8601")
            if stamp.tzinfo is None:
                stamp = stamp.tz_localize("UTC")
            when = float(stamp.timestamp())
    if when > _time.time() + MAX_FUTURE_S:
        raise DataError(
            f"time {value!r} is more than {MAX_FUTURE_S / 3600:.0f} h ahead of the clock; "
            "send the time the interaction happened"
        )
    return when


def _iso_seconds(text: str, value: Any) -> float:
    """Epoch seconds of an ISO 8601 ``text`` that pandas could not hold (naive = UTC)."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"time {value!r} is not a time; use epoch seconds or ISO 8601") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _cf_user(
    cf: CFModel, user_id: str, history: _History, positives: list[int]
) -> tuple[np.ndarray | None, tuple[float, float]]:
    """The user's vector in ``cf`` (trained, or folded in from their positives when they have none
    or have recorded a positive since the build) and their scores' moments over the items with
    factors; (None, (0, 1)) when none of their positives has factors."""
    vector = None if history.live_positive else cf.user_vector(user_id)
    if vector is None:
        vector = cf.fold_in(np.asarray(positives, dtype=np.int64))
    if vector is None:
        return None, (0.0, 1.0)
    return vector, moments(cf.item_factors[cf.has_cf] @ vector)
