"""benchmarks/movielens.py: its --help, its split (cold items, chronological split, cold test set),
the baselines' run on it (chosen on validation, never on test), the targets, and the baselines-only
run end to end on a tiny MovieLens-like fixture written in tmp_path."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark():
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports bench_common from beside it
    spec = importlib.util.spec_from_file_location("movielens_benchmark", ROOT / "benchmarks" / "movielens.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()


def ratings(seed: int = 0, users: int = 30, items: int = 40) -> pd.DataFrame:
    """MovieLens-like ratings: two user groups who rate their own group's movies high, others low."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        picked = rng.choice(items, size=int(rng.integers(12, 25)), replace=False)
        for t, m in enumerate(picked):
            own = (m < items // 2) == (u % 2 == 0)
            rating = float(rng.choice([4.0, 4.5, 5.0] if own and rng.random() < 0.8 else [1.0, 2.5, 3.5]))
            rows.append((u + 1, int(m) + 1, rating, 1_000_000 + 3600 * t + u))
    return pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])


def interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as ``Dataset.interactions`` holds it (what ``prepare`` takes)."""
    return pd.DataFrame({"user_id": frame["userId"].astype(str), "item_id": frame["movieId"].astype(str),
                         "time": frame["timestamp"].astype(float), "rating": frame["rating"],
                         "positive": frame["rating"] >= 4})  # fmt: skip


ITEMS = [str(m) for m in range(1, 41)]


def test_help_runs_and_states_the_protocol() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "movielens.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    for words in ("rating >= 4", "last 20% of positives", "--skip-http", "--baselines-only", "NDCG@10",
                  "cold AUC >= 0.75", "1.05 x"):  # fmt: skip
        assert words in " ".join(out.split()), words


def test_the_split_removes_the_cold_items_from_training_and_tests_them() -> None:
    inter = interactions(ratings())
    split = bench.prepare(inter, ITEMS, seed=0, cold_frac=0.1)
    positives = inter[inter["positive"]]
    eligible = positives["item_id"].value_counts()
    eligible = set(eligible[eligible >= 5].index)
    assert split.cold and set(split.cold) <= eligible
    assert len(split.cold) == round(0.1 * len(eligible))
    cold = set(split.cold)
    for part in (split.train, split.val, split.test):
        assert not set(part["item_id"]) & cold
    assert sorted(split.warm) == sorted(set(ITEMS) - cold) and split.items == ITEMS
    # Every positive on a cold item, of the users with a training positive, is a cold test row.
    expected = positives[positives["item_id"].isin(cold)]
    assert len(split.cold_test) == len(expected) and split.cold_test["positive"].all()
    # Chronological: each user's test positives come after their train and validation ones.
    for user, test in split.test.groupby("user_id"):
        before = pd.concat(
            [split.train[split.train["user_id"] == user], split.val[split.val["user_id"] == user]]
        )
        assert test["time"].min() >= before["time"].max()
    counts = split.counts()
    assert counts["cold_items"] == len(cold) and counts["test_positives"] == len(split.test)


def test_the_cold_items_depend_on_the_seed_only() -> None:
    inter = interactions(ratings())
    a = bench.prepare(inter, ITEMS, seed=0)
    assert bench.prepare(inter.sample(frac=1.0, random_state=3), ITEMS, seed=0).cold == a.cold
    assert bench.prepare(inter, ITEMS, seed=1).cold != a.cold
    assert bench.prepare(inter, ITEMS, seed=0).fingerprint() == a.fingerprint()
    assert bench.prepare(inter, ITEMS, seed=1).fingerprint() != a.fingerprint()


def test_the_validation_stage_never_reads_test_rows_or_the_real_cold_items() -> None:
    """``--stage validation`` chooses settings one step earlier: validation plays test."""
    inter = interactions(ratings(users=40))
    full = bench.prepare(inter, ITEMS, seed=0)
    early = bench.prepare(inter, ITEMS, seed=0, stage="validation")

    def pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
        return set(zip(frame["user_id"], frame["item_id"], strict=True))

    # The test split's rows are in no part of the validation stage ...
    for part in (early.train, early.val, early.test, early.cold_test):
        assert not pairs(part) & pairs(full.test)
    # ... its test set is the validation positives (less its own cold items) ...
    assert pairs(early.test) == pairs(full.val) - {p for p in pairs(full.val) if p[1] in set(early.cold)}
    assert early.test.equals(early.test[early.test["positive"]])
    # ... its cold items are warm items of the real split, and the real cold items are candidates
    # nowhere (nor are their positives read).
    assert early.cold and not set(early.cold) & set(full.cold)
    assert not set(early.warm) & (set(full.cold) | set(early.cold))
    assert not set(early.cold_test["item_id"]) & set(full.cold)
    # Chronological inside: the stage's validation comes after its training, per user.
    for user, val in early.val.groupby("user_id"):
        assert val["time"].min() >= early.train.loc[early.train["user_id"] == user, "time"].max()
    # Everything the stage holds comes from the real split's train and validation rows.
    readable = pairs(full.train) | pairs(full.val)
    for part in (early.train, early.val, early.test, early.cold_test):
        assert pairs(part) <= readable
    assert early.fingerprint() != full.fingerprint()
    with pytest.raises(ValueError, match="stage"):
        bench.prepare(inter, ITEMS, stage="dev")


def test_baselines_are_chosen_on_validation_and_corrupting_test_changes_only_test_figures() -> None:
    from tunelab.apps.recommend.evaluate import EASE

    split = bench.prepare(interactions(ratings()), ITEMS, seed=0)
    grids = {"ease": (EASE, [{"lam": 1.0}, {"lam": 30.0}, {"lam": 1000.0}])}
    clean = bench.run_baselines(split, grids, seed=0)["ease"]
    corrupt = bench.BenchSplit(**{**split.__dict__})
    rng = np.random.default_rng(1)
    corrupt.test = split.test.assign(item_id=rng.permutation(split.warm)[: len(split.test)])
    dirty = bench.run_baselines(corrupt, grids, seed=0)["ease"]

    def figures(table: list[dict]) -> list[dict]:  # the validation table less its timings
        return [{k: v for k, v in row.items() if k not in ("score_ms", "fit_s")} for row in table]

    assert dirty["chosen"] == clean["chosen"]
    assert figures(dirty["validation"]) == figures(clean["validation"])
    assert dirty["test"] != clean["test"]
    assert clean["cold"]["auc"] == 0.5  # EASE cannot score an item without a training positive


def test_sample_users_keeps_training_and_samples_the_evaluated_users() -> None:
    split = bench.prepare(interactions(ratings()), ITEMS, seed=0)
    small = bench.sample_users(split, 5, seed=0)
    assert small.train is split.train
    assert small.test["user_id"].nunique() == 5
    assert set(small.val["user_id"]) <= set(small.test["user_id"])
    assert bench.sample_users(split, None, seed=0) is split


def _scores(ndcg: float, cold_auc: float = 0.5) -> dict:
    return {"test": {"ndcg@10": ndcg}, "cold": {"auc": cold_auc}}


def test_targets_compare_with_the_best_baseline_the_text_model_included() -> None:
    models = {
        "ease": _scores(0.10),
        "als": _scores(0.08),
        "text": _scores(0.11),
        "blended": _scores(0.12, 0.8),
    }
    t = bench.targets(models)
    assert t["best_baseline"] == "text" and t["warm_ratio"] == pytest.approx(0.12 / 0.11, abs=1e-4)
    assert t["warm_holds"] and t["cold_holds"]
    t = bench.targets({**models, "blended": _scores(0.114, 0.74)})
    assert not t["warm_holds"] and not t["cold_holds"]
    assert "not checked" in bench.targets({"ease": _scores(0.1)})["lines"][0]


def tiny_config(tmp_path: Path) -> Path:
    """A rec.yaml over a tiny MovieLens-like pair of files in ``tmp_path``."""
    ratings(users=24).to_csv(tmp_path / "ratings.csv", index=False)
    titles = [f"Movie {m}" for m in range(1, 41)]
    genres = ["Drama" if m < 21 else "Comedy" for m in range(1, 41)]
    movies = pd.DataFrame({"movieId": range(1, 41), "title": titles, "genres": genres})
    movies.to_csv(tmp_path / "movies.csv", index=False)
    (tmp_path / "rec.yaml").write_text(
        "name: tiny\n"
        f"items: {{path: {tmp_path / 'movies.csv'}, id_column: movieId, text_fields: [title, genres]}}\n"
        f"interactions: {{path: {tmp_path / 'ratings.csv'}, user_column: userId, item_column: movieId, "
        "time_column: timestamp, rating_column: rating, positive: 'rating >= 4'}\n",
        encoding="utf-8",
    )
    return tmp_path / "rec.yaml"


def test_a_baselines_only_run_end_to_end_on_a_tiny_fixture(tmp_path: Path, capsys) -> None:
    config, out = tiny_config(tmp_path), tmp_path / "out.json"
    bench.main(["--config", str(config), "--baselines-only", "--quick", "--json", str(out)])
    result = json.loads(out.read_text(encoding="utf-8"))
    assert set(result["baselines"]) == set(bench.BASELINES)
    for name in bench.BASELINES:
        assert result["baselines"][name]["test"]["users"] > 0
    assert "not checked" in result["targets"]["lines"][0]
    assert "ease" in capsys.readouterr().out
    # The baselines are reused only on the same split, users and grids.
    again = tmp_path / "again.json"
    bench.main(["--config", str(config), "--baselines-only", "--quick", "--baselines-from", str(out),
                "--json", str(again)])  # fmt: skip
    assert json.loads(again.read_text(encoding="utf-8"))["baselines"] == result["baselines"]
    with pytest.raises(SystemExit, match="another split"):
        bench.main(["--config", str(config), "--baselines-only", "--quick", "--seed", "1",
                    "--baselines-from", str(out)])  # fmt: skip


def test_a_recommender_built_on_another_split_is_refused_before_the_baselines(tmp_path: Path) -> None:
    config, folder = tiny_config(tmp_path), tmp_path / "recs" / "tiny"
    folder.mkdir(parents=True)
    bench.sidecar(folder).write_text(json.dumps({"fingerprint": "0000"}), encoding="utf-8")
    with pytest.raises(SystemExit, match="not built on this split"):
        bench.main(["--config", str(config), "--recommender", str(folder), "--quick"])


def test_a_missing_data_file_is_one_line(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    (tmp_path / "ratings.csv").unlink()
    with pytest.raises(SystemExit, match=r"^error: .*ratings\.csv"):
        bench.main(["--config", str(config), "--baselines-only"])


def test_item_text_keeps_only_tags_written_before_their_authors_held_out_positives(tmp_path: Path) -> None:
    """A tag is an interaction: a user's tag on the movie they like in test must not be in its text,
    nor any tag on a cold item (removed from training entirely)."""
    config = tiny_config(tmp_path)
    _, _, split = bench.load(config, seed=0, all_tags=True)
    held = pd.concat([split.val, split.test])
    held = held[held["positive"]]
    user, item, when = held.iloc[0][["user_id", "item_id", "time"]]
    cold = split.cold[0]
    first_held = held.loc[held["user_id"] == user, "time"].min()
    tags = pd.DataFrame(
        [
            (int(user), int(item), "spoiler", int(when) + 5),  # after the author's cutoff: dropped
            (int(user), int(item), "early", int(first_held) - 5),  # before it: kept
            (99, int(cold), "coldtag", 0),  # on a cold item: dropped
            (99, int(item), "stranger", int(when) + 5),  # an author without held-out rows: kept
        ],
        columns=["userId", "movieId", "tag", "timestamp"],
    )
    tags.to_csv(tmp_path / "tags.csv", index=False)
    text = config.read_text(encoding="utf-8").replace(
        "text_fields: [title, genres]}",
        f"text_fields: [title, genres], extra_text: [{{name: tags, path: {tmp_path / 'tags.csv'}, "
        "id_column: movieId, field: tag}]}",
    )
    config.write_text(text, encoding="utf-8")
    _, ds, filtered = bench.load(config, seed=0)
    texts = dict(zip(ds.items["item_id"].astype(str), ds.items["text"], strict=True))
    assert "early" in texts[str(item)] and "stranger" in texts[str(item)]
    assert "spoiler" not in texts[str(item)] and "coldtag" not in texts[str(cold)]
    assert filtered.fingerprint() == split.fingerprint()  # the split is the interactions' alone
    _, leaky, _ = bench.load(config, seed=0, all_tags=True)
    leaky_texts = dict(zip(leaky.items["item_id"].astype(str), leaky.items["text"], strict=True))
    assert "spoiler" in leaky_texts[str(item)] and "coldtag" in leaky_texts[str(cold)]


def test_the_seed_reaches_the_recommender_s_own_seeds(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    cfg, _, _ = bench.load(config, seed=3)
    assert (cfg.model.seed, cfg.cf.seed, cfg.ranker.seed) == (3, 3, 3)
    cfg, _, _ = bench.load(config, seed=0)
    assert (cfg.model.seed, cfg.cf.seed, cfg.ranker.seed) == (0, 0, 0)


def test_a_quick_run_refits_the_baselines_on_every_user_s_validation_as_the_build_does() -> None:
    """--users N evaluates N users, but the recommender's build absorbs every user's validation:
    the baselines' final fit must have the same history."""
    split = bench.prepare(interactions(ratings()), ITEMS, seed=0)
    small = bench.sample_users(split, 5, seed=0)
    fitted: list[int] = []

    class Spy:
        def __init__(self, **params) -> None:
            pass

        def fit(self, history: pd.DataFrame, items: list[str]) -> Spy:
            fitted.append(len(history))
            return self

        def __call__(self, user: str, items: list[str]) -> np.ndarray:
            return np.zeros(len(items))

    bench.run_baselines(small, {"spy": (Spy, [{}])}, seed=0)
    assert fitted[-1] == len(split.train) + len(split.val) > len(split.train) + len(small.val)
