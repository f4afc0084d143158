"""Review fixes in the Python API as a library user sees it, on tiny runs: numpy integers for
``top_k``/``batch_size`` were refused as "use 1 or more", zero-shot labels given as an array or a
Series failed inside numpy or pandas, a zero-shot predictor's ``dev_split()`` raised, ``logits``
failed on no texts, one text or a Series, ``KnowledgeIndex.search(k=-1)`` dropped the last passage
in silence, an empty Series was predicted as a frame with no columns, and neither a ``Predictor``
nor a ``KnowledgeIndex`` said what it was in its repr."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import tunelab
from tunelab.embeddings import embed
from tunelab.errors import ConfigError, DataError
from tunelab.zeroshot import zero_shot, zero_shot_predictor
from tunelab.zeroshot.labels import parse_label_descriptions

LABELS = ["food", "sports", "weather"]  # the labelled CSVs' labels, in the label map's order
TEXTS = ["the match went to extra time", "rain all day tomorrow"]


@pytest.fixture(scope="module")
def run(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("runs")
    return tunelab.train(None, overrides=tiny_overrides(tiny_bert, train, test, out, "name=r", epochs=1),
                         show_progress=False).run_dir  # fmt: skip


@pytest.fixture(scope="module")
def predictor(run: Path) -> tunelab.Predictor:
    return tunelab.load(run)


@pytest.fixture(scope="module")
def zs_predictor(tiny_bert: Path) -> tunelab.Predictor:
    return zero_shot_predictor(LABELS, encoder=str(tiny_bert), max_length=32)


@pytest.fixture(scope="module")
def zs_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zero_shot(LABELS, tmp_path_factory.mktemp("zs") / "zs", encoder=str(tiny_bert), max_length=32).path


@pytest.fixture(scope="module")
def every_kind(run: Path, zs_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One folder per predictor kind whose ``logits`` path differs: torch, onnx, ensemble, zeroshot."""
    from tunelab.ensembling import ensemble

    out = tmp_path_factory.mktemp("kinds")
    onnx = tunelab.export(run, format="onnx", output=out / "onnx", max_drop=100, show_progress=False).path
    both = ensemble([run, zs_run], out / "ens", calibrate=False).path
    return {"torch": run, "onnx": onnx, "ensemble": both, "zeroshot": zs_run}


# -- 4. a numpy integer is a whole number ----------------------------------------------------------


def test_predict_takes_numpy_integers_for_top_k_and_batch_size(predictor: tunelab.Predictor) -> None:
    """np.int64(3) was refused with "top_k np.int64(3): use 1 or more"."""
    plain = predictor.predict(TEXTS, top_k=2, batch_size=1)
    assert predictor.predict(TEXTS, top_k=np.int64(2), batch_size=np.int32(1)) == plain
    assert predictor.predict(TEXTS[0], top_k=np.uint8(2)) == plain[0]
    assert [len(r["top_k"]) for r in plain] == [2, 2]
    # the same batch size as ``plain``: padding to another batch's length moves the sixth decimal
    # (transformers 5.0's attention, at the floor pyproject allows)
    frame = predictor.predict(pd.Series(TEXTS), top_k=np.int64(2), batch_size=1)
    assert frame["top_k"].tolist() == [r["top_k"] for r in plain]
    assert np.array_equal(
        predictor.logits(TEXTS, batch_size=np.int64(1)), predictor.logits(TEXTS, batch_size=1)
    )


@pytest.mark.parametrize("bad", [np.float64(2.0), np.bool_(True), np.int64(0), np.int64(-1)])
def test_predict_still_refuses_numpy_non_integers_and_small_numbers(
    predictor: tunelab.Predictor, bad: Any
) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(f"top_k {bad!r}: use 1 or more") + "$"):
        predictor.predict("a card", top_k=bad)
    with pytest.raises(ConfigError, match="^" + re.escape(f"batch_size {bad!r}: use 1 or more") + "$"):
        predictor.predict("a card", batch_size=bad)


def test_predict_file_takes_numpy_integers(predictor: tunelab.Predictor, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(source, index=False)
    out = tmp_path / "out.jsonl"
    assert tunelab.predict_file(predictor, source, out, top_k=np.int64(2), batch_size=np.int64(1)) == 2
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["top_k"] for r in rows] == [r["top_k"] for r in predictor.predict(TEXTS, top_k=2, batch_size=1)]


def test_embed_takes_a_numpy_integer_batch_size(tiny_bert: Path) -> None:
    vectors = embed(TEXTS, model=str(tiny_bert), batch_size=np.int64(1))
    assert vectors.shape[0] == 2 and np.allclose(vectors, embed(TEXTS, model=str(tiny_bert), batch_size=2))


