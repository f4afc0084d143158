"""The optional cross-encoder stage (issue 12, ``model.cross_encoder``): training pairs, the re-scoring
of a ranking's top, and a build on the tiny world that saves, loads and ranks with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from recommend_fixtures import (
    MkdirWhenUnpickled,
    assert_no_pickle_in,
    config_dict,
    make_code_running_skops,
    write_world,
)

from tunelab.apps.recommend import RecommendConfig, Recommender, build
from tunelab.apps.recommend.crossencoder import (
    CALIBRATION,
    FOLDER,
    PICKLED_CALIBRATION,
    CrossScorer,
    CrossStage,
    _pairs,
    fit_cross_stage,
)
from tunelab.apps.recommend.textmodel import Triple
from tunelab.errors import ConfigError


class _LengthScorer:
    """A stand-in cross-encoder whose logit is the text's length: known, so the order is checkable."""

    def logits(self, query: str, texts: list[str]) -> np.ndarray:
        return np.array([float(len(t)) for t in texts], dtype=np.float32)

    def save(self, folder: str | Path) -> None:
        pass


def _length_stage() -> tuple[CrossStage, list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    texts = ["x" * n for n in range(1, 41)]
    scores = np.linspace(0.9, 0.1, 40).astype(np.float32)
    labels = np.array([len(t) > 5 for t in texts], dtype=np.int8)
    users = [("q", texts, scores + rng.normal(0, 0.01, 40).astype(np.float32), labels)] * 3
    return fit_cross_stage(_LengthScorer(), users, top=10), texts, scores


def test_pairs_label_the_target_one_and_the_negatives_zero() -> None:
    triples = [Triple("q1", "a", ("n1",)), Triple("q2", "b", ("n2",)), Triple("q3", "c", ("n3",))]
    pairs = _pairs(triples, seed=0)
    assert ("q1", "a", 1.0) in pairs and ("q1", "n1", 0.0) in pairs
    assert sum(p[2] for p in pairs) == 3  # one positive per triple
    easy = [p for p in pairs if p[2] == 0.0 and not p[1].startswith("n")]
    assert easy and all(p[1] != dict(q1="a", q2="b", q3="c")[p[0]] for p in easy)  # never its own target


def test_rescore_reorders_the_top_and_keeps_the_rest_below_in_order() -> None:
    rng = np.random.default_rng(0)
    # The blend: the calibrator learns that long texts are the positives among the top candidates.
    texts = ["x" * n for n in range(1, 41)]
    scores = np.linspace(0.9, 0.1, 40).astype(np.float32)  # item 0 best by the blend
    labels = np.array([len(t) > 5 for t in texts], dtype=np.int8)
    users = [("q", texts, scores + rng.normal(0, 0.01, 40).astype(np.float32), labels)] * 3
    stage = fit_cross_stage(_LengthScorer(), users, top=10)
    assert stage.report["rows"] == 30 and stage.report["weights"]["cross_logit"] > 0
    out = stage.rescore("q", texts, scores)
    top = np.argsort(-out, kind="stable")
    assert set(top[:10]) == set(range(10))  # the same ten on top ...
    assert list(top[:10]) != list(range(10))  # ... in the cross-encoder's order
    assert out[10:].max() < out[:10].min()  # the rest below them
    assert list(np.argsort(-out[10:], kind="stable")) == list(range(30))  # in their old order
    assert ((out > 0) & (out < 1)).all()


def test_a_stage_without_a_positive_in_the_top_cannot_be_fitted() -> None:
    texts = ["a", "b", "c"]
    users = [("q", texts, np.array([0.9, 0.5, 0.1]), np.array([0, 0, 1]))]
    with pytest.raises(ValueError, match="no positive among the validation users' top 2"):
        fit_cross_stage(_LengthScorer(), users, top=2)


def test_a_build_with_the_cross_encoder_saves_loads_and_ranks_with_it(
    tiny_bert: Path, tmp_path: Path
) -> None:
    cfg = RecommendConfig.from_dict(
        config_dict(
            write_world(tmp_path), encoder=tiny_bert, model={"cross_encoder": True, "cross_encoder_top": 8}
        )
    )
    built = build(cfg, tmp_path / "rec")
    assert (tmp_path / "rec" / FOLDER).is_dir() and (tmp_path / "rec" / CALIBRATION).is_file()
    report = json.loads((tmp_path / "rec" / "build_report.json").read_text())
    training, stage = report["cross_encoder"]["training"], report["cross_encoder"]["stage"]
    assert training["pairs"] > training["positives"] > 0
    assert stage["top"] == 8 and stage["rows"] >= stage["positives"] > 0
    assert "cross_encoder_s" in report["timings"]
    assert_no_pickle_in(tmp_path / "rec")  # cross_calibration was a pickle too
    again = Recommender.load(tmp_path / "rec")
    assert isinstance(again.cross, CrossStage) and again.cross.top == 8
    a, b = built.rank("u3", k=12), again.rank("u3", k=12)
    assert [i.item_id for i in a.items] == [i.item_id for i in b.items]
    scores = [i.score for i in b.items]
    assert scores == sorted(scores, reverse=True)
    # score_items re-scores the best of the items it is given, so over the user's whole ranking
    # it agrees with rank:
    everything = [i.item_id for i in again.rank("u3", k=40, exclude_seen=False).items]
    full = again.score_items("u3", everything)
    ranked = {i.item_id: i.score for i in again.rank("u3", k=40, exclude_seen=False).items}
    assert np.allclose(full, [ranked[i] for i in everything], atol=1e-6)
    # and re-scoring changed something: without the stage the top differs in score
    blended = again._score(again._context("u3"), again._item_indices(everything))
    assert not np.allclose(full, blended)


def test_a_folder_built_without_it_loads_with_none(tiny_bert: Path, tmp_path: Path) -> None:
    cfg = RecommendConfig.from_dict(config_dict(write_world(tmp_path), encoder=tiny_bert))
    build(cfg, tmp_path / "rec")
    assert Recommender.load(tmp_path / "rec").cross is None
    assert not (tmp_path / "rec" / CALIBRATION).exists()


def test_an_easy_negative_is_never_an_item_the_user_liked() -> None:
    liked = frozenset({"a", "b"})  # the user of q1 liked both a and b
    triples = [Triple("q1", "a", ("n1",), liked), Triple("q2", "b", ("n2",), frozenset({"b"}))]
    for seed in range(10):
        assert ("q1", "b", 0.0) not in _pairs(triples, seed=seed)
    assert any(p == ("q2", "a", 0.0) for seed in range(10) for p in _pairs(triples, seed=seed))


def test_the_new_scoring_head_is_the_same_for_the_same_seed(tiny_bert: Path) -> None:
    from tunelab.apps.recommend.config import ModelSection
    from tunelab.apps.recommend.crossencoder import CrossScorer

    cfg = ModelSection(base=str(tiny_bert), max_length=32, device="cpu")
    heads = []
    for _ in range(2):
        model = CrossScorer.from_base(cfg).model.model
        heads.append(next(p for n, p in model.named_parameters() if n.startswith("classifier")).detach())
    assert (heads[0] == heads[1]).all()


def test_each_fold_ranker_is_fitted_without_the_half_it_scores() -> None:
    from tunelab.apps.recommend.builder import fold_rankers
    from tunelab.apps.recommend.features import FEATURES

    rng = np.random.default_rng(0)
    n = 1200
    y = (rng.random(n) < 0.2).astype(np.int8)
    X = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    X[:, FEATURES.index("has_cf")] = 1.0
    group = np.arange(n) // 20  # 60 users, 30 in each half
    cfg = RecommendConfig.from_dict(config_dict({"items": Path("i.csv"), "ratings": Path("r.csv")}))
    halves = fold_rankers({"X": X, "y": y, "group": group}, cfg, age_never=9.0)
    assert [h.report["users"] for h in halves] == [30, 30]
    assert [h.report["rows"] for h in halves] == [600, 600]


def test_the_cross_encoders_negatives_come_from_the_users_own_top_and_were_not_liked(
    tiny_bert: Path, tmp_path: Path
) -> None:
    import pandas as pd

    from tunelab.apps.recommend.builder import candidate_negatives
    from tunelab.apps.recommend.textmodel import make_triples

    cfg = RecommendConfig.from_dict(config_dict(write_world(tmp_path), encoder=tiny_bert))
    rec = build(cfg, tmp_path / "rec")
    history = pd.read_parquet(tmp_path / "rec" / "history.parquet")
    texts = dict(zip(rec._ids, rec._texts, strict=True))
    triples = make_triples(history, texts, cfg.model)
    more = candidate_negatives(rec, triples, seed=0)
    assert len(more) == len(triples) and all(t.user for t in more)
    added = 0
    for old, new in zip(triples, more, strict=True):
        assert new.negatives[: len(old.negatives)] == old.negatives
        extra = new.negatives[len(old.negatives) :]
        added += len(extra)
        seen = {rec._texts[i] for i in rec._seen_indices(new.user)}
        assert not set(extra) & (seen | new.liked | {new.positive})
    assert added >= len(triples)  # at least one per triple in this world


def test_the_stages_blend_round_trips_without_a_pickle(tmp_path: Path, monkeypatch) -> None:
    stage, texts, scores = _length_stage()
    stage.save(tmp_path)
    assert_no_pickle_in(tmp_path)
    monkeypatch.setattr(CrossScorer, "load", classmethod(lambda cls, *a, **k: _LengthScorer()))
    again = CrossStage.load(tmp_path, max_length=32)
    assert again is not None and again.top == 10
    np.testing.assert_array_equal(again.rescore("q", texts, scores), stage.rescore("q", texts, scores))


def test_a_blend_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    stage, _, _ = _length_stage()
    stage.save(tmp_path)
    marker = tmp_path / "ran"
    make_code_running_skops(tmp_path / CALIBRATION, "calibrator", marker)
    with pytest.raises(ConfigError, match=rf"{CALIBRATION}: refused to load it: it names os\.mkdir"):
        CrossStage.load(tmp_path, max_length=32)
    assert not marker.exists()


def test_a_pickled_blend_of_an_older_tunelab_is_never_unpickled(tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "ran"
    (tmp_path / PICKLED_CALIBRATION).write_bytes(pickle.dumps({"calibrator": MkdirWhenUnpickled(marker)}))
    with pytest.raises(ConfigError, match=r"cross_calibration\.pkl: built by an older tunelab \(pickled\)"):
        CrossStage.load(tmp_path, max_length=32)
    assert not marker.exists()
