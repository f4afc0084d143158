"""Review fixes in the Python API on tiny runs: quiet() left a stderr handler on the root logger
(every later train() printed its INFO lines), embed() took a DataFrame's column names for texts,
top_k went unchecked, and a Predictor where a run path belongs failed with a raw TypeError."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import tunelab
from tunelab.embeddings import embed
from tunelab.errors import ConfigError, DataError, RunError
from tunelab.quiet import quiet
from tunelab.runs import find_run


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


@contextmanager
def bare_root_logger() -> Iterator[list[logging.Handler]]:
    """The root logger with no handler, as in a fresh notebook (pytest gives it its own); yields
    the handlers it holds meanwhile and puts pytest's back, dropping anything added."""
    saved = logging.root.handlers[:]
    for handler in saved:
        logging.root.removeHandler(handler)
    try:
        yield logging.root.handlers
    finally:
        for handler in logging.root.handlers[:]:
            logging.root.removeHandler(handler)
        for handler in saved:
            logging.root.addHandler(handler)


# -- 1. quiet() configures no logging for the process ----------------------------------------------


def test_module_level_logging_in_a_quiet_block_adds_no_root_handler(capsys) -> None:
    """logging.warning ran basicConfig(): its stderr handler stayed, and printed that very warning."""
    with bare_root_logger() as handlers:
        with quiet():
            logging.warning("library chatter")
            logging.error("a real failure")
        assert handlers == []
    err = capsys.readouterr().err
    assert "library chatter" not in err and "a real failure" in err  # an ERROR still shows


def test_another_threads_basic_config_during_a_quiet_block_goes_through() -> None:
    with bare_root_logger() as handlers:
        inside, release = threading.Event(), threading.Event()

        def load_quietly() -> None:
            with quiet():
                inside.set()
                release.wait(30)

        worker = threading.Thread(target=load_quietly)
        worker.start()
        try:
            assert inside.wait(30)
            logging.basicConfig()  # a program setting up its own logging meanwhile
        finally:
            release.set()
            worker.join(30)
        assert len(handlers) == 1


def test_an_onnx_int8_export_leaves_the_root_logger_as_it_was(run: Path, tmp_path: Path) -> None:
    with bare_root_logger() as handlers:
        tunelab.export(run, format="onnx-int8", output=tmp_path / "int8", max_drop=100.0, show_progress=False)
        assert handlers == []


# -- 5. embed() checks its texts, model and batch size -----------------------------------------------


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (pd.DataFrame({"text": ["a card", "a loan"]}), r"texts: a DataFrame; pass one column of it"),
        ({"a": 1}, r"texts: a mapping"),
        (None, r"texts: NoneType is not text; pass a text, a list of texts or a column$"),
        (7, r"texts: int is not text"),
        (Path("texts.csv"), r"texts: a path \(texts.csv\); read its texts first"),
        (["a card", None], r"text 2: empty or not a string \(None\)"),
        (["a card", "  "], r"text 2: empty or not a string"),
        (("a card", b"bytes"), r"text 2: empty or not a string"),
        (pd.Series(["a card", np.nan], index=[10, 11], name="body"), r"body\[11\]: empty or not a string"),
        ("", r"text: empty or not a string"),
    ],
)
def test_embed_refuses_what_is_not_texts(texts: Any, message: str, tiny_bert: Path) -> None:
    with pytest.raises(DataError, match=message):
        embed(texts, model=str(tiny_bert))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, None, True])
def test_embed_checks_the_batch_size(batch_size: Any, tiny_bert: Path) -> None:
    with pytest.raises(ConfigError, match=r"^batch_size .*: use 1 or more$"):
        embed(["a card"], model=str(tiny_bert), batch_size=batch_size)


def test_embed_takes_a_path_for_the_model_and_refuses_a_non_path(tiny_bert: Path) -> None:
    by_path = embed(["a card", "a loan"], model=tiny_bert)
    assert by_path.shape[0] == 2 and np.allclose(by_path, embed(["a card", "a loan"], model=str(tiny_bert)))
    with pytest.raises(ConfigError, match=r"model: int; give a model name or an encoder folder"):
        embed(["a card"], model=3)  # type: ignore[arg-type]


def test_embed_still_takes_a_series_a_generator_and_one_text(tiny_bert: Path) -> None:
    series = pd.Series(["a card", "a loan"], index=[5, 9])
    assert embed(series, model=str(tiny_bert)).shape[0] == 2
    assert embed((t for t in ["a card"]), model=str(tiny_bert)).shape[0] == 1
    assert embed("a card", model=str(tiny_bert)).shape[0] == 1
    assert embed([], model=str(tiny_bert)).shape[0] == 0


