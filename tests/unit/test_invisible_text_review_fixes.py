"""Review fixes: a text of only invisible characters is an empty text everywhere, and a per-token
task's ``Predictor.logits`` gives one row per text.

1. A text of zero-width characters (U+200B, U+2060, a BOM U+FEFF) passed ``text.strip()``: the
   library and ``tunelab predict`` classified it (the logits of the empty text it tokenises to) and
   the data reader kept it as a training row; only the HTTP API refused it. One rule,
   ``tunelab.data.scripts.has_visible_text``, now decides "empty" in all of them.
2. For NER, a text longer than ``model.max_length`` is several windows: ``logits(two texts)`` gave
   one row per window (15 rows), row 1 a window of the first text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.config import DataConfig
from tunelab.errors import DataError

INVISIBLE = ["\u200b\u200b", "\ufeff", "\u2060", " \u200b\t\ufeff "]


@pytest.fixture(scope="module")
def run(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tiny_overrides: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("invisible-runs")
    overrides = tiny_overrides(tiny_bert, train, test, out, "name=invisible", epochs=0.2)
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def predictor(run: Path) -> tunelab.Predictor:
    return tunelab.load(run)


# -- 1. invisible text is empty text ------------------------------------------------------------------


def test_has_visible_text_is_the_one_rule() -> None:
    from tunelab.data.scripts import has_visible_text

    for text in ["", "   ", "\x00", *INVISIBLE]:
        assert not has_visible_text(text), repr(text)
    for text in ["a", "\u200bhello", "我", "\u00a0.", "\ud800"]:
        assert has_visible_text(text), repr(text)


@pytest.mark.parametrize("text", INVISIBLE)
def test_predict_and_logits_refuse_a_text_of_invisible_characters(
    predictor: tunelab.Predictor, text: str
) -> None:
    message = r"^text 1: empty or not a string \(only invisible characters, such as U\+200B\); give non-empty"
    with pytest.raises(DataError, match=message):
        predictor.predict(text)
    with pytest.raises(DataError, match=message):
        predictor.logits([text])
    with pytest.raises(DataError, match=r"^text 2: empty or not a string"):
        predictor.predict(["a card", text])


def test_a_series_with_an_invisible_text_is_refused_by_its_index(predictor: tunelab.Predictor) -> None:
    texts = pd.Series(["a card", "\u200b\u200b"], index=[10, 11], name="body")
    with pytest.raises(DataError, match=r"^body\[11\]: empty or not a string .*has_visible_text"):
        predictor.predict(texts)


def test_cli_predict_refuses_an_invisible_text_in_one_line(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(run), "\u200b\u200b"]) != 0
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert len(errors) == 1 and "text 1: empty or not a string" in errors[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_cli_predict_input_drops_an_invisible_row_as_a_blank_one(run: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text('text\nthe goal\n"\u200b\u200b"\n"   "\nmore pasta\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(run), "--input", str(source), "--output", str(out)]) == 0
    rows = pd.read_json(out, lines=True)
    assert rows["row"].tolist() == [1, 4]  # row 2 (zero-width) dropped like row 3 (spaces)


def test_the_reader_drops_or_refuses_an_invisible_row_and_keeps_other_texts_as_read() -> None:
    from tunelab.data.columns import extract

    df = pd.DataFrame(
        {"text": ["\u200b\u200b", " \u200bhello ", "soup", "\ufeff"], "label": ["food", "food", "food", "x"]},
        index=[1, 2, 3, 4],
    )
    kept = extract(df, DataConfig(empty_text="drop"), source="train.csv", label_kind="one")
    assert kept.rows == [2, 3]
    assert kept.texts == ["\u200bhello", "soup"]  # stripped of spaces only, as before
    assert kept.notes == ["train.csv: dropped 2 rows with empty text (first: row 1)"]
    with pytest.raises(DataError, match=r"^train.csv row 1: empty text \(2 rows in all\)"):
        extract(df, DataConfig(empty_text="error"), source="train.csv", label_kind="one")


def test_a_pair_of_invisible_characters_is_an_empty_pair() -> None:
    from tunelab.data.columns import extract

    df = pd.DataFrame(
        {"text": ["a man", "a dog"], "pair": ["\u2060", "it barks"], "label": ["x", "y"]}, index=[1, 2]
    )
    kept = extract(
        df, DataConfig(empty_text="drop", text_pair_column="pair"), source="pairs.csv", label_kind="one"
    )
    assert kept.rows == [2] and kept.pairs == ["it barks"]


def test_validate_drops_an_invisible_training_row(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["text,label", '"\u200b\u200b",food'] + [f"pasta {i},food" for i in range(5)]
    rows += [f"goal {i},sports" for i in range(5)]
    train = tmp_path / "train.csv"
    train.write_text("\n".join(rows) + "\n", encoding="utf-8")
    args = ["validate", f"data.train={train}", "data.dev_size=0", f"model.name={tiny_bert}"]
    assert main(args) == 0
    assert "dropped 1 row with empty text (first: row 1)" in capsys.readouterr().out
    assert main([*args, "data.empty_text=error"]) == 2
    assert "row 1: empty text" in capsys.readouterr().err


# -- 2. NER logits: one row per text ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ner(
    tiny_bert: Path,
    tagged_jsonls: tuple[Path, Path],
    tiny_overrides: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Any:
    train, test = tagged_jsonls
    out = tmp_path_factory.mktemp("invisible-ner")
    extra = ("data.task=token_classification", "model.max_length=16", "name=ner16")
    overrides = tiny_overrides(tiny_bert, train, test, out, *extra, epochs=1)
    return tunelab.load(tunelab.train(None, overrides=overrides, show_progress=False).run_dir)


def test_ner_logits_give_one_row_per_text_stitched_as_predict_reads_the_windows(ner: Any) -> None:
    from tunelab.tasks.token_classification.encoding import merge_windows

    long, short = "paris " * 100, "peter visited rome"
    got = ner.logits([long, short])
    enc = ner.encode([long])
    assert len(enc) > 2  # the long text is several windows
    whole = ner.tokenizer(long.split(), is_split_into_words=True)  # the text's tokens, no window cut
    assert got.shape == (2, len(whole["input_ids"]), len(ner.labels))
    # Row 1 is the second text, zero-padded past its tokens.
    alone = ner.logits([short])[0]
    np.testing.assert_allclose(got[1, : len(alone)], alone, atol=1e-5)
    assert not got[1, len(alone) :].any()
    # Row 0 starts as the first window and ends as the last one.
    windows = ner.backend.logits(enc)
    first, last = len(enc.input_ids[0]), len(enc.input_ids[-1])
    np.testing.assert_allclose(got[0, : first // 2], windows[0, : first // 2], atol=1e-5)
    np.testing.assert_allclose(got[0, -(last // 2) :], windows[-1, last - last // 2 : last], atol=1e-5)
    # Each word's tag, read at its first token, is the one predict decodes from the windows.
    word_ids = whole.word_ids()
    first_token = [word_ids.index(w) for w in range(len(long.split()))]
    tags, _ = merge_windows(windows, enc)[0]
    assert got[0, first_token].argmax(axis=-1).tolist() == tags.tolist()


def test_ner_logits_of_short_texts_are_what_they_were(ner: Any) -> None:
    texts = ["maria visited rome today", "john left berlin"]
    enc = ner.encode(texts)
    assert len(enc) == 2
    np.testing.assert_array_equal(ner.logits(texts), ner.backend.logits(enc))
    assert ner.logits([]).shape == (0, 0, len(ner.labels))
