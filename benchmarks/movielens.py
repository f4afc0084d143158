"""Recommender benchmark on MovieLens small: the blended text ranker against four baselines.

Protocol (issue 12), so that others can reproduce the figures:

- Data: ``ml-latest-small`` (2018-09 build, 100,836 ratings of 9,742 movies by 610 users) through
  configs/movielens.yaml (item text: title, genres and the users' tags). A rating >= 4 is a
  positive; lower ratings are interactions that are not positive.
- Tags: a tag is an interaction too, so the item text keeps only the tags dated before their
  author's first validation or test positive, and none on the cold items (an undated source, such
  as genome tags: every tag but the cold items'; ``tags_before_cutoffs``; ``--all-tags`` keeps
  every tag, the leaky protocol of the figures measured before 2026-12-03).
- Cold items: 10% of the items with at least 5 positives, drawn with ``--seed`` (default 0), are
  removed from training entirely (every interaction with them, from every split).
- Split (of the remaining interactions): per user, the chronologically last 20% of positives are
  the test set and the 10% before them the validation set (users with >= 5 positives; the others
  keep everything in training). Ties in time are broken by item id. Interactions that are not
  positive stay in training when dated before the user's first held-out positive; later ones (and
  repeats of a held-out positive) are in no split (``split_chronological``).
- Validation: each baseline is fitted on train for each point of its grid and ranked on the
  validation positives; the point with the best validation NDCG@10 is kept. The test split is
  never read while choosing.
- Test (warm items): the chosen baselines are fitted again on train + validation; the recommender
  is built once: text model and CF on train, its ranker fitted on validation, then (``build``'s
  ``absorb_val``, as ``tunelab app recommend build`` does) CF refitted on train + validation and
  validation kept in the users' histories, so every model sees the same history at test time.
  Nothing is fitted on test. For each test user, every warm
  item the user has not interacted with in train or validation is ranked (full ranking, no
  sampled negatives) and NDCG@10, Recall@10 (hits / the user's test positives), MRR and AUC are
  computed on the user's test positives, per user, then averaged.
- Cold items: for every user with a training history and a positive on a cold item, the cold
  items are ranked; AUC and NDCG@10 on them. The collaborative baselines score no cold item
  (ties, that is a random order: AUC 0.5).
- Ties are scored by their expectation over a random order (tunelab.apps.recommend.evaluate).
- Models: popularity, implicit's ALS and BPR, EASE (numpy), the text model alone
  (``Recommender.text_scores``) and the blended ranker (``Recommender.score_items``).
- Costs: the build's wall time and peak memory (in its own process), and the latency of one
  user's ranking through HTTP, ``GET /v1/apps/recommend/{name}/users/{id}?k=10&exclude_seen=true``
  on ``tunelab serve --recommend``, one request at a time (p50 / p99).

Targets: the blended ranker's warm NDCG@10 >= 1.05 x the best baseline's (the text model alone
included), and its cold AUC >= 0.75. Anchors, other datasets and protocols, for scale only:
RecBole on MovieLens-1M full ranking, NDCG@10 0.101 (popularity), 0.241 (BPR), 0.287 (EASE);
LightFM's cold-start items 0.716 AUC from tags.

    .venv/bin/python benchmarks/movielens.py --baselines-only --json ml-baselines.json   # minutes
    .venv/bin/python benchmarks/movielens.py --build-only        # build into runs/benchmarks/movielens, stop
    .venv/bin/python benchmarks/movielens.py --recommender runs/benchmarks/movielens --json movielens.json
    .venv/bin/python benchmarks/movielens.py --json movielens.json        # everything, build included
    .venv/bin/python benchmarks/movielens.py --quick --users 50 --skip-http   # a quick check
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import hashlib
import json
import math
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_common import read_json, serving  # benchmarks/bench_common.py

from tunelab.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "movielens.yaml"
TARGET = {"warm_ndcg_ratio": 1.05, "cold_auc": 0.75}
ANCHORS = {
    "RecBole, MovieLens-1M full ranking, NDCG@10": "0.101 popularity, 0.241 BPR, 0.287 EASE",
    "LightFM, cold-start items from tags": "0.716 AUC",
}
K = 10
BASELINES = ("popularity", "als", "bpr", "ease")
MODELS = (*BASELINES, "text", "blended")
STAGES = ("test", "validation")


def baseline_grids(quick: bool = False) -> dict[str, tuple[Any, list[dict[str, Any]]]]:
    """Each baseline's class and the hyper-parameters tried on validation (``quick``: one or two)."""
    from tunelab.apps.recommend.evaluate import EASE, ALSBaseline, BPRBaseline, Popularity, grid

    if quick:
        return {
            "popularity": (Popularity, [{}]),
            "als": (ALSBaseline, [{"factors": 32, "regularization": 0.1}]),
            "bpr": (BPRBaseline, [{"factors": 32}]),
            "ease": (EASE, [{"lam": 100.0}, {"lam": 500.0}]),
        }
    # Grids moved twice on validation until each choice lay inside them or was flat at the edge:
    # first ALS factors 32-128 / regularization 0.01-1 / alpha 1-10 and BPR learning rate
    # 0.01-0.05 (ALS chose 32 / 1 / 1, BPR 128 / 0.01), then ALS 16-64 / 0.3-10 / 0.5-2 and BPR
    # 128-256 / 0.005-0.02 (ALS chose 64 / 10 / 2, BPR 256 / 0.005).
    return {
        "popularity": (Popularity, [{}]),
        "als": (
            ALSBaseline,
            grid(
                {
                    "factors": [32, 64, 128],
                    "regularization": [3.0, 10.0, 30.0, 100.0],
                    "alpha": [1.0, 2.0, 4.0],
                }
            ),
        ),
        "bpr": (
            BPRBaseline,
            grid({"factors": [256, 512], "learning_rate": [0.0025, 0.005], "regularization": [0.003, 0.01]}),
        ),
        "ease": (EASE, grid({"lam": [30.0, 50.0, 70.0, 100.0, 150.0, 200.0, 500.0]})),
    }


