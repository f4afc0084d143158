"""Review fixes in the NER readers and ``predict --input``: comment lines with the token lines'
column count, lone surrogates in JSON lines, ``predict --input`` offsets into the text as given,
null ``spans`` (a DataFrame row without entities), and line and column separators."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from tunelab.config import DataConfig
from tunelab.errors import DataError
from tunelab.inference.files import prediction_records
from tunelab.tasks import get_task
from tunelab.tasks.token_classification.reading import (
    read_conll,
    read_jsonl_spans,
    read_jsonl_tokens,
    word_offsets,
)


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


# --- comment lines with the token lines' column count ------------------------------------------------


def test_a_conllu_comment_with_as_many_columns_as_the_token_lines_is_a_comment(tmp_path: Path) -> None:
    """``# sent_id = 1`` has 4 columns, as GermEval's ``1<TAB>Schartau<TAB>B-PER<TAB>O`` has: it was
    read as a token tagged ``=`` and the file refused, though the README says comments are handled."""
    numbered = (
        "# sent_id = 1\n1\tSchartau\tB-PER\tO\n2\tsagte\tO\tO\n\n# sent_id = 2\n1\tEr\tO\tO\n2\tging\tO\tO\n"
    )
    path = write(tmp_path / "germeval.tsv", numbered)
    sentences = read_conll(path, token_column=1, tag_column=2)
    assert [s.tokens for s in sentences] == [["Schartau", "sagte"], ["Er", "ging"]]
    assert [s.line for s in sentences] == [2, 6]
    # words not in the first column: a '#'-led line is never a token line, even one whose tag
    # column happens to hold a valid tag
    odd = write(tmp_path / "odd.tsv", "#\tdoc\tO\t7\n1\tSchartau\tB-PER\tO\n2\tsagte\tO\tO\n")
    assert read_conll(odd, token_column=1, tag_column=2)[0].tokens == ["Schartau", "sagte"]
    # words first (CoNLL-2003's 4 columns): the comment's last column, "1", is no tag
    conll = "# sent_id = 1\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
    assert read_conll(write(tmp_path / "conll.txt", conll))[0].tokens == ["EU", "rejects"]


def test_a_hash_token_with_a_valid_tag_stays_a_token(tmp_path: Path) -> None:
    """Tweets tag a '#' token: with the token lines' columns and a valid tag it is no comment."""
    two = write(tmp_path / "tweets.txt", "# O\nEU B-ORG\n\nwow O\n# O\n")
    assert [s.tokens for s in read_conll(two)] == [["#", "EU"], ["wow", "#"]]
    four = write(tmp_path / "tweets4.txt", "# SYM B-NP O\nEU NNP B-NP B-ORG\n")
    (sentence,) = read_conll(four)
    assert sentence.tokens == ["#", "EU"]
    assert sentence.tags == ["O", "B-ORG"]


# --- lone surrogates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "key"),
    [
        ({"tokens": ["peter", "\ud800x"], "tags": ["B-PER", "O"]}, "tokens[1]"),
        ({"tokens": ["peter", "x"], "tags": ["B-PER\udc00", "O"]}, "tags[0]"),  # B-\S+ matched it
    ],
)
def test_a_lone_surrogate_in_tokens_or_tags_names_the_line(
    tmp_path: Path, record: dict, key: str, one_line: Any
) -> None:
    """Valid JSON, no Unicode: it passed, then training's fingerprint failed with a UnicodeEncodeError."""
    ok = {"tokens": ["EU"], "tags": ["B-ORG"]}
    path = write(tmp_path / "train.jsonl", json.dumps(ok) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError) as info:
        read_jsonl_tokens(path)
    message = one_line(info)
    assert message.startswith(f"{path} line 2: {key} is not valid Unicode (a lone surrogate \\u")
    assert message.endswith("; fix or remove the line")


@pytest.mark.parametrize(
    ("record", "key"),
    [
        ({"text": "Hi \ud800 Anna", "spans": []}, "text"),
        ({"text": "Hi Anna", "spans": [{"start": 3, "end": 7, "label": "PER\ud800"}]}, "spans[0].label"),
    ],
)
def test_a_lone_surrogate_in_a_span_file_names_the_line(
    tmp_path: Path, record: dict, key: str, one_line: Any
) -> None:
    path = write(tmp_path / "train.jsonl", json.dumps(record) + "\n")
    with pytest.raises(DataError) as info:
        read_jsonl_spans(path)
    message = one_line(info)
    assert message.startswith(f"{path} line 1: {key} is not valid Unicode (a lone surrogate \\u")


# --- predict --input: offsets into the text as given ----------------------------------------------


class _Recorder:
    """A stand-in Predictor: records the texts it is given and finds "Paris" in each, as NER
    predictions give it (a character offset into the text predicted on)."""

    def __init__(self, task: str) -> None:
        self.task = get_task(task)
        self.config = SimpleNamespace(data=DataConfig(task=task))
        self.seen: list[str] = []

    def predict(self, texts: list[str], pairs: Any = None, **_: Any) -> list[dict[str, Any]]:
        self.seen.extend(texts)
        if self.task.output == "label":
            return [{"label": "x", "score": 1.0} for _ in texts]
        out = []
        for text in texts:
            words = [(s, e) for s, e in word_offsets(text) if text[s:e] == "Paris"]
            out.append(
                {"entities": [{"text": "Paris", "label": "LOC", "start": s, "end": e} for s, e in words]}
            )
        return out