# -- 7. top_k is checked as the CLI checks --top-k -------------------------------------------------


BAD_TOP_K = [0, -1, None, "2", 2.0, True]


@pytest.mark.parametrize("top_k", BAD_TOP_K)
def test_predict_checks_top_k(top_k: Any, predictor: tunelab.Predictor, run: Path) -> None:
    message = "^" + re.escape(f"top_k {top_k!r}: use 1 or more") + "$"
    with pytest.raises(ConfigError, match=message):
        predictor.predict("a card", top_k=top_k)
    with pytest.raises(ConfigError, match=message):
        predictor.predict(["a card"], top_k=top_k)
    with pytest.raises(ConfigError, match=message):
        tunelab.predict(predictor, pd.Series(["a card"]), top_k=top_k)
    with pytest.raises(ConfigError, match=message):
        predictor.predict_encoded(predictor.encode(["a card"]), ["a card"], top_k=top_k)


@pytest.mark.parametrize("top_k", [0, "2"])
def test_predict_file_checks_top_k_before_writing(
    top_k: Any, predictor: tunelab.Predictor, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": ["a card", "a loan"]}).to_csv(source, index=False)
    with pytest.raises(ConfigError, match=r"top_k .*: use 1 or more"):
        tunelab.predict_file(predictor, source, tmp_path / "out.jsonl", top_k=top_k)
    assert not (tmp_path / "out.jsonl").exists()


def test_top_k_one_and_more_still_rank(predictor: tunelab.Predictor) -> None:
    assert len(predictor.predict("a card", top_k=1)["top_k"]) == 1
    assert len(predictor.predict("a card", top_k=2)["top_k"]) == 2


# -- 8. the wrong kind of run argument --------------------------------------------------------------


def test_a_predictor_where_a_run_path_belongs_is_one_line(
    predictor: tunelab.Predictor, run: Path, test_csv: Path
) -> None:
    hint = rf"a loaded Predictor, not a run folder; pass the run's path, predictor.run.root \({run}\)"
    with pytest.raises(RunError, match=hint):
        tunelab.load(predictor)  # type: ignore[arg-type]
    with pytest.raises(RunError, match=hint):
        tunelab.evaluate(predictor, test_csv)
    with pytest.raises(RunError, match=hint):
        tunelab.evaluate(predictor)
    with pytest.raises(RunError, match=r"run: NoneType is not a run folder; pass its path"):
        find_run(None)  # type: ignore[arg-type]


def test_predict_file_takes_a_run_path_as_predict_does(
    predictor: tunelab.Predictor, run: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": ["a card", "a loan"]}).to_csv(source, index=False)
    assert tunelab.predict_file(str(run), source, tmp_path / "by_path.jsonl") == 2
    assert tunelab.predict_file(predictor, source, tmp_path / "loaded.jsonl") == 2
    assert (tmp_path / "by_path.jsonl").read_text() == (tmp_path / "loaded.jsonl").read_text()
    with pytest.raises(RunError, match=r"run: int is not a run folder"):
        tunelab.predict_file(3, source, tmp_path / "other.jsonl")  # type: ignore[arg-type]


def test_export_and_merge_given_a_predictor_are_one_line(
    predictor: tunelab.Predictor, run: Path, tmp_path: Path
) -> None:
    hint = rf"a loaded Predictor, not a run folder; pass the run's path, predictor.run.root \({run}\)"
    with pytest.raises(RunError, match=hint):
        tunelab.export(predictor, output=tmp_path / "out")  # type: ignore[arg-type]
    with pytest.raises(RunError, match=hint):
        tunelab.merge(predictor, output=tmp_path / "merged")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists() and not (tmp_path / "merged").exists()


def test_predict_file_reads_a_dict_options_text_column_as_the_list_form_does(
    predictor: tunelab.Predictor, tmp_path: Path
) -> None:
    """``{"data.text_column": "body"}`` names the column as the list form does, but the "was it
    given" check read the raw dict and missed the prefix: a file without that column but with a
    ``text`` column had ``text`` read silently instead of the one-line refusal the list form gives."""
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": ["a card", "a loan"]}).to_csv(source, index=False)
    refusals = []
    for options in (["data.text_column=body"], {"data.text_column": "body"}, {"text_column": "body"}):
        with pytest.raises(DataError, match="body") as refused:
            tunelab.predict_file(predictor, source, tmp_path / "out.jsonl", options=options)
        refusals.append(str(refused.value))
        assert not (tmp_path / "out.jsonl").exists()
    assert refusals[1] == refusals[2] == refusals[0]  # the list form's refusal, word for word
    assert (
        tunelab.predict_file(predictor, source, tmp_path / "ok.jsonl", options={"data.text_column": "text"})
        == 2
    )
