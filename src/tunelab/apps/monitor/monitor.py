"""The monitor itself: documents in (followed files, folders, batches), classified, stored, windowed.

Each batch goes through the same steps: drop ids seen before (in the batch or in the store),
classify the new documents in batches, count them in the detector's windows (event time), then
store documents, labels, alerts and the source's position in one transaction. A crash before the
commit loses nothing (the position did not move: the lines are read again) and a crash after it
repeats nothing (the position moved with them); a commit that fails undoes the counting, so a
retry counts the batch once; a document sent twice is stored and counted once.

On start the detector's windows are rebuilt from the stored documents of the last baseline, and
episodes still open in the store stay open, so a restart neither repeats nor forgets an alert.
That holds for one process per monitor: each counts only what it stored itself, so a second one
would open its own episodes for the same surge. A ``Monitor`` therefore holds a lease on its name in
its store (``lease.py``) while it is open, and a second one refuses to start.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from tunelab.apps.monitor.classify import OTHER_TOPIC, Classified, Classifier
from tunelab.apps.monitor.config import MonitorConfig, Source
from tunelab.apps.monitor.detector import Alert, Detector
from tunelab.apps.monitor.documents import Document, check_batch, loggable, parse_line
from tunelab.apps.monitor.lease import Lease, take_lease
from tunelab.apps.monitor.sources import (
    FileFollower,
    FileKey,
    Line,
    Position,
    SeenFiles,
    file_lines,
    list_files,
)
from tunelab.apps.monitor.stop_wait import wait_for_stop
from tunelab.apps.monitor.store import MonitorStore, open_monitor_store
from tunelab.errors import ConfigError
from tunelab.serve.store.base import StoreError

log = logging.getLogger(__name__)

CHUNK_DOCS = 512  # documents classified and committed together when a file has many
#: At most one log line per this many seconds (per monitor) about keys left unwatched at the cap:
#: a flood of made-up topics would otherwise write one line per document.
UNWATCHED_LOG_S = 60.0


@dataclass
class IngestResult:
    """Counts of one call (or, as ``Monitor.totals``, of the monitor's life so far).

    A total made with ``keep_alerts=False`` counts the alerts ``add``ed to it and keeps none: one
    that lives as long as a follower (``Monitor.totals``, a following ``run``) held every alert ever
    opened, each with up to 50 document ids, and grew with them. ``alert_count`` counts either way.
    """

    stored: int = 0  # new documents classified and stored
    duplicates: int = 0  # ids already stored or repeated in the batch: not counted again
    skipped: int = 0  # malformed lines or refused documents
    alerts: list[Alert] = field(default_factory=list)  # alerts opened (kept: see keep_alerts)
    # A document's topics and companies not watched, the detector being at detector.max_keys
    # (each key of a document once): stored and in trends, but no alert on those keys.
    unwatched: int = 0
    alerts_not_kept: int = 0  # alerts opened and counted, not kept in ``alerts``
    keep_alerts: bool = field(default=True, repr=False, compare=False)

    @property
    def alert_count(self) -> int:
        """How many alerts were opened: those kept and those only counted."""
        return len(self.alerts) + self.alerts_not_kept

    def add(self, other: IngestResult) -> None:
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.skipped += other.skipped
        self.alerts_not_kept += other.alerts_not_kept
        if self.keep_alerts:
            self.alerts.extend(other.alerts)
        else:
            self.alerts_not_kept += len(other.alerts)
        self.unwatched += other.unwatched

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "alerts": [a.to_dict() for a in self.alerts],
        }
        if self.alerts_not_kept:  # a total that counts its alerts only: "alerts" is not all of them
            out["alert_count"] = self.alert_count
        if self.unwatched:  # only past the cap: a monitor under it reads as before
            out["unwatched"] = self.unwatched
        return out


@dataclass
class _FolderBatch:
    """Lines of a folder's files gathered for one classify-and-store call (``Monitor._directory``).

    One part per file (or per piece of a file larger than the batch), kept apart so they count as
    the per-file calls they replace did: each part's documents in time order, an id in an earlier
    part a duplicate in a later one. ``finished``: the files whose last lines are in this batch,
    recorded as read in the transaction that stores them.
    """

    folder: str
    docs: list[list[Document]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # lines each part took of the batch
    finished: list[FileKey] = field(default_factory=list)
    lines: int = 0

    def add(self, docs: list[Document], lines: int, skipped: int) -> None:
        self.docs.append(docs)
        self.sizes.append(lines)
        self.skipped.append(skipped)
        self.lines += lines

    def mark(self) -> int:
        """Where the next part goes: ``drop`` takes the batch back to it."""
        return len(self.docs)

    def drop(self, mark: int) -> None:
        """Forget the parts from ``mark`` on (a file that failed part way: not stored with others)."""
        self.lines -= sum(self.sizes[mark:])
        del self.docs[mark:], self.sizes[mark:], self.skipped[mark:]

    def full(self) -> bool:
        # Files count too: a folder of empty files would otherwise grow one transaction unbounded.
        return self.lines >= CHUNK_DOCS or len(self.finished) >= CHUNK_DOCS

    def empty(self) -> bool:
        return not self.docs and not self.finished

    def clear(self) -> None:
        self.docs, self.skipped, self.sizes, self.finished, self.lines = [], [], [], [], 0


def doc_keys(doc: Document, res: Classified) -> list[str]:
    """The windows a document counts in: its topic and each company it names."""
    return stored_keys(res.topic, res.companies)


def stored_keys(topic: str | None, companies: Sequence[str]) -> list[str]:
    """The windows a stored document counts in (``doc_keys`` of its stored labels)."""
    return ([f"topic:{topic}"] if topic else []) + [f"company:{c}" for c in companies]


def protected_keys(config: MonitorConfig) -> set[str]:
    """The keys watched whatever ``detector.max_keys`` says: the listed zero-shot topics (and
    ``other``), a bounded set the operator chose. Made-up topics and companies filling the cap
    then cannot turn alerting off for them. (A topic run's labels count against the cap: they
    are known only once it is loaded, and are few.)"""
    if not config.topics or config.topic_run is not None:
        return set()
    return {f"topic:{t.name}" for t in config.topics} | {f"topic:{OTHER_TOPIC}"}


def load_classifier(config: MonitorConfig, *, ner: str | Path | None = None) -> Classifier:
    """The config's runs loaded with ``tunelab.load`` (run folders or exported artifacts).

    Raises:
        ConfigError: a run is of the wrong task (e.g. an NER run given as the sentiment run), or
            the sentiment or topic run was trained on text pairs (a document is one text).
        RunError: a run folder is missing or incomplete.
    """
    import tunelab

    def checked(path: Path, field_name: str, output: str) -> Any:
        # A run is checked by what it predicts (Predictor.output), not by task name.
        predictor = tunelab.load(path)
        if predictor.output != output:
            wanted = {"label": "single_label", "entities": "token_classification (NER)"}[output]
            raise ConfigError(
                f"{config.where}runs.{field_name}: {path} is a {predictor.task_name} run; give a {wanted} run"
            )
        pair = getattr(predictor, "text_pair_column", None)
        if output == "label" and pair:
            # a document is one text: such a run failed on the first document, not at start
            raise ConfigError(
                f"{config.where}runs.{field_name}: {path} is a {predictor.task_name} run on text pairs "
                f"(data.text_pair_column={pair!r}); give a single_label run on single texts"
            )
        return predictor

    ner_path = Path(ner) if ner is not None else config.ner_run
    try:
        return Classifier(
            checked(config.sentiment, "sentiment", "label"),
            negative_label=config.negative_label,
            topic=checked(config.topic_run, "topic", "label") if config.topic_run else None,
            ner=checked(ner_path, "ner", "entities") if ner_path else None,
            topics=config.topics,
            embed=lambda texts: tunelab.embed(texts, model=config.embed_model),
            min_similarity=config.min_similarity,
            org_labels=config.org_labels,
            aliases=config.aliases,
            batch_size=config.batch_size,
        )
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(config.where) else config.where + message) from None


class _LeaseRetaken(Exception):
    """The lease was lost while a batch was counted, and taken again: undo the counting."""


class Monitor:
    """One configured monitor: ingest, classify, store, window, alert.

    Example:
        >>> monitor = Monitor(MonitorConfig.from_yaml("monitor.yaml"))  # doctest: +SKIP
        >>> doc = {"id": "1", "time": "2026-03-02T09:30:00Z", "text": "Acme misses estimates"}
        >>> monitor.ingest_batch([doc])  # doctest: +SKIP
        >>> monitor.run(once=True)  # read every source once  # doctest: +SKIP

    Args:
        config: the validated monitor config.
        store: an open monitor store (default: the config's ``store``); closed by ``close``
            only when the monitor opened it.
        classifier: what classifies (default: the config's runs, loaded on first use).
        ner: an NER run overriding the config's ``runs.ner`` (``--ner``).

    A monitor holds the lease on its name in its store (``lease.take_lease``) from here to
    ``close``: one process ingests a monitor, or one surge opens two alert episodes.

    Raises:
        MonitorBusyError: another process (or another open ``Monitor`` here) ingests this monitor in
            this store; one line naming it and what to do.
    """

    def __init__(
        self,
        config: MonitorConfig,
        *,
        store: MonitorStore | None = None,
        classifier: Classifier | None = None,
        ner: str | Path | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._own_store = store is None
        self.store = store if store is not None else open_monitor_store(config.store)
        # Before the windows are read back: what a previous holder stored is then all in the store.
        try:
            self._lease: Lease | None = take_lease(self.store, self.name)
        except BaseException:
            if self._own_store:
                self.store.close()
            raise
        self._classifier = classifier
        self._ner = ner
        self.detector = self._new_detector()
        # Set while the windows must be read back from the store (``_rebuild`` did not finish).
        self._stale = False
        # Whether the store has no first document time for this monitor yet (``_warm_up``): the
        # first batch stored records the detector's, the floor of a restart's history.
        self._record_began = False
        # Keys left unwatched at the cap since the last line about them, and when it was written.
        self._unwatched_pending = 0
        self._unwatched_logged = -math.inf
        self.totals = IngestResult(keep_alerts=False)  # counts only: it lives as long as the monitor
        self._followers: dict[Path, FileFollower] = {}
        # (a watched folder, its pattern) -> its files read: two sources on one folder with other
        # patterns list other files, and each would forget the other's
        self._seen_files: dict[tuple[Path, str], SeenFiles] = {}
        # (a watched folder, its pattern) -> its files that could not be read, as listed: warned
        # about once per file version (name, size, time), tried again quietly each poll
        self._unreadable_files: dict[tuple[Path, str], set[FileKey]] = {}
        # source index -> the error that last stopped it, as warned: once per error, not per poll
        self._source_errors: dict[int, str] = {}
        self._sources_checked = False  # run's existence check is for its first call only
        self._lock = threading.Lock()  # one batch at a time: the detector is not thread-safe
        self._stop = threading.Event()  # set: finish the batch in hand, read no more
        # Called with the results of each stored call, from the thread that stored it (a
        # webhook's wake-up, a server's metrics); never under the lock.
        self.on_ingest: Callable[[list[IngestResult]], None] | None = None
        try:
            self.store.register_monitor(self.name)
            self._warm_up()
        except BaseException:
            self.close()
            raise

    @property
    def classifier(self) -> Classifier:
        if self._classifier is None:
            self._classifier = load_classifier(self.config, ner=self._ner)
        return self._classifier

    # -- batches -------------------------------------------------------------------------------------

    def ingest_batch(self, docs: Any) -> IngestResult:
        """Ingest a batch of document objects (``POST .../documents``): all or nothing.

        Raises:
            DataError: a document is refused (no id or time, bad time, text too long ...), naming
                its index; nothing of the batch is stored then.
        """
        return self.process(self.check_batch(docs))

    def latest_time(self) -> datetime:
        """The newest document time accepted now: the clock plus the config's ``max_future``.

        The detector works in event time (a replay gives the same alerts), so its clock is the
        newest document's time: one document dated 2062 for 2026 would move every key's window
        decades on and count every later document as too late. Only here is the wall clock read.
        """
        return datetime.now(UTC) + timedelta(seconds=self.config.max_future_s)

    def check_batch(self, docs: Any) -> list[Document]:
        """``check_batch`` with this monitor's limits (what ``POST .../documents`` checks).

        Raises:
            DataError: the first refused document, naming its index.
        """
        return check_batch(docs, max_text_chars=self.config.max_text_chars, latest=self.latest_time())

    def process(
        self,
        docs: Sequence[Document],
        *,
        position: tuple[str, Position] | None = None,
        file: tuple[str, FileKey] | None = None,
        skipped: int = 0,
    ) -> IngestResult:
        """Classify, count and store checked documents, with the source position they bring it to.

        ``skipped``: the malformed lines of the same chunk of a source, counted in the result (and
        ``totals``) before ``on_ingest`` sees it, so the server's metrics count them too.
        """
        return self.process_many([docs], position=position, file=file, skipped=[skipped])[0]

    def process_many(
        self,
        batches: Sequence[Sequence[Document]],
        *,
        position: tuple[str, Position] | None = None,
        file: tuple[str, FileKey] | None = None,
        files: Sequence[tuple[str, FileKey]] = (),
        skipped: Sequence[int] | None = None,
    ) -> list[IngestResult]:
        """Several batches (concurrent HTTP requests, a folder's small files) classified together,
        with a result each.

        The batches count as if sent one after the other: an id in an earlier batch is a duplicate
        in a later one. The classifier sees all their new documents in one call (bigger batches,
        fewer forwards); everything is stored in one transaction, with ``position``/``file`` and
        the folder files ``files`` these batches finish (recorded read with their documents).
        """
        with self._lock:
            # Before the stored ids are read and anything counted: a lease lost and taken again
            # (a PostgreSQL session cut, the lock file replaced) may have let another ingester store
            # documents meanwhile, which these windows never counted; they are read back first.
            if self._check_lease() or self._stale:
                self._rebuild()
            results = [IngestResult(skipped=n) for n in (skipped or [0] * len(batches))]
            seen: set[str] = set()
            uniques: list[dict[str, Document]] = []
            for batch, result in zip(batches, results, strict=True):
                unique: dict[str, Document] = {}
                for doc in batch:
                    if doc.id in unique or doc.id in seen:
                        result.duplicates += 1
                    else:
                        unique[doc.id] = doc
                seen.update(unique)
                uniques.append(unique)
            stored = self.store.existing_ids(self.name, list(seen)) if seen else set()
            news = []
            for unique, result in zip(uniques, results, strict=True):
                new = sorted((d for d in unique.values() if d.id not in stored), key=lambda d: (d.time, d.id))
                result.duplicates += len(unique) - len(new)
                news.append(new)
            flat = [d for new in news for d in new]
            labels = self.classifier.classify(flat) if flat else []
            changed: list[list[Alert]] = []
            # Counted before the commit (the alerts go in the same transaction) but undone if it
            # fails: a retry must not count the batch twice nor find its alert's key in episode.
            # A document another process stored meanwhile (not in ``inserted``) stays counted: it
            # is in the store once, and a restarted monitor's warm-up counts it too.
            unwatched: list[int] = []
            try:
                with self.detector.transaction():
                    offset = 0
                    for new in news:
                        mine: list[Alert] = []
                        before = self.detector.unwatched
                        for doc, res in zip(new, labels[offset : offset + len(new)], strict=True):
                            mine += self.detector.observe(doc_keys(doc, res), doc.time, res.negative, doc.id)
                        if new:
                            mine += self.detector.advance()  # to the present: new[-1] may be held
                        changed.append(mine)
                        unwatched.append(self.detector.unwatched - before)
                        offset += len(new)
                    every = [a for mine in changed for a in mine]
                    # Still ours? (a lock file removed, a PostgreSQL session cut): else nothing is
                    # stored and the counting is undone, rather than two processes alerting twice.
                    if self._check_lease():
                        raise _LeaseRetaken
                    began = self.detector.began if self._record_began else None
                    saved = set(
                        self.store.save(
                            self.name,
                            flat,
                            labels,
                            alerts=every,
                            position=position,
                            file=file,
                            files=files,
                            began=began,
                        ).inserted
                    )
                    if began is not None:
                        self._record_began = False
            except _LeaseRetaken:
                # Lost while the batch was classified, and taken again: the counting is undone, the
                # windows are read back (with what another ingester stored meanwhile) and the batch
                # is refused whole, to be sent again (a follower reads its lines again).
                self._rebuild()
                raise StoreError(
                    f"monitor {self.name}: its lease was lost while a batch was classified and is "
                    "taken again; nothing of the batch was stored and the windows were read back from "
                    "the store: send it again"
                ) from None
            offset = 0
            for new, mine, result, left in zip(news, changed, results, unwatched, strict=True):
                inserted = sum(1 for i in range(offset, offset + len(new)) if i in saved)
                offset += len(new)
                result.stored = inserted
                result.duplicates += len(new) - inserted  # stored meanwhile by another process
                result.alerts = [a for a in mine if a.ended_at is None]
                result.unwatched = left
                self.totals.add(result)
            for alert in every:
                self._log_alert(alert)
            self._log_unwatched(sum(unwatched))
        if self.on_ingest is not None:
            self.on_ingest(results)
        return results

    def _log_unwatched(self, count: int) -> None:
        """Say that keys were left unwatched at the cap: at most one line per ``UNWATCHED_LOG_S``,
        with the count since the last one (a flood of made-up names is one line a minute)."""
        self._unwatched_pending += count
        now = time.monotonic()
        if not self._unwatched_pending or now - self._unwatched_logged < UNWATCHED_LOG_S:
            return
        elapsed = now - self._unwatched_logged
        since = "" if elapsed == math.inf else f" in the last {elapsed:.0f}s"
        s = self.detector.settings
        log.warning(
            "monitor %s: %d topics or companies of documents left unwatched%s (latest %s): "
            "detector.max_keys=%d keys are watched, each with a document in the last window or an "
            "open alert; those documents are stored and in trends, only alerts on their keys are off "
            "(raise max_keys: ~%d KB a key); at most one such line per %.0fs",
            self.name,
            self._unwatched_pending,
            since,
            loggable(self.detector.last_unwatched or "-"),
            s.max_keys,
            round(s.ring_steps * 8 / 1000),
            UNWATCHED_LOG_S,
        )
        self._unwatched_pending, self._unwatched_logged = 0, now

    def _log_alert(self, alert: Alert) -> None:
        """One line per alert; its key and document ids escaped, as clients name them (a topic or
        company with a control character would start a forged line of the log)."""
        key = loggable(alert.key)
        if alert.ended_at is None:
            unit = ".0%" if alert.kind == "negative_share" else ".0f"
            log.warning(
                "monitor %s: ALERT %s %s: %s (baseline %s), level %.1f at %s; %d documents, first %s",
                self.name,
                key,
                alert.kind.replace("_", " "),
                format(alert.observed, unit),
                format(alert.baseline, unit),
                alert.level,
                alert.started_at.isoformat(),
                len(alert.docs),
                ", ".join(loggable(d) for d in alert.docs[:3]),
            )
        else:
            # isoformat, as started_at above: str() wrote "2026-03-02 08:53:00+00:00", which log
            # masking once took for a phone number
            ended = alert.ended_at.isoformat()
            log.warning("monitor %s: alert %s on %s ended at %s", self.name, alert.id, key, ended)

    def _warm_up(self) -> None:
        """Rebuild the windows from stored documents and reopen the episodes left open."""
        span = self.store.time_range(self.name)
        # The first document the monitor counted: history starts no earlier, whatever the replay
        # holds first (an old article stored among the documents replayed). Recorded by the first
        # batch of a monitor that stored none; a store made before it was kept has the oldest
        # stored document (``schema.BACKFILL``).
        self.detector.began = self.store.began(self.name)
        self._record_began = span is None and self.detector.began is None
        if span is None:
            return
        latest = self.latest_time()
        until = math.floor(latest.timestamp())
        if span[1] > latest:  # stored before max_future was checked: left out, or they rule the windows
            log.warning(
                "monitor %s: stored documents dated up to %s are further ahead of the clock than "
                "max_future allows: the windows leave them out (check their dates and delete them)",
                self.name,
                span[1].isoformat(),
            )
            span = self.store.time_range(self.name, until_epoch=until)
            if span is None:
                return
        last = span[1]
        s = self.config.detector
        # Every bucket the detector's ring holds (the newest window and every baseline window's,
        # 2 x window + baseline - 1 steps) and one more: a replay of less leaves the oldest baseline
        # windows part empty, and the levels (and alerts) after a restart differ from a run's.
        # In epoch seconds, not datetimes: a store whose documents are all dated near 0001-01-01
        # (some feeds' "unknown") took a datetime below year 1, and the monitor could not start.
        since = math.floor(last.timestamp()) - int((2 * s.window_steps + s.baseline_steps) * s.step_s)
        # History starts at the first replayed document, or earlier if the stream ran before the
        # replay: the latest document before it then counts as its start, unless a whole ring
        # passed between them (the detector's rule in a run). Not the oldest stored document: one
        # stray item dated 0001-01-01 took the baseline as complete, and alerts came within minutes.
        before = self.store.time_range(self.name, until_epoch=since - 1)
        if before is not None:
            self.detector.start_at(before[1])
        rows = self.store.recent(self.name, since, until)
        # At most detector.max_keys keys, the most recently active (and those in an open episode):
        # replayed in time order, the cap would keep the first keys named and refuse today's.
        open_alerts = self.store.alerts(self.name, open_only=True)
        named_by_row = [stored_keys(topic, companies) for _, _, topic, _, companies in rows]
        last_seen = {key: i for i, named in enumerate(named_by_row) for key in named}
        watched = self.detector.most_recent(last_seen, keep=(a.key for a in open_alerts))
        left_out = sum(1 for key in last_seen if key not in watched)
        if left_out:
            log.warning(
                "monitor %s: the stored documents of the last baseline name %d topics and companies; "
                "the %d most recently active are watched (detector.max_keys=%d), the other %d only "
                "stored and in trends until a key is free",
                self.name,
                len(last_seen),
                len(last_seen) - left_out,
                self.config.detector.max_keys,
                left_out,
            )
        left_until: datetime | None = None  # the newest document of a key left out
        for (doc_id, moment, _, negative, _), named in zip(rows, named_by_row, strict=True):
            keys = [k for k in named if k in watched]
            if len(keys) < len(named):
                left_until = moment
            self.detector.observe(keys, moment, negative, doc_id, quiet=True)
        # Replayed in time order, a document ahead of the rest is last, with no later one to confirm
        # or refute it: it is the present, as the newest stored document (a sparse feed's) was.
        self.detector.settle()
        self.detector.resume(open_alerts)
        if left_until is not None:
            # A key left out that comes back is new to the detector, not one with a quiet history:
            # its documents replayed here were not counted. Said after the replay, so the keys
            # watched, made during it, keep the stream's start as theirs.
            self.detector.history_lost(left_until)

    # -- sources -------------------------------------------------------------------------------------

    def _parse(self, path: Path, lines: Sequence[Line], result: IngestResult) -> list[Document]:
        docs, latest = [], self.latest_time()
        for line in lines:
            try:
                if line.raw is None:
                    raise ValueError("line over the size limit")
                docs.append(parse_line(line.raw, max_text_chars=self.config.max_text_chars, latest=latest))
            except ValueError as exc:
                result.skipped += 1
                log.warning("%s line %d: %s; skipped", path, line.number, exc)
        return docs

    def _follow(self, source: Source, *, once: bool = False) -> IngestResult:
        # The name as given, not resolved: a symlink re-pointed to a new file (a daily rotation
        # scheme) is then a rotation the follower sees (it reads the old file to its end first),
        # where resolving it would start a new follower and lose the old file's last lines.
        path = source.path.absolute()
        follower = self._followers.get(path)
        if follower is None or not follower.reading:
            # Gone (or its folder unreadable), with no file of it open (between a rotation's rename
            # and the new file the old one is still open): raises, poll warns once, the others go on.
            os.stat(path)
        if follower is None:
            follower = FileFollower(path, self.store.position(self.name, str(path)))
            self._followers[path] = follower
        total = IngestResult(keep_alerts=once)  # following, a read can last as long as its writer
        try:
            while not self._stop.is_set() and (chunk := follower.read(grace=not once)) is not None:
                skipped = IngestResult()
                docs = self._parse(chunk.path, chunk.lines, skipped)
                total.add(self.process(docs, position=(str(path), chunk.position), skipped=skipped.skipped))
        except BaseException:
            # read() moved the follower past lines whose commit did not happen (the database was
            # down, say): drop it, so the next run starts again from the committed position
            # (store.position) and reads those lines again instead of carrying on after them.
            self._followers.pop(path, None)
            follower.close()
            raise
        return total

    def _directory(self, source: Source) -> IngestResult:
        """Read a folder's new files, several to a batch (see ``_FolderBatch``), oldest first.

        Lines from consecutive files are gathered up to ``CHUNK_DOCS`` and classified and stored
        together, each file recorded as read in the transaction that stores its last lines: one
        forward pass, one id lookup and one commit per ``CHUNK_DOCS`` lines, not per file (2,000
        one-line files took 33 s against 12 s as one file, and 100,000 about 24 minutes). A file
        that fits a batch goes into one whole (the batch in hand is stored first if it has no
        room), so its documents are stored if and only if it is recorded read, whenever a kill
        comes; a larger one is read a batch at a time, never whole in memory, and recorded with
        its last lines. A file that cannot be read is warned about and passed over, its lines not
        yet stored dropped from the batch; the other files go on.
        """
        folder = source.path.resolve()
        # A folder removed since the start listed as empty, without a word: poll warns about it.
        if not stat.S_ISDIR(os.stat(folder).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
        total = IngestResult()
        seen = self._seen_files.get((folder, source.pattern))
        if seen is None:
            seen = self._seen_files[(folder, source.pattern)] = SeenFiles(
                lambda names: self.store.seen_files(self.name, str(folder), names)
            )
        listed = list_files(folder, source.pattern)
        unreadable = self._unreadable_files.setdefault((folder, source.pattern), set())
        unreadable &= set(listed)  # a file gone or rewritten: warned about again if it fails again
        batch = _FolderBatch(str(folder))
        for key in seen.pending(listed):
            if self._stop.is_set():
                return total  # the batch in hand is dropped: its files stay unread, read next time
            path = folder / key.name
            if _still_being_written(path, key):
                continue  # read at a later poll, once whole (still pending: not recorded read)
            lines = file_lines(path)
            mark = batch.mark()
            buffer: list[Line] = []  # read, not in the batch yet: at most CHUNK_DOCS + 1 lines
            first = True
            while True:
                room = CHUNK_DOCS - batch.lines
                try:
                    # One line more than fits: whether the file ends in this batch (and is recorded
                    # read in its transaction) is known before the batch is stored. First a whole
                    # batch's worth: a file that fits one is never split between two.
                    want = (CHUNK_DOCS if first else room) + 1 - len(buffer)
                    buffer += islice(lines, max(want, 0))
                except OSError as exc:
                    batch.drop(mark)  # none of its lines in a batch that records it unread
                    self._unreadable(path, key, unreadable, exc)
                    break
                if first and room < len(buffer) <= CHUNK_DOCS:  # it fits a batch, not this one
                    if self._stop.is_set():
                        return total
                    total.add(self._store_folder_batch(batch, seen))
                    mark, room = batch.mark(), CHUNK_DOCS
                first = False
                ended = len(buffer) <= room
                part, buffer = buffer[:room], buffer[room:]
                if part:
                    skipped = IngestResult()
                    batch.add(self._parse(path, part, skipped), len(part), skipped.skipped)
                if ended:
                    batch.finished.append(key)
                    unreadable.discard(key)
                    break
                if self._stop.is_set():
                    return total  # the file stays unread: its documents so far count once anyway
                total.add(self._store_folder_batch(batch, seen))  # full; the file goes on
                mark = batch.mark()
            if batch.full():
                if self._stop.is_set():
                    return total
                total.add(self._store_folder_batch(batch, seen))
        if not batch.empty() and not self._stop.is_set():
            total.add(self._store_folder_batch(batch, seen))
        return total

    def _store_folder_batch(self, batch: _FolderBatch, seen: SeenFiles) -> IngestResult:
        """Classify and store a folder batch, its finished files recorded read in the same commit."""
        results = self.process_many(
            batch.docs,
            files=[(batch.folder, key) for key in batch.finished],
            skipped=batch.skipped,
        )
        for key in batch.finished:
            seen.add(key)  # committed as read with its last lines
        batch.clear()
        total = IngestResult()
        for result in results:
            total.add(result)
        return total

    @staticmethod
    def _unreadable(path: Path, key: FileKey, unreadable: set[FileKey], exc: OSError) -> None:
        """Warn once per file version that it cannot be read (it is tried again each poll)."""
        if key in unreadable:
            log.debug("%s: still cannot be read (%s)", path, exc)
        else:
            unreadable.add(key)
            reason = exc.strerror or type(exc).__name__
            log.warning("%s: cannot be read (%s); skipped, tried again each poll", path, reason)

    def poll(self, *, once: bool = False) -> IngestResult:
        """Read every source once, as far as it goes now (``once``: a rotated followed file is left
        for the new one at once, without waiting polls for its writer). Following (not ``once``), the
        alerts opened are counted, not kept, as ``run``'s."""
        total = IngestResult(keep_alerts=once)
        for i, source in enumerate(self.config.sources):
            try:
                total.add(
                    self._follow(source, once=once) if source.kind == "follow" else self._directory(source)
                )
            except OSError as exc:
                # One source's file or folder failing (unreadable, I/O error) must not stop the
                # sources after it; the store's errors are no OSError and still stop the poll.
                message = f"{source.kind} {source.path}: {exc.strerror or exc}"
                if self._source_errors.get(i) != message:
                    self._source_errors[i] = message
                    log.warning(
                        "monitor %s: %s; the other sources go on, tried again each poll", self.name, message
                    )
                continue
            if self._source_errors.pop(i, None) is not None:
                log.warning("monitor %s: %s %s: read again", self.name, source.kind, source.path)
        return total

    def run(self, *, once: bool = False, stop: threading.Event | None = None) -> IngestResult:
        """Follow the sources until ``stop`` is set (or, with ``once``, until nothing new is left).

        Stopping waits for the batch in hand to be committed: nothing classified is lost. Returns
        the counts, and the alerts opened only with ``once``: following, ``alert_count`` counts them
        (kept, they piled up for the life of the process; the store has them all).

        Raises:
            ConfigError: at the first call, a source does not exist (before anything is read).
        """
        # Existence only, and only at the first call: a source unreadable or gone later is poll's
        # to warn about and retry, not a reason to read none of them. (The server calls run again
        # after any failure: checked each time, one folder removed failed every call, and not one
        # source was read again. The command and the server check readability at start.)
        if not self._sources_checked:
            self.config.check_sources(readable=False)
            self._sources_checked = True
        self._stop = stop = stop or threading.Event()
        total = IngestResult(keep_alerts=once)
        while not stop.is_set():
            started = time.monotonic()
            result = self.poll(once=once)
            total.add(result)
            if once and not (result.stored or result.duplicates or result.skipped):
                self._name_unfinished_lines()
                break
            if not once:
                # in slices on the main thread: a SIGTERM another thread took still stops it soon
                wait_for_stop(stop, max(0.0, self.config.poll_s - (time.monotonic() - started)))
        return total

    def _name_unfinished_lines(self) -> None:
        """At the end of a ``--once`` run: a followed file whose last line has no newline yet.

        Following, such a line waits for its newline (the writer may be mid-line); a run that stops
        here would otherwise leave it out without a word.
        """
        for path, follower in self._followers.items():
            waiting = follower.unfinished_bytes()
            if waiting:
                log.warning(
                    "%s line %d: %d bytes without a newline yet, left for a later run (a followed "
                    "file's last line counts once its newline is written)",
                    path,
                    follower.position.line + 1,
                    waiting,
                )

    def _check_lease(self) -> bool:
        """Whether the lease had been lost and is taken again now (``Lease.check``).

        Raises:
            MonitorBusyError: another process holds it now.
            StoreError: the monitor is closed, or the lease cannot be checked.
        """
        if self._lease is None:
            raise StoreError(f"monitor {self.name} is closed")
        return self._lease.check()

    def _rebuild(self) -> None:
        """Read the windows back from the store, as a restart does (a fresh detector, warmed up).

        After the lease was lost and taken again: another ingester may have held it meanwhile and
        stored documents this detector never counted (with the old windows, a surge they began
        went unseen: 3 documents counted of 14 stored). Until this succeeds (the store may fail
        too) ``_stale`` stays set and each batch tries it first.
        """
        log.warning(
            "monitor %s: its lease was lost and is taken again; reading its windows back from the "
            "store (another ingester may have stored documents meanwhile)",
            self.name,
        )
        self._stale = True
        self.detector = self._new_detector()
        self._warm_up()
        self._stale = False

    def _new_detector(self) -> Detector:
        """An empty detector of this monitor's settings (``_warm_up`` then reads its windows back)."""
        return Detector(self.name, self.config.detector, protected=protected_keys(self.config))

    def close(self) -> None:
        """Close the followed files, give up the lease (another process may ingest now) and close
        the store when the monitor opened it. Idempotent."""
        for follower in self._followers.values():
            follower.close()
        self._followers.clear()
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()
        if self._own_store:
            self.store.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


WRITING_S = 2.0
"""A folder file changed this recently, its last line without a newline, is left for a later poll."""


def _still_being_written(path: Path, key: Any) -> bool:
    """Whether ``path`` looks half-written: modified in the last ``WRITING_S`` seconds and ending
    neither with a newline nor with the ``}`` or ``]`` that closes a record or an array (a writer
    such as ``cp`` or ``jq > inbox/x.jsonl`` mid-way).

    Read then, its cut last line was logged and counted as malformed, though the whole file was
    read again once written. A file that ends so and stays so is read after ``WRITING_S``.
    """
    if time.time_ns() - key.mtime_ns > WRITING_S * 1e9 or key.size == 0:
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(max(key.size - 16, 0))
            tail = fh.read()
    except OSError:
        return False  # reading it will say what is wrong
    if tail.endswith(b"\n"):
        return False
    # NULs too: a UTF-16 file's "}" comes with one
    return not tail.rstrip(b" \t\r\n\x00").endswith((b"}", b"]"))
