"""A text holding a lone "\\r" is quoted in every CSV of user texts (predictions, eval's mistakes.csv,
support feedback): the file is written with "\\r\\n" line ends, so the csv module quotes it and each
record reads back as one row. Python's csv writer quoted only the separator, the quote and the
characters of its "\\n" terminator: the row split at the "\\r" and the later columns shifted.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.cli.support_feedback_cmd import render
from tunelab.evaluate.mistakes import Mistake, Mistakes, write_csv
from tunelab.inference import files
from tunelab.zeroshot import zero_shot_predictor

CR_TEXT = "football\rmatch"


@pytest.fixture(scope="module")
def labels_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labels.yaml"
    path.write_text("sports: sports and football\nfood: food and cooking\n", encoding="utf-8")
    return path


def _rows(path: Path, sep: str = ",") -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter=sep))


def _column(rows: list[list[str]], name: str) -> list[str]:
    return [row[rows[0].index(name)] for row in rows[1:]]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_predict_keeps_a_text_with_a_lone_cr_in_one_row(
    tiny_bert: Path, labels_yaml: Path, tmp_path: Path, suffix: str
) -> None:
    source = tmp_path / "cr.csv"
    source.write_bytes(b'id,text\n1,"football\rmatch"\n2,pizza soup\n')
    target = tmp_path / f"out{suffix}"
    argv = ["predict", "--zero-shot", str(labels_yaml), "--encoder", str(tiny_bert)]
    assert main([*argv, "--input", str(source), "--output", str(target), "-q"]) == 0
    sep = "\t" if suffix == ".tsv" else ","
    rows = _rows(target, sep)
    assert len(rows) == 3 and len({len(r) for r in rows}) == 1  # no row split, no column shifted
    assert _column(rows, "text") == [CR_TEXT, "pizza soup"] and _column(rows, "row") == ["1", "2"]
    assert set(_column(rows, "label")) <= {"sports", "food"}
    assert pd.read_csv(target, sep=sep)["text"].tolist() == [CR_TEXT, "pizza soup"]


def test_a_cr_in_a_later_chunk_makes_the_chunked_file_the_whole_writers(
    tiny_bert: Path, labels_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole file's input is known at the first chunk: the "\\r" in the third chunk's text makes
    the file "\\r\\n" from its header on, byte for byte what the whole-table writer writes."""
    predictor = zero_shot_predictor(labels_yaml, encoder=str(tiny_bert))
    texts = [f"pizza soup {i}" for i in range(7)]
    texts[5] = CR_TEXT
    source = tmp_path / "in.csv"
    source.write_text("text\n" + "".join(f'"{t}"\n' for t in texts), encoding="utf-8", newline="")
    records, types = files._records_and_input_types(predictor, source, 2, 1, None)
    expected = tmp_path / "whole.csv"
    files.write_predictions(records, expected, "csv", types)
    monkeypatch.setattr(files, "CHUNK_ROWS", 2)
    target = tmp_path / "chunked.csv"
    assert tunelab.predict_file(predictor, source, target, top_k=2, batch_size=1, show_progress=False) == 7
    assert target.read_bytes() == expected.read_bytes()
    written = target.read_bytes()
    assert written.count(b"\r\n") == written.count(b"\n") == 8  # the header and 7 rows, all "\r\n"
    assert _column(_rows(target), "text") == texts


def test_a_file_without_a_cr_keeps_its_newline_line_ends(
    tiny_bert: Path, labels_yaml: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text('text\n"two\nlines"\npizza\n', encoding="utf-8")
    target = tmp_path / "out.csv"
    predictor = zero_shot_predictor(labels_yaml, encoder=str(tiny_bert))
    assert tunelab.predict_file(predictor, source, target, show_progress=False) == 2
    assert b"\r" not in target.read_bytes()
    assert _column(_rows(target), "text") == ["two\nlines", "pizza"]


def test_mistakes_csv_keeps_a_text_with_a_lone_cr_in_one_row(tmp_path: Path) -> None:
    mistakes = Mistakes.sorted(
        [Mistake(CR_TEXT, "sports", "food", 0.9), Mistake("soup", "food", "weather", 0.5)], total=2
    )
    path = write_csv(tmp_path / "mistakes.csv", mistakes)
    assert _rows(path) == [
        ["text", "gold", "predicted", "confidence"],
        [CR_TEXT, "sports", "food", "0.9000"],
        ["soup", "food", "weather", "0.5000"],
    ]


def test_feedback_export_keeps_a_text_with_a_lone_cr_in_one_row() -> None:
    text = render([{"text": CR_TEXT, "label": "card"}, {"text": "hello", "label": "oos"}], ".csv")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [["text", "label"], [CR_TEXT, "card"], ["hello", "oos"]]