@pytest.mark.parametrize("column", ["text", "sentence"])
def test_predict_input_ner_offsets_point_into_the_text_as_given(tmp_path: Path, column: str) -> None:
    """The texts were stripped before predicting: the entities' offsets pointed into a stripped copy
    (a ``text`` column was silently replaced by it; another column disagreed with the offsets)."""
    given = ["   Alice visited Paris", "Paris\tsaid  ", "\u3000Bob met Paris today"]
    path = write(
        tmp_path / "in.jsonl", "".join(json.dumps({"id": i, column: t}) + "\n" for i, t in enumerate(given))
    )
    predictor = _Recorder("token_classification")
    options = {"text_column": column} if column != "text" else None
    records = prediction_records(predictor, path, options=options)  # type: ignore[arg-type]
    assert predictor.seen == given
    for record, text in zip(records, given, strict=True):
        assert record["text"] == text
        assert record.get(column, text) == text
        (entity,) = record["entities"]
        assert text[entity["start"] : entity["end"]] == "Paris"


def test_predict_input_classification_reads_stripped_texts_and_echoes_them_as_given(tmp_path: Path) -> None:
    """A classifier reads the text as it was trained (stripped: e5's SentencePiece tokenizer gives
    trailing whitespace a token), so its results stay as they were; the echo is the file's text."""
    given = ["  card arrived late ", "refund please\t"]
    path = write(tmp_path / "in.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in given))
    predictor = _Recorder("single_label")
    records = prediction_records(predictor, path)  # type: ignore[arg-type]
    assert predictor.seen == [t.strip() for t in given]
    assert [r["text"] for r in records] == given


# --- null spans: a DataFrame row without entities --------------------------------------------------


def test_null_spans_mean_no_entities_as_a_dataframe_writes_them(tmp_path: Path) -> None:
    """pandas holds NaN for a row without a spans list and writes it as null: the frame was refused."""
    frame = pd.DataFrame(
        {
            "text": ["EU rejects it", "nothing here", "Peter went"],
            "spans": [
                [{"start": 0, "end": 2, "label": "ORG"}],
                None,
                [{"start": 0, "end": 5, "label": "PER"}],
            ],
        }
    )
    # as tunelab.train(train=df) saves a frame (train/frames.py)
    path = write(tmp_path / "train.jsonl", frame.to_json(orient="records", lines=True, force_ascii=True))
    assert '"spans":null' in path.read_text()
    sentences = read_jsonl_spans(path)
    assert [s.tags for s in sentences] == [["B-ORG", "O", "O"], ["O", "O"], ["B-PER", "O"]]


# --- line ends and column separators ---------------------------------------------------------------


def test_a_file_with_cr_line_ends_is_read_line_by_line(tmp_path: Path, one_line: Any) -> None:
    """Split on "\\n" only, a CR-only file was one token line: str.split read its six columns as
    one token "EU" tagged B-PER, without a word."""
    path = write(tmp_path / "mac.txt", "EU B-ORG\rrejects O\r\rPeter B-PER\rBlackburn I-PER\r")
    sentences = read_conll(path)
    assert [s.tokens for s in sentences] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.lines for s in sentences] == [[1, 2], [4, 5]]
    bad = write(tmp_path / "bad.txt", "EU B-ORG\rrejects X\r")
    with pytest.raises(DataError) as info:
        read_conll(bad)
    assert f"{bad} line 2: tag 'X'" in one_line(info)
    undecodable = write(tmp_path / "latin.txt", b"EU B-ORG\rcaf\xe9 O\r")
    with pytest.raises(DataError) as info:
        read_conll(undecodable)
    assert f"{undecodable} line 2: not valid utf-8" in one_line(info)


@pytest.mark.parametrize("inside", ["\x85", "\u2028", "\x1c", "\x1f", "\xa0"])
def test_columns_are_split_at_spaces_and_tabs_only(tmp_path: Path, inside: str) -> None:
    """str.split also splits at U+0085, U+2028, \\x1c-\\x1f (and NBSP), which shifted the columns."""
    path = write(tmp_path / "train.txt", f"New{inside}York B-LOC\nrejects\tO\n")
    (sentence,) = read_conll(path)
    assert sentence.tokens == [f"New{inside}York", "rejects"]
    assert sentence.tags == ["B-LOC", "O"]


def test_cr_cr_lf_line_ends_are_one_line_end(tmp_path: Path) -> None:
    """``\\r\\r\\n`` (a ``\\r\\n`` written again through a text-mode file) was split into two line
    ends, so every token became a one-word sentence, silently."""
    path = tmp_path / "rrn.txt"
    path.write_bytes(b"EU B-ORG\r\r\nrejects O\r\r\n\r\r\nPeter B-PER\r\r\nBlackburn I-PER\r\r\n")
    assert [s.tokens for s in read_conll(path)] == [["EU", "rejects"], ["Peter", "Blackburn"]]


def test_a_hashtag_token_with_a_bad_tag_at_a_sentence_start_is_refused_not_dropped(
    tmp_path: Path, one_line: Any
) -> None:
    path = write(tmp_path / "tweets.txt", "#covid O\nsucks O\n\n#Obama S-PER\nwins O\n")
    with pytest.raises(DataError) as info:
        read_conll(path)
    assert f"{path} line 4: tag 'S-PER'" in one_line(info)