def test_evaluate_takes_a_numpy_integer_batch_size(run: Path, labelled_csvs, tmp_path: Path) -> None:
    """np.int64(32) was refused with "use a whole number, 1 or more"."""
    _, test = labelled_csvs
    metrics = tunelab.evaluate(run, test, out_dir=tmp_path / "np", batch_size=np.int64(4))
    assert (
        metrics["accuracy"] == tunelab.evaluate(run, test, out_dir=tmp_path / "int", batch_size=4)["accuracy"]
    )
    assert (
        json.loads((tmp_path / "np" / "metrics.json").read_text(encoding="utf-8"))["accuracy"]
        == (metrics["accuracy"])
    )


@pytest.mark.parametrize("bad", [np.float64(4.0), np.bool_(True), True, np.int64(0)])
def test_evaluate_still_refuses_a_batch_size_that_is_no_whole_number(run: Path, bad: Any) -> None:
    message = "^" + re.escape(f"batch_size={bad!r} (--batch-size): use a whole number, 1 or more") + "$"
    with pytest.raises(ConfigError, match=message):
        tunelab.evaluate(run, "test.csv", batch_size=bad)


# -- 5. zero-shot labels as a tuple, an array or a Series -------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        ("sports", "food"),
        np.array(["sports", "food"]),
        np.array(["sports", "food"], dtype=object),
        pd.Series(["sports", "food"]),
        pd.Series(["sports", "food"], dtype=object, index=[7, 3]),
    ],
    ids=["tuple", "array", "object-array", "series", "object-series"],
)
def test_label_names_in_a_list_like_are_read_as_a_list(labels: Any, tiny_bert: Path) -> None:
    """An array or a Series failed in ``raw == []`` (ambiguous truth value, NotImplementedError); a
    tuple was refused as "expected ... a list of labels"."""
    parsed = parse_label_descriptions(labels, "labels")
    assert parsed == {"sports": "sports", "food": "food"}
    assert all(type(name) is str for name in parsed)  # not numpy's np.str_, which JSON shows as such
    predictor = zero_shot_predictor(labels, encoder=str(tiny_bert), max_length=32)
    assert predictor.labels.names == ["sports", "food"]
    assert predictor.predict("a football match")["label"] in ("sports", "food")


