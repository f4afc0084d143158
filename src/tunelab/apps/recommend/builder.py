"""``build``: a config and its data -> a recommender folder (text model, CF, ranker, index).

Stages, each timed in ``build_report.json``: read the data; split it (unless the caller gives
train and val); fine-tune the bi-encoder on the train positives; embed every item; fit CF on the
train positives (and ``cf.second``'s model, when set); fit the ranker on the validation positives
(features from train only); index the item vectors. The folder is assembled in a temporary
sibling and renamed into place at the end, so a failed build leaves nothing half-written and a
server reading the old folder sees the old one or the new one.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunelab.apps.recommend.cf import CFModel, fit_cf
from tunelab.apps.recommend.config import RecommendConfig
from tunelab.apps.recommend.crossencoder import CrossScorer, fit_cross_stage
from tunelab.apps.recommend.data import Dataset, id_text, load_dataset, texts_before
from tunelab.apps.recommend.index import ItemIndex
from tunelab.apps.recommend.live import create as create_live
from tunelab.apps.recommend.ranker import NoPoolPositive, Ranker, fit_ranker, training_rows
from tunelab.apps.recommend.recommender import META, REPORT, Recommender
from tunelab.apps.recommend.split import split_chronological
from tunelab.apps.recommend.textmodel import TextModel, Triple, make_triples
from tunelab.atomic import atomic_write_json
from tunelab.data.scripts import has_visible_text
from tunelab.errors import ConfigError, DataError, first_line

log = logging.getLogger(__name__)


def build(
    cfg: RecommendConfig,
    out: str | Path,
    *,
    dataset: Dataset | None = None,
    train: pd.DataFrame | None = None,
    val: pd.DataFrame | None = None,
    progress: bool = False,
    overwrite: bool = False,
    absorb_val: bool = True,
    text_model: TextModel | None = None,
    cross_scorer: CrossScorer | None = None,
    keep_live: bool = False,
) -> Recommender:
    """Build a recommender folder at ``out`` and return it loaded.

    Args:
        cfg: the config (``load_config``).
        out: the folder to write, e.g. ``recs/movielens``.
        dataset: the data (default: ``load_dataset(cfg)``).
        train, val: the interactions to learn from and the validation positives the ranker is
            fitted on (default: ``split_chronological`` with the config's split section).
        progress: show progress bars.
        overwrite: replace a recommender folder already at ``out`` (its live items and events go,
            unless ``keep_live``); off by default, as the command is without ``--overwrite``: a
            second build into the same folder silently dropped the items and events added live.
        keep_live: with ``overwrite``, carry the replaced folder's ``live.sqlite`` rows into the new
            one (``--keep-live``): each added item re-embedded from its text by the new text model
            (left out, and counted, when the new catalog has its id), every event as recorded (its
            time and positive flag). Only ``live.sqlite`` is read, so a folder whose other files no
            longer load (an older tunelab's) keeps them too; it is read again as the new folder is
            written, so rows added during the training are kept (a row a server writes in the
            moment before the swap is not: stop writers first). Counted in the report's
            ``kept_live``.
        absorb_val: after the ranker is fitted, refit CF on train + val and keep val in the users'
            histories, so nothing a user did is left out of serving (on by default, as ``tunelab app
            recommend build`` does: off, ``exclude_seen`` returned items the user had already rated;
            pass False to serve the training split only). With the split made here (``train``
            not given), every interaction is kept: also ``split.test_frac``'s share and the
            non-positive rows after each user's cutoff, which the split sets aside. The items are
            then served with every dated extra-text value (``fitting_items``), re-embedded.
        text_model: a text model already fine-tuned on this ``train`` (it is not trained again):
            the benchmark compares ranker settings on one text model, the costly part of a build.
        cross_scorer: likewise, a cross-encoder already trained on this ``train``
            (``model.cross_encoder``); its blend with the ranker is fitted again.

    Raises:
        ConfigError: ``out`` is something else, or a recommender and ``overwrite`` is off;
            ``keep_live`` without ``overwrite`` or without a recommender at ``out``, or its
            ``live.sqlite`` cannot be read.
        DataError: bad data, no validation positives to fit the ranker on, or (with
            ``model.cross_encoder``) none among the validation users' top candidates.
    """
    target = Path(out)
    from tunelab.apps.support.build import restore_interrupted

    restore_interrupted(target)  # before the check: a folder an interrupted build set aside is still there
    _check_keep_live(target, overwrite, keep_live)
    _check_target(target, overwrite)
    if keep_live:
        _read_live(target)  # a file that cannot be read is refused now, not after the training
    timings: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    ds = dataset if dataset is not None else load_dataset(cfg)
    lap("read_s")
    split_report: dict[str, Any] = {"given": train is not None}
    # What serving keeps after absorb_val: the given train + val (a benchmark holds its test rows
    # out), or, when the split is made here, every interaction, also the test share and the
    # non-positives after each user's cutoff that the split sets aside (they are seen all the same).
    served = None if train is not None else ds.interactions
    held_test: pd.DataFrame | None = None  # the split's test rows, held out like val (made here)
    if train is None:
        sp = split_chronological(
            ds.interactions,
            test_frac=cfg.split.test_frac,
            val_frac=cfg.split.val_frac,
            min_positives=cfg.split.min_positives,
        )
        train, val, held_test = sp.train, sp.val, sp.test
        split_report.update(test=len(sp.test), dropped_after_cutoff=sp.dropped, repeated_held_out=sp.repeated)
    if val is not None and "positive" in val:
        val = val[val["positive"]]
    if val is None or val.empty:
        raise DataError(
            "no validation positives to fit the ranker on: users need at least "
            f"{cfg.split.min_positives} positives (split.min_positives) for some to be held out"
        )
    split_report.update(train=len(train), train_positives=int(train["positive"].sum()), val=len(val))
    lap("split_s")

    items = ds.items[["item_id", "text"]].reset_index(drop=True)
    index_of = {i: n for n, i in enumerate(items["item_id"])}
    # The models are fitted on item text without the dated values (tags) written at or after their
    # author's first held-out positive (validation, or test when split.test_frac holds some out);
    # ``changed``: the items whose served text has more (served once fitted, with absorb_val).
    held = val if held_test is None else pd.concat([val, held_test[held_test["positive"]]])
    fit_items, changed, text_filter = fitting_items(cfg, ds, items, held)
    texts = dict(zip(fit_items["item_id"], fit_items["text"], strict=True))
    if text_model is None:
        text = TextModel.from_base(cfg.model)
        triples = make_triples(train, texts, cfg.model)
        text_report = text.fit(triples, cfg.model, progress=progress)
    else:
        text, text_report = text_model, {"reused": True}
    lap("text_model_s")
    vectors = text.encode(fit_items["text"].tolist(), progress=progress)
    lap("embed_items_s")

    def fit_both(frame: pd.DataFrame) -> tuple[CFModel, CFModel | None]:
        """``cf`` and ``cf.second`` (None without one) on ``frame``'s positives."""
        pos = frame[frame["positive"]]
        users, where = pos["user_id"].to_numpy(), pos["item_id"].map(index_of).to_numpy()
        second = cfg.cf.second
        return (
            fit_cf(users, where, len(items), cfg.cf),
            fit_cf(users, where, len(items), second, key="cf.second") if second is not None else None,
        )

    cf, cf2 = fit_both(train)
    lap("cf_s")
    index = ItemIndex.build(vectors, ann_min_items=cfg.index.ann_min_items)
    lap("index_s")

    meta: dict[str, Any] = {
        "name": cfg.name,
        "config": cfg.to_dict(),
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
        "tunelab_version": _version(),
        "dims": int(vectors.shape[1]),
    }
    history = train[["user_id", "item_id", "time", "positive"]]
    rec = Recommender(
        folder=None,
        config=cfg,
        meta=meta,
        text=text,
        items=fit_items,
        index=index,
        cf=cf,
        history=history,
        ranker=None,
        cf2=cf2,
    )
    rows = training_rows(rec, val, cfg.ranker, progress=progress)
    try:
        rec.ranker = fit_ranker(rows, cfg.ranker, age_never=rec.meta["age_never"])
    except NoPoolPositive as exc:
        raise DataError(f"the ranker cannot be fitted: {exc}") from None
    except ValueError as exc:
        raise DataError(
            f"the ranker cannot be fitted: {exc}; more users with {cfg.split.min_positives}+ positives"
        ) from None
    lap("ranker_s")
    cross_report: dict[str, Any] | None = None
    if cfg.model.cross_encoder:
        if cross_scorer is None:
            cross_scorer = CrossScorer.from_base(cfg.model)
            triples = candidate_negatives(rec, make_triples(train, texts, cfg.model), cfg.model.seed)
            cross_train = cross_scorer.fit(triples, cfg.model, progress=progress)
        else:
            cross_train = {"reused": True}
        lap("cross_encoder_s")
        try:
            rec.cross = fit_cross_stage(
                cross_scorer,
                cross_candidates(rec, val, cfg.model.seed, fold_rankers(rows, cfg, rec.meta["age_never"])),
                cfg.model.cross_encoder_top,
            )
        except ValueError as exc:
            raise DataError(f"the cross-encoder stage cannot be fitted: {exc}") from None
        cross_report = {"training": cross_train, "stage": rec.cross.report}
        meta["cross_encoder"] = rec.cross.report
        lap("cross_stage_s")
    if absorb_val:
        both = served if served is not None else pd.concat([train, val], ignore_index=True)
        rec.cf, rec.cf2 = fit_both(both)
        history = both[["user_id", "item_id", "time", "positive"]].sort_values("time", kind="stable")
        if changed:  # served: every value (tag) known now
            vectors = vectors.copy()
            vectors[changed] = text.encode(items["text"].iloc[changed].tolist(), progress=progress)
            index = ItemIndex.build(vectors, ann_min_items=cfg.index.ann_min_items)
        rec = Recommender(
            folder=None,
            config=cfg,
            meta=meta,
            text=text,
            items=items,  # the served text (the fitted one where nothing changed)
            index=index,
            cf=rec.cf,
            history=history,
            ranker=rec.ranker,
            cross=rec.cross,
            cf2=rec.cf2,
        )
        lap("absorb_val_s")
    meta["ranker"] = rec.ranker.report
    report = {
        "name": cfg.name,
        "data": ds.report,
        "split": split_report,
        "text_model": {**text_report, "base": cfg.model.base, "device": text.device},
        "cf": {
            "algorithm": cfg.cf.algorithm,
            "users": len(cf.user_ids),
            "items_with_factors": int(cf.has_cf.sum()),
            **({"second": cfg.cf.second.algorithm} if cfg.cf.second is not None else {}),
        },
        "ranker": rec.ranker.report,
        **({"cross_encoder": cross_report} if cross_report is not None else {}),
        "index": {"search": index.kind, "items": len(items), "dims": int(vectors.shape[1])},
        **({"text_filter": {**text_filter, "served_with_every_value": absorb_val}} if text_filter else {}),
        "absorb_val": absorb_val,
        "timings": timings,
    }

    def write(tmp: Path) -> None:
        rec.save(tmp)
        # live.sqlite made here (empty tables; the first write switches it to WAL, so a reader
        # without write access loads a fresh build), not on the first write: two processes making
        # it at once collided ("database is locked", no wait)
        create_live(tmp)
        if keep_live:  # read now: rows a server added during the build are kept too
            report["kept_live"] = _carry_live(rec, _read_live(target), tmp)
        report["timings"]["total_s"] = round(time.perf_counter() - started, 3)
        atomic_write_json(tmp / REPORT, report)

    from tunelab.apps.support.build import write_folder  # the same temp-then-rename as a bot folder

    write_folder(target, write, overwrite=overwrite)
    return Recommender.load(target)


def fitting_items(
    cfg: RecommendConfig, ds: Dataset, items: pd.DataFrame, held: pd.DataFrame
) -> tuple[pd.DataFrame, list[int], dict[str, int]]:
    """``items`` with the text the models are fitted on, the positions whose text that changed,
    and counts for the report (empty when no extra text names its users and times).

    ``held``: the held-out positives; each user's first one is the cutoff for their values.
    """
    if ds.dated is None:
        return items, [], {}
    cutoff = held.groupby(held["user_id"].astype(str))["time"].min()
    fit_texts, left_out = texts_before(cfg.items, ds, cutoff)
    changed = [i for i, (a, b) in enumerate(zip(fit_texts, items["text"], strict=True)) if a != b]
    report = {
        "values_left_out": left_out,
        "items_fitted_with_fewer_values": len(changed),
        # items whose only text was such values: fitted as an empty text
        "items_fitted_without_text": sum(1 for i in changed if not has_visible_text(fit_texts[i])),
    }
    return items.assign(text=fit_texts), changed, report


#: The cross-encoder stage is fitted on at most this many validation users (seeded sample): each
#: costs ``cross_encoder_top`` cross-encoder passes.
CROSS_FIT_USERS = 1000


#: The cross-encoder's own negatives come from the user's top this many by CF and by text.
CROSS_NEGATIVE_POOL = 50


def candidate_negatives(rec: Recommender, triples: list[Triple], seed: int) -> list[Triple]:
    """``triples`` with negatives like the candidates the cross-encoder will re-score: one from the
    user's top ``CROSS_NEGATIVE_POOL`` by CF and one from their top by the text model (items they
    did not like), beside the popular one the bi-encoder drew. A cross-encoder trained against
    popular items only learns "popular is wrong", which says nothing among a ranking's top 30,
    where every item is popular (measured on MovieLens: it then lowered the blend, weight < 0)."""
    rng = np.random.default_rng(seed)
    out = []
    # each user's tops, once: a user has many triples, and the recommender keeps a bounded number
    # of contexts (CONTEXT_CACHE), so asking it per triple could encode a user's query again
    users: dict[str, tuple[set[int], list[list[int]]] | None] = {}
    for t in triples:
        if t.user not in users:
            ctx = rec._context(t.user)
            users[t.user] = (
                None
                if ctx is None
                else (
                    set(rec._seen_indices(t.user).tolist()),
                    [rec._cf_top(ctx, CROSS_NEGATIVE_POOL), rec._text_top(ctx, CROSS_NEGATIVE_POOL)],
                )
            )
        found = users[t.user]
        drawn: list[int] = []
        if found is not None:
            seen, tops = found
            for top in tops:
                free = [i for i in top if i not in seen]
                if free:
                    drawn.append(int(rng.choice(free)))
        extra = tuple(
            text
            for text in dict.fromkeys(rec._texts[i] for i in drawn)
            if text not in t.liked and text != t.positive and text not in t.negatives
        )
        out.append(Triple(t.query, t.positive, t.negatives + extra, t.liked, t.user))
    return out


def fold_rankers(rows: dict[str, Any], cfg: RecommendConfig, age_never: float) -> list[Ranker]:
    """Two rankers, each fitted on the ranker rows of one half of the validation users (by their
    ``training_rows`` group: even, odd) and meant to score the *other* half: the cross-encoder
    stage is fitted on blended scores the ranker did not see the labels of, as at serving time.

    Raises:
        ValueError: a half has no positive or no negative row.
    """
    halves = []
    for k in (0, 1):
        part = _half(rows, k)
        halves.append(fit_ranker(part, cfg.ranker, age_never=age_never))
    return halves


def _half(rows: dict[str, Any], k: int) -> dict[str, Any]:
    """``rows`` (and their ``"pool"`` rows, when there are) without the users of half ``k``."""
    keep = rows["group"] % 2 != k  # fitted on the other half, scores half k
    part = {name: rows[name][keep] for name in ("X", "y", "group")}
    if "pool" in rows:
        part["pool"] = _half(rows["pool"], k)
    return part


def cross_candidates(
    rec: Recommender, val: pd.DataFrame, seed: int, rankers: list[Ranker] | None = None
) -> list[tuple[str, list[str], np.ndarray, np.ndarray]]:
    """Per validation user (up to ``CROSS_FIT_USERS``): their query, the texts, blended scores and
    labels (1: a validation positive) of the candidates a ranking would score for them.

    ``rankers``: ``fold_rankers``' two, the user's half picking the one fitted without them (the
    user's half is their position in the sorted validation users, as ``training_rows`` numbers
    them); None: the recommender's own ranker.
    """
    half = {str(u): g % 2 for g, u in enumerate(sorted(val["user_id"].unique()))}
    by_user = val.groupby("user_id")["item_id"].apply(lambda s: set(s.astype(str)))
    users = sorted(by_user.index.astype(str))
    if len(users) > CROSS_FIT_USERS:
        rng = np.random.default_rng(seed)
        users = sorted(rng.choice(users, size=CROSS_FIT_USERS, replace=False).tolist())
    out = []
    for user in users:
        ctx = rec._context(user)
        query = rec._query_text(user)
        if ctx is None or query is None:
            continue
        items = rec._candidates(ctx, 1, rec._seen_indices(user))
        liked = by_user[user]
        labels = np.array([rec._ids[i] in liked for i in items], dtype=np.int8)
        ranker = rankers[half[user]] if rankers is not None else rec.ranker
        scores = ranker.score(rec._features(ctx, items))
        out.append((query, [rec._texts[i] for i in items], scores, labels))
    return out


def read_report(folder: str | Path) -> dict[str, Any]:
    """The folder's ``build_report.json`` ({} when missing)."""
    path = Path(folder) / REPORT
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _check_keep_live(target: Path, overwrite: bool, keep_live: bool) -> None:
    """``keep_live`` has a recommender being replaced to keep the live rows of."""
    if not keep_live:
        return
    if not overwrite:
        raise ConfigError(
            "--keep-live (keep_live=True) keeps the added items and events of the recommender that "
            "--overwrite replaces; give --overwrite too"
        )
    if not (target / META).is_file() and (
        not target.exists() or (target.is_dir() and not any(target.iterdir()))
    ):
        raise ConfigError(
            f"{target}: no recommender there, so no added items and events to keep; "
            "leave out --keep-live (keep_live=True)"
        )


def _read_live(target: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The items and events of the recommender at ``target`` (``live.read_rows``), or a one-line error."""
    import sqlite3

    from tunelab.apps.recommend.live import FILE, read_rows

    try:
        return read_rows(target)
    except (sqlite3.DatabaseError, ValueError) as exc:
        raise ConfigError(
            f"{target / FILE}: the live items and events cannot be read ({first_line(exc)}); restore it "
            "from a backup, or build without --keep-live (they are then lost); the folder is left as is"
        ) from None


def _carry_live(
    rec: Recommender, rows: tuple[list[dict[str, Any]], list[dict[str, Any]]], folder: Path
) -> dict[str, int]:
    """Write the old folder's live ``rows`` into ``folder``'s ``live.sqlite`` (the new build's, not yet
    in place) with the store's own inserts: the items not in ``rec``'s catalog with vectors from its
    text model (as ``Recommender.add_items`` encodes them), the events as recorded. Returns the
    counts for the report."""
    from tunelab.apps.recommend.live import LiveStore, leave_wal

    items, events = rows
    taken = set(rec.index_of)
    kept = []
    for row in items:
        item_id = id_text(row["item_id"])  # as Recommender.load reads it (an earlier tunelab kept "7.0")
        if item_id not in taken:  # the catalog wins
            taken.add(item_id)
            kept.append({**row, "item_id": item_id})
    store = LiveStore(folder)
    try:
        if kept:
            vectors = rec.text.encode([str(r["text"]) for r in kept]).astype(np.float32)
            store.add_items(
                [
                    (r["item_id"], r["fields"], str(r["text"]), v.tobytes(), float(r["added"]))
                    for r, v in zip(kept, vectors, strict=True)
                ]
            )
        if events:
            store.add_events(events)
    finally:
        store.close()
    if kept or events:
        leave_wal(folder)
    return {
        "items": len(items),
        "in_catalog": len(items) - len(kept),
        "events": len(events),
        "events_on_unknown_items": sum(1 for e in events if id_text(e["item_id"]) not in taken),
    }


def kept_live_line(kept: dict[str, int]) -> str:
    """The one line saying what ``build --keep-live`` kept (``kept_live`` in the report)."""
    left = f" ({kept['in_catalog']} now in the catalog, left out)" if kept["in_catalog"] else ""
    unknown = kept.get("events_on_unknown_items", 0)
    missing = f" ({unknown} on items the new folder lacks)" if unknown else ""
    return (
        f"kept {kept['items']} added items{left} and {kept['events']} events{missing} "
        "from the old folder's live.sqlite"
    )


def _check_target(target: Path, overwrite: bool) -> None:
    """``--out`` can take the recommender: not under a file, writable, and a recommender (or empty)
    when it exists.

    Writable is checked here, before any work: a read-only folder failed only after the data was
    read and the models trained (minutes of bi-encoder training), as "unexpected OSError" naming
    the hidden temporary folder.
    """
    from tunelab import check_writable  # the public API's, as apps use
    from tunelab.apps.out_path import check_out_parents

    check_out_parents(target)
    # the temporary folder is made beside the recommender and renamed onto it
    check_writable(target, "--out", fix="give --out DIR in a folder you can write", beside=True)
    if not target.exists():
        return
    if not (target / META).is_file():
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # an empty folder: nothing to lose
            return
        raise ConfigError(
            f"{target}: exists and is not a recommender folder; give another --out (it is left as is)"
        )
    if not overwrite:
        raise ConfigError(
            f"{target}: a recommender is already there; give --overwrite (overwrite=True) to replace it "
            "(its added items and recorded events go with it unless you add --keep-live), or another --out"
        )


def _version() -> str:
    import tunelab

    return tunelab.__version__