# ------------------------------------------------------------------------------- the split
@dataclass
class BenchSplit:
    """What each stage sees. ``train``/``val``/``test`` hold warm items only."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    cold: list[str]  # the cold items, sorted
    cold_test: pd.DataFrame  # every positive on a cold item, of users with a training history
    items: list[str]  # the catalogue
    warm: list[str]  # the catalogue minus the cold items
    # ``--users N``: every user's validation rows, which the recommender's build absorbs too; the
    # baselines are refitted on train + these, so a quick run compares like with like.
    val_all: pd.DataFrame | None = None

    def counts(self) -> dict[str, int]:
        def positives(frame: pd.DataFrame) -> int:
            return int(frame["positive"].sum())

        return {
            "items": len(self.items),
            "cold_items": len(self.cold),
            "train_rows": len(self.train),
            "train_positives": positives(self.train),
            "val_positives": positives(self.val),
            "test_positives": positives(self.test),
            "test_users": int(self.test.loc[self.test["positive"], "user_id"].nunique()),
            "cold_test_positives": len(self.cold_test),
            "cold_test_users": int(self.cold_test["user_id"].nunique()),
        }

    def fingerprint(self) -> str:
        """Identifies the split (cold items and the train rows), to check a reused build against."""
        h = hashlib.sha256("\n".join(self.cold).encode())
        keys = self.train["user_id"].astype(str) + "\t" + self.train["item_id"].astype(str)
        h.update("\n".join(sorted(keys)).encode())
        return h.hexdigest()[:16]


def prepare(
    interactions: pd.DataFrame,
    items: list[str],
    *,
    seed: int = 0,
    cold_frac: float = 0.1,
    cold_min_positives: int = 5,
    test_frac: float = 0.2,
    val_frac: float = 0.1,
    min_positives: int = 5,
    stage: str = "test",
) -> BenchSplit:
    """Choose the cold items, remove them, and split the rest chronologically (see the module doc).

    ``stage="validation"`` is the same protocol one step earlier, for choosing settings without
    the test split: the validation positives play the test set, the last 1/7 (14.3%) of each user's
    training positives play validation, and another 10% of the warm items (drawn with
    ``seed + 1``, counted on train + validation) play the cold items. Test rows, and positives on
    the real cold items, are not read at all.
    """
    from tunelab.apps.recommend import cold_items, split_chronological

    if stage not in STAGES:
        raise ValueError(f"stage {stage!r}: one of {', '.join(STAGES)}")
    cold = sorted(map(str, cold_items(interactions, frac=cold_frac, min_positives=cold_min_positives,
                                      seed=seed)))  # fmt: skip
    is_cold = interactions["item_id"].astype(str).isin(set(cold))
    sp = split_chronological(
        interactions[~is_cold], test_frac=test_frac, val_frac=val_frac, min_positives=min_positives
    )
    train, val, test = sp.train, sp.val, sp.test
    seen, real_cold = interactions, cold
    if stage == "validation":
        seen = pd.concat([sp.train, sp.val], ignore_index=True)  # everything this stage may read
        cold = sorted(map(str, cold_items(seen, frac=cold_frac, min_positives=cold_min_positives,
                                          seed=seed + 1)))  # fmt: skip
        is_cold = seen["item_id"].astype(str).isin(set(cold))
        inner = split_chronological(
            sp.train[~sp.train["item_id"].astype(str).isin(set(cold))],
            test_frac=0.0,
            val_frac=val_frac / (1 - test_frac - val_frac),  # the same share of all positives
            min_positives=min_positives,
        )
        train, val = inner.train, inner.val
        test = sp.val[~sp.val["item_id"].astype(str).isin(set(cold))].reset_index(drop=True)
    history = set(train.loc[train["positive"].astype(bool), "user_id"].astype(str))
    cold_rows = seen[is_cold & seen["positive"].astype(bool)]
    cold_test = cold_rows[cold_rows["user_id"].astype(str).isin(history)]
    items = [str(i) for i in items]
    cold_set = set(cold)
    # The real cold items are candidates in no stage (in the validation stage they are unknown).
    excluded = set(real_cold) - cold_set
    return BenchSplit(
        train=train, val=val, test=test, cold=cold, cold_test=cold_test.reset_index(drop=True),
        items=items, warm=[i for i in items if i not in cold_set and i not in excluded],
    )  # fmt: skip


def sample_users(split: BenchSplit, n: int | None, seed: int) -> BenchSplit:
    """A quick check: evaluate only ``n`` of the test users (drawn with ``seed``); training unchanged."""
    if n is None:
        return split
    users = sorted(set(split.test["user_id"].astype(str)))
    keep = set(random.Random(seed).sample(users, min(n, len(users))))

    def only(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["user_id"].astype(str).isin(keep)]

    return BenchSplit(train=split.train, val=only(split.val), test=only(split.test), cold=split.cold,
                      cold_test=only(split.cold_test), items=split.items, warm=split.warm,
                      val_all=split.val)  # fmt: skip


#: Who wrote a tag and when in MovieLens' tags.csv: read so when the config does not name them.
TAG_USER, TAG_TIME = "userId", "timestamp"


def tags_before_cutoffs(cfg: Any, split: BenchSplit, folder: Path) -> tuple[Any, dict[str, int]]:
    """``cfg`` with each extra-text file filtered (MovieLens' tags).

    A tag is an interaction with the item: kept in the item's text, a user's tag on the movie
    they go on to like in test says so to the text model (69% of MovieLens small's tag rows are
    dated after their author's first held-out positive; 326 of the 383 on the cold items were
    written by the user whose positive on that item is a cold target). Kept: the rows dated
    before their author's first validation or test positive (authors without any: all rows),
    on items that are not cold (cold items are removed from training entirely). The filtered
    rows are written to ``folder``.

    Each file is read as the build reads it (any format; who and when from the source's
    ``user_column``/``time_column``, else MovieLens' columns; times as epoch seconds or ISO 8601):
    only a CSV with MovieLens' column names was filtered, any other source kept every tag, the cold
    items' too, without a word. A source that does not say who and when (genome tags) has no
    cutoff to apply: it loses the cold items' rows only, and a note line says so (it was refused,
    and --all-tags, the only way on, kept the dated sources' leak too).
    """
    from tunelab.apps.recommend.data import read_extra_text, read_table, written_before

    held = pd.concat([split.val, split.test], ignore_index=True)
    held = held[held["positive"].astype(bool)]
    cutoff = held.groupby(held["user_id"].astype(str))["time"].min()
    not_warm = set(split.items) - set(split.warm)  # this stage's cold items and the real ones
    extras, counts = [], {"tag_rows": 0, "kept": 0}
    for extra in cfg.items.extra_text:
        source = extra
        if extra.user_column is None:
            columns = read_table(extra.path, extra.format, f"{extra.name} (extra_text)")[0].columns
            if {TAG_USER, TAG_TIME} <= set(columns):
                source = extra.model_copy(update={"user_column": TAG_USER, "time_column": TAG_TIME})
            else:
                print(f"item text: {extra.name} ({extra.path}) says not who wrote a value and when: "
                      "every row kept but the cold items' (set its user_column and time_column to "
                      "keep only those before their author's held-out positives)", flush=True)  # fmt: skip
        table, read = read_extra_text(source, set(split.items))
        keep = ~table["item_id"].isin(not_warm).to_numpy()
        if source.user_column is not None:
            keep &= written_before(table["user_id"], table["time"], cutoff)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{extra.name}-before-cutoffs.parquet"
        table[keep].to_parquet(path, index=False)  # read_extra_text's columns, in file order
        counts["tag_rows"] += read["rows"]
        counts["kept"] += int(keep.sum())
        columns = {"id_column": "item_id", "field": "value"}
        if source.user_column is not None:
            columns.update(user_column="user_id", time_column="time")
        extras.append(extra.model_copy(update={"path": str(path), "format": "parquet", **columns}))
    items = cfg.items.model_copy(update={"extra_text": extras})
    return cfg.model_copy(update={"items": items}), counts


def with_seed(cfg: Any, seed: int) -> Any:
    """``cfg`` with ``--seed`` as the text model's, the CF's and the ranker's seeds too (the
    help says it seeds the models, not only the cold items and the baselines)."""
    update = {
        section: getattr(cfg, section).model_copy(update={"seed": seed})
        for section in ("model", "cf", "ranker")
    }
    if cfg.cf.second is not None:  # cf.second's own seed (EASE's SVD) too
        update["cf"] = update["cf"].model_copy(
            update={"second": cfg.cf.second.model_copy(update={"seed": seed})}
        )
    return cfg.model_copy(update=update)


def load(config: Path, *, all_tags: bool = False, **kwargs: Any) -> tuple[Any, Any, BenchSplit]:
    """The config, the dataset and the benchmark's split of it.

    Unless ``all_tags``: the item text's users' tags only as ``tags_before_cutoffs`` keeps them (the
    split depends on the interactions only, so it is the same either way).
    """
    from tunelab.apps.recommend import load_config, load_dataset
    from tunelab.apps.recommend.data import read_items

    cfg = with_seed(load_config(config), int(kwargs.get("seed", 0)))
    ds = load_dataset(cfg)
    split = prepare(ds.interactions, ds.items["item_id"].astype(str).tolist(), **kwargs)
    if not all_tags:
        folder = Path(tempfile.mkdtemp(prefix="movielens-tags-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # read until the build is done
        cfg, counts = tags_before_cutoffs(cfg, split, folder)
        if counts["tag_rows"]:
            print(f"item text: {counts['kept']:,} of {counts['tag_rows']:,} tag rows kept "
                  "(before their author's held-out positives, not on cold items)", flush=True)  # fmt: skip
            items, report, dated = read_items(cfg.items)  # only the item text changed
            ds = dataclasses.replace(ds, items=items, report={**ds.report, **report}, dated=dated)
    else:  # the leaky protocol: every tag, in fitting too (build would leave some out of it)
        ds = dataclasses.replace(ds, dated=None)
    return cfg, ds, split


# ------------------------------------------------------------------------------- scoring
def score_model(score_fn: Any, split: BenchSplit, history: pd.DataFrame, name: str) -> dict[str, Any]:
    """Warm test figures and cold figures of one model (``history``: what is left out of candidates)."""
    from tunelab.apps.recommend.evaluate import evaluate_full_ranking

    warm = evaluate_full_ranking(score_fn, history, split.test, split.warm, k=K, progress=True,
                                 desc=f"{name} warm")  # fmt: skip
    cold = evaluate_full_ranking(score_fn, history, split.cold_test, split.items, k=K,
                                 restrict_to=split.cold, progress=True, desc=f"{name} cold")  # fmt: skip
    return {"test": warm, "cold": cold}


def run_baselines(split: BenchSplit, grids: dict[str, Any], *, seed: int) -> dict[str, Any]:
    """Choose each baseline's hyper-parameters on validation, refit on train + validation, score."""
    from tunelab.apps.recommend.evaluate import choose_on_validation

    out: dict[str, Any] = {}
    # The history every model has at test time: train + every user's validation (as the build's
    # absorb_val), also when only some users are evaluated (--users).
    full_val = split.val if split.val_all is None else split.val_all
    history = pd.concat([split.train, full_val], ignore_index=True)
    for name, (cls, candidates) in grids.items():
        make = (
            (lambda cls=cls, **p: cls(seed=seed, **p))
            if "seed" in getattr(cls, "__dataclass_fields__", {})
            else cls
        )
        t0 = time.perf_counter()
        # Validation candidates: the warm items too (cold items are in no split).
        chosen, table = choose_on_validation(make, candidates, split.train, split.val, split.warm, k=K)
        select_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = make(**chosen).fit(history, split.warm)
        fit_s = time.perf_counter() - t0
        out[name] = {"chosen": chosen, "select_s": round(select_s, 1), "fit_s": round(fit_s, 2),
                     "validation": table, **score_model(model, split, history, name)}  # fmt: skip
        print(f"{name}: chose {chosen or '-'} on validation; test NDCG@{K} "
              f"{out[name]['test'][f'ndcg@{K}']}", flush=True)  # fmt: skip
    return out


def build_recommender(
    cfg_path: Path, out: Path, split_kwargs: dict[str, Any], text_from: Path | None = None
) -> dict[str, Any]:
    """Build the recommender on the benchmark's split (this process), recording time and peak memory.

    ``text_from``: reuse the text model of a recommender built on the same split (``--text-from``),
    and its cross-encoder when it has one and the config asks for one.
    """
    from tunelab.apps.recommend import build
    from tunelab.apps.recommend.crossencoder import FOLDER as CROSS_FOLDER
    from tunelab.apps.recommend.crossencoder import CrossScorer
    from tunelab.apps.recommend.textmodel import TextModel

    t0 = time.perf_counter()
    cfg, ds, split = load(cfg_path, **split_kwargs)
    load_s = time.perf_counter() - t0
    text_model = cross_scorer = None
    if text_from is not None:
        check_built_on(text_from, split.fingerprint(), all_tags=split_kwargs.get("all_tags", False))
        # Only the models are read (not the donor's ranker: it may predate the current features).
        where = {"max_length": cfg.model.max_length, "device": cfg.model.device}
        text_model = TextModel.load(text_from, **where)
        if cfg.model.cross_encoder and (text_from / CROSS_FOLDER).is_dir():
            cross_scorer = CrossScorer.load(text_from, **where)
    t0 = time.perf_counter()
    # No note while the folder is rebuilt: a kill mid-build must not leave the old build's note
    # vouching for a folder now holding part of a build on another split (check_built_on).
    sidecar(out).unlink(missing_ok=True)
    # overwrite: --build-only rebuilds the benchmark's own folder in place on each run
    build(cfg, out, dataset=ds, train=split.train, val=split.val, progress=True, absorb_val=True,
          overwrite=True, text_model=text_model, cross_scorer=cross_scorer)  # fmt: skip
    info = {"build_s": round(time.perf_counter() - t0, 1), "load_s": round(load_s, 1),
            "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "split": split_kwargs, "fingerprint": split.fingerprint(), "folder": str(out),
            "text_from": str(text_from) if text_from else None}  # fmt: skip
    atomic_write_json(sidecar(out), info)  # written whole, once the build is
    return info


def check_built_on(folder: Path, fingerprint: str, *, all_tags: bool = False) -> None:
    """Stop (one line) unless ``folder`` was built by this benchmark on the split ``fingerprint``,
    with the same item text (a build from before the tag filter had every tag)."""
    note = sidecar(folder)
    info = read_json(note, remedy="build it again: --build-only") if note.is_file() else {}
    if not isinstance(info, dict):
        sys.exit(f"{note}: not this benchmark's note (a JSON object); build it again: --build-only")
    if info.get("fingerprint") != fingerprint:
        sys.exit(f"{folder}: not built on this split (--seed/--cold-frac/--stage); build it: --build-only")
    if bool((info.get("split") or {}).get("all_tags", True)) != all_tags:
        sys.exit(f"{folder}: built with other item text (--all-tags or not); build it again: --build-only")


def sidecar(folder: Path) -> Path:
    """The benchmark's note beside a recommender it built: which split, build time and memory."""
    return folder.parent / f"{folder.name}.bench.json"


def build_in_subprocess(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """``--build-only`` in a child process, so that its peak memory is the build's own."""
    cmd = [sys.executable, __file__, "--build-only", "--config", args.config, "--out", str(out.parent),
           "--name", out.name, "--seed", str(args.seed), "--cold-frac", str(args.cold_frac),
           "--stage", args.stage] + (["--text-from", args.text_from] if args.text_from else []) + (
               ["--all-tags"] if args.all_tags else [])  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    info = read_json(sidecar(out), remedy="build it again: --build-only")
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    return info


def score_recommender(folder: Path, split: BenchSplit) -> dict[str, Any]:
    """The text model alone and the blended ranker, scored like the baselines."""
    from tunelab.apps.recommend import Recommender

    rec = Recommender.load(folder)
    history = pd.concat(
        [split.train, split.val if split.val_all is None else split.val_all], ignore_index=True
    )
    return {"text": score_model(rec.text_scores, split, history, "text"),
            "blended": score_model(rec.score_items, split, history, "blended")}  # fmt: skip


# ------------------------------------------------------------------------------- HTTP
def http_latency(folder: Path, users: list[str], *, requests: int, serve_args: list[str]) -> dict[str, Any]:
    """One user's ranking through ``tunelab serve --recommend``, one request at a time: p50/p99 ms."""
    import httpx

    data_dir = Path(tempfile.mkdtemp(prefix="movielens-bench-"))
    route = f"/v1/apps/recommend/{folder.name}/users/{{}}"
    args = serve_args or ["--recommend", str(folder)]
    latencies, statuses = [], {}
    with serving(args, data_dir) as (url, token), httpx.Client(base_url=url, timeout=60) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        for user in users[:5]:  # warm-up, not measured
            client.get(route.format(user), params={"k": K, "exclude_seen": "true"})
        for i in range(requests):
            t0 = time.perf_counter()
            r = client.get(route.format(users[i % len(users)]), params={"k": K, "exclude_seen": "true"})
            latencies.append(time.perf_counter() - t0)
            statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else math.nan

    return {"requests": len(latencies), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_ms": round(1000 * float(np.mean(latencies)), 1), "statuses": statuses}  # fmt: skip


# ------------------------------------------------------------------------------- report
ROW = "{:<12} {:>8} {:>9} {:>7} {:>7} {:>6} | {:>8} {:>12} {:>6}"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def report(result: dict[str, Any]) -> None:
    """The table, the anchors and whether the targets hold (stored in ``result["targets"]``)."""
    models = {**result.get("baselines", {}), **result.get("recommender", {}).get("scores", {})}
    c = result["counts"]
    print(f"\nMovieLens small, seed {result['seed']}: {c['test_users']} test users, {c['test_positives']} "
          f"test positives; {c['cold_items']} cold items, {c['cold_test_users']} users with "
          f"{c['cold_test_positives']} positives on them")  # fmt: skip
    print(ROW.format("model", f"NDCG@{K}", f"Recall@{K}", "MRR", "AUC", "users",
                     "cold AUC", f"cold NDCG@{K}", "users"))  # fmt: skip
    for name in MODELS:
        if name in models:
            t, cold = models[name]["test"], models[name]["cold"]
            warm = [fmt(t[key]) for key in (f"ndcg@{K}", f"recall@{K}", "mrr", "auc")]
            print(
                ROW.format(name, *warm, t["users"], fmt(cold["auc"]), fmt(cold[f"ndcg@{K}"]), cold["users"])
            )
    for name in BASELINES:
        if name in models and models[name]["chosen"]:
            print(f"{name}: {models[name]['chosen']} chosen on validation")
    if "recommender" in result and "build" in result["recommender"]:
        b = result["recommender"]["build"]
        print(f"build: {b['build_s']} s, peak memory {b['peak_memory_mb']} MB (its own process)")
    if "http" in result:
        h = result["http"]
        print(f"HTTP, one user's top {K}, one request at a time: p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms "
              f"over {h['requests']} requests, statuses {h['statuses']}")  # fmt: skip
    print(f"benchmark process peak memory {result['peak_memory_mb']} MB")
    for name, value in ANCHORS.items():
        print(f"anchor: {name}: {value}")
    result["targets"] = targets(models)
    for line in result["targets"]["lines"]:
        print("target:", line)


def targets(models: dict[str, Any]) -> dict[str, Any]:
    """Whether blended NDCG@10 >= 1.05 x the best baseline's (warm) and blended cold AUC >= 0.75."""
    key = f"ndcg@{K}"
    base = {n: models[n]["test"][key] for n in (*BASELINES, "text") if n in models and models[n]["test"][key]}
    out: dict[str, Any] = {"lines": []}
    if not base or "blended" not in models:
        out["lines"].append("not checked: the blended ranker was not scored")
        return out
    best = max(base, key=base.get)
    ratio = models["blended"]["test"][key] / base[best]
    cold_auc = models["blended"]["cold"]["auc"]
    out.update(best_baseline=best, warm_ratio=round(ratio, 4), cold_auc=cold_auc,
               warm_holds=ratio >= TARGET["warm_ndcg_ratio"],
               cold_holds=cold_auc is not None and cold_auc >= TARGET["cold_auc"])  # fmt: skip
    out["lines"] += [
        f"warm NDCG@{K} blended / best baseline ({best}) = {ratio:.3f}, target >= {TARGET['warm_ndcg_ratio']}"
        f" -> {'holds' if out['warm_holds'] else 'does not hold'}",
        f"cold AUC blended = {fmt(cold_auc)}, target >= {TARGET['cold_auc']} -> "
        f"{'holds' if out['cold_holds'] else 'does not hold'}",
    ]
    return out


def save(result: dict[str, Any], path: Path | None) -> None:
    if path is not None:
        result["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        atomic_write_json(path, result)  # read back by --baselines-from: never half-written


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(CONFIG), help="the recommender config (its data paths)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cold items and the models (0)")
    parser.add_argument("--cold-frac", type=float, default=0.1, help="share of items made cold (0.1)")
    parser.add_argument(
        "--all-tags", action="store_true",
        help="item text with every tag in tags.csv, as before 2026-12-03 (leaks held-out interactions: "
        "by default only tags dated before their author's held-out positives, none on cold items)",
    )  # fmt: skip
    parser.add_argument(
        "--stage", choices=STAGES, default="test",
        help="validation: the same protocol one step earlier (validation plays test), to choose "
        "settings without reading the test split (test)",
    )  # fmt: skip
    parser.add_argument(
        "--text-from", metavar="DIR",
        help="reuse the text model of a recommender built on the same split (compare ranker settings)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=str(ROOT / "runs" / "benchmarks"), help="where the build goes (runs/benchmarks)"
    )
    parser.add_argument("--name", default="movielens", help="the built recommender's folder name")
    parser.add_argument("--recommender", help="score this folder (built by --build-only, same split)")
    parser.add_argument("--baselines-only", action="store_true", help="no recommender: baselines only")
    parser.add_argument("--baselines-from", metavar="JSON", help="reuse the baselines of an earlier --json")
    parser.add_argument("--build-only", action="store_true", help="build the recommender on the split, stop")
    parser.add_argument("--quick", action="store_true", help="one or two hyper-parameter points each")
    parser.add_argument("--users", type=int, help="quick check: evaluate only N test users (seeded)")
    parser.add_argument("--skip-http", action="store_true", help="skip the HTTP latency")
    parser.add_argument("--requests", type=int, default=200, help="HTTP requests timed (200)")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one tunelab serve argument replacing `--recommend FOLDER`, given as --serve-arg=VALUE (a "
        "VALUE starting with - is refused otherwise) and repeated, e.g. --serve-arg=--recommend "
        "--serve-arg=FOLDER",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE (after each stage)")
    return parser.parse_args(argv)


def reused_baselines(args: argparse.Namespace, fingerprint: str) -> dict[str, Any] | None:
    """The baselines of an earlier ``--json`` (``--baselines-from``), if run on this split and users."""
    if not args.baselines_from:
        return None
    old = read_json(Path(args.baselines_from), remedy="give another --baselines-from or none")
    if not isinstance(old, dict):
        sys.exit(f"{args.baselines_from}: not a --json of this benchmark (a JSON object)")
    same = (old.get("fingerprint"), old.get("users_sampled"), old.get("quick"))
    if same != (fingerprint, args.users, args.quick):
        sys.exit(f"{args.baselines_from}: its baselines ran on another split, --users or --quick")
    if not isinstance(old.get("baselines"), dict):
        sys.exit(f"{args.baselines_from}: no baselines in it")
    print(f"baselines from {args.baselines_from}", flush=True)
    return old["baselines"]


def main(argv: list[str] | None = None) -> None:
    from tunelab.errors import TunelabError

    args = parse_args(argv)
    split_kwargs = {
        "seed": args.seed,
        "cold_frac": args.cold_frac,
        "stage": args.stage,
        "all_tags": args.all_tags,
    }
    folder = Path(args.recommender) if args.recommender else Path(args.out) / args.name
    if args.build_only:
        text_from = Path(args.text_from) if args.text_from else None
        print(json.dumps(build_recommender(Path(args.config), folder, split_kwargs, text_from), indent=2))
        return
    json_path = Path(args.json) if args.json else None
    t0 = time.perf_counter()
    try:
        _, _, split = load(Path(args.config), **split_kwargs)
    except TunelabError as exc:  # a missing data file, a bad config: one line, no traceback
        sys.exit(f"error: {exc}")
    result: dict[str, Any] = {"seed": args.seed, "cold_frac": args.cold_frac, "stage": args.stage,
                              "k": K, "quick": args.quick,
                              "users_sampled": args.users, "counts": split.counts(),
                              "load_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    print(json.dumps(result["counts"]), flush=True)
    result["fingerprint"] = fingerprint = split.fingerprint()
    info: dict[str, Any] | None = None
    if args.recommender and not args.baselines_only:  # check it before the minutes of baselines
        check_built_on(folder, fingerprint, all_tags=args.all_tags)
        info = read_json(sidecar(folder), remedy="build it again: --build-only")  # checked just above
    if args.text_from:
        check_built_on(Path(args.text_from), fingerprint, all_tags=args.all_tags)
    split = sample_users(split, args.users, args.seed)
    result["baselines"] = reused_baselines(args, fingerprint) or run_baselines(
        split, baseline_grids(args.quick), seed=args.seed
    )
    save(result, json_path)
    if not args.baselines_only:
        info = info or build_in_subprocess(args, folder)
        report_file = folder / "build_report.json"  # the build's own account: text model, ranker, timings
        built = json.loads(report_file.read_text(encoding="utf-8")) if report_file.is_file() else {}
        keep = ("text_model", "cf", "ranker", "cross_encoder", "timings")
        result["recommender"] = {"build": info, "config": str(args.config),
                                 "build_report": {k: built.get(k) for k in keep}}  # fmt: skip
        result["recommender"]["scores"] = score_recommender(folder, split)
        save(result, json_path)
        if not args.skip_http:
            users = sorted(set(split.test["user_id"].astype(str)))
            result["http"] = http_latency(folder, users, requests=args.requests, serve_args=args.serve_arg)
    report(result)
    save(result, json_path)


if __name__ == "__main__":
    main()