def test_zero_shot_writes_a_run_for_an_array_of_labels(tiny_bert: Path, tmp_path: Path) -> None:
    written = zero_shot(np.array(["sports", "food"]), tmp_path / "zs", encoder=str(tiny_bert), max_length=32)
    assert written.descriptions == {"sports": "sports", "food": "food"}
    assert tunelab.load(written.path).labels.names == ["sports", "food"]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array(["sports", "sports"]), "labels: label 'sports' appears twice; give each label once"),
        (
            pd.Series(["sports", None], dtype=object),
            "labels: item 2 (None) is not a label name; give names as text",
        ),
        (np.array(["sports"]), "labels: only one label ('sports'); zero-shot picks among two or more"),
        (np.array([], dtype=str), "labels: no labels; write one 'label: description' per line"),
        (pd.Series([], dtype=object), "labels: no labels; write one 'label: description' per line"),
        (
            np.array([["sports", "food"]]),
            "labels: a 2-D array of shape (1, 2); give label names as one list, e.g. ['sports', 'food']",
        ),
        ({"sports", "food"}, "labels: expected 'label: description' lines or a list of labels, not set"),
    ],
)
def test_list_likes_get_a_lists_checks(labels: Any, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        parse_label_descriptions(labels, "labels")


# -- 6. dev_split() of a zero-shot predictor is None ------------------------------------------------


def test_a_zero_shot_predictor_has_no_dev_split(zs_predictor: tunelab.Predictor, zs_run: Path) -> None:
    """dev_size keeps its 0.1 default with no training file: "DataError: data.train is not set"."""
    assert zs_predictor.dev_split() is None
    assert tunelab.load(zs_run).dev_split() is None


def test_the_support_bot_says_a_zero_shot_intent_model_has_no_dev_split(
    zs_predictor: tunelab.Predictor,
) -> None:
    """The build warned that the split "cannot be read", as if data were damaged."""
    from tunelab.apps.support.build import _dev_rows

    warnings: list[str] = []
    assert _dev_rows(zs_predictor, None, warnings) == ([], [], None, 0)
    assert len(warnings) == 1 and warnings[0].startswith(
        "the run has no dev split; temperature left at 1.0 (uncalibrated): calibration needs dev data"
    )


def test_a_trained_run_still_gives_its_dev_split(predictor: tunelab.Predictor) -> None:
    split = predictor.dev_split()
    assert split is not None and len(split.texts) == 6 and set(split.labels) <= set(LABELS)  # 10% of 60


# -- 7. logits takes what predict takes ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["torch", "onnx", "ensemble", "zeroshot"])
def test_logits_of_no_texts_one_text_and_a_series(kind: str, every_kind: dict[str, Path]) -> None:
    """[] was an IndexError from the tokenizer, "one text" a TypeError (one text per character) and
    a Series a tokenizer ValueError."""
    predictor = tunelab.load(every_kind[kind])
    assert predictor.format == kind
    both = predictor.logits(TEXTS)
    assert both.shape == (2, 3)
    empty = predictor.logits([])
    assert empty.shape == (0, 3) and empty.dtype == np.float32
    assert predictor.logits(()).shape == (0, 3)
    assert predictor.logits(pd.Series([], dtype=object)).shape == (0, 3)
    assert np.allclose(predictor.logits(TEXTS[1]), both[1:], atol=1e-5)
    assert np.allclose(predictor.logits(pd.Series(TEXTS, index=[9, 4])), both, atol=1e-5)


def test_logits_checks_its_texts_as_predict_does(predictor: tunelab.Predictor, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^text 2: empty or not a string; give non-empty texts$"):
        predictor.logits(["a card", "  "])
    with pytest.raises(DataError, match=r"^texts\[5\]: empty or not a string \(None\); drop or fill"):
        predictor.logits(pd.Series(["a card", None], index=[4, 5], dtype=object))
    with pytest.raises(DataError, match=r"^texts: a DataFrame; pass one column of it, e.g. df\['text'\]$"):
        predictor.logits(pd.DataFrame({"text": TEXTS}))
    with pytest.raises(DataError, match=r"^texts: a path \(.*\); read its texts first"):
        predictor.logits(tmp_path / "texts.csv")
    with pytest.raises(DataError, match=r"^this run classifies single texts: give no text_pairs$"):
        predictor.logits(TEXTS, TEXTS)


# -- 8. KnowledgeIndex.search checks k ------------------------------------------------------------


@pytest.fixture(scope="module")
def index(tiny_bert: Path) -> Any:
    from tunelab.apps.support.knowledge import KnowledgeIndex, Passage

    passages = [
        Passage(f"passage {word}", "", f"kb.md:{i}") for i, word in enumerate(["one", "two", "three"], 1)
    ]
    return KnowledgeIndex.build(passages, model=str(tiny_bert))


@pytest.mark.parametrize("k", [-1, 0, 1.5, True, "2", None, np.float64(2.0)])
def test_search_refuses_a_k_that_is_no_whole_number_of_1_or_more(index: Any, k: Any) -> None:
    """k=-1 returned every passage but the last ([:, :-1]); k=0 no passage, both in silence."""
    message = "^" + re.escape(f"k={k!r}: use a whole number, 1 or more") + "$"
    with pytest.raises(ConfigError, match=message):
        index.search("passage one", k=k)
    with pytest.raises(ConfigError, match=message):
        index.search_many([], k=k)


def test_search_takes_numpy_integers_and_caps_k_at_the_passages(index: Any) -> None:
    assert len(index.search("passage one", k=np.int64(2))) == 2
    assert len(index.search("passage one", k=1)) == 1
    everything = index.search("passage one", k=10)
    assert sorted(hit.passage.text for hit in everything) == ["passage one", "passage three", "passage two"]


# -- 9. an empty Series gets the result's columns ------------------------------------------------


@pytest.mark.parametrize("top_k", [3, 1])
def test_an_empty_series_is_predicted_with_the_columns_of_a_non_empty_one(
    predictor: tunelab.Predictor, zs_predictor: tunelab.Predictor, top_k: int
) -> None:
    """``pd.DataFrame([], index=...)`` had no columns: ``df.join(preds)[["label", "score"]]`` was a
    KeyError on a filtered frame that happened to be empty."""
    for p in (predictor, zs_predictor):
        full = p.predict(pd.Series(TEXTS), top_k=top_k)
        empty = p.predict(pd.Series([], dtype=object, index=pd.Index([], name="id")), top_k=top_k)
        assert list(empty.columns) == list(full.columns) == ["top_k", "label", "score"]
        assert len(empty) == 0 and empty.index.name == "id"
    frame = pd.DataFrame({"text": ["a card", "a loan"], "keep": [False, False]})
    kept = frame[frame["keep"]]
    joined = kept.join(predictor.predict(kept["text"]))[["label", "score"]]
    assert list(joined.columns) == ["label", "score"] and joined.empty


# -- low: what a Predictor and a KnowledgeIndex are, in their repr ----------------------------------


def test_a_predictor_and_an_index_say_what_they_are(
    predictor: tunelab.Predictor, zs_predictor: tunelab.Predictor, run: Path, index: Any, tiny_bert: Path
) -> None:
    assert repr(predictor) == (
        f"Predictor(run={str(run.resolve())!r}, format='torch', task='single_label', num_labels=3)"
    )
    assert repr(zs_predictor) == "Predictor(run=None, format='zeroshot', task='single_label', num_labels=3)"
    assert repr(index) == f"KnowledgeIndex(passages=3, model={str(tiny_bert)!r}, search='exact')"
