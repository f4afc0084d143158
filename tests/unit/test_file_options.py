"""A run's file settings stay with its files: ``eval`` and ``predict`` read a new file its own way.

The run here is trained the way Financial PhraseBank is read (``sentence@label`` lines, Latin-1,
no header row); the files given to it afterwards are ordinary CSVs, JSON lines, or PhraseBank-like
files with the reading options given on the command line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.config import DataConfig
from tunelab.data import read_table
from tunelab.errors import ConfigError

PHRASEBANK_OPTIONS = [
    "data.separator=@",
    "data.encoding=latin-1",
    "data.header=false",
    "data.column_names=[sentence,label]",
]


def phrasebank_lines(rows: list[tuple[str, str]]) -> bytes:
    """``sentence@label`` lines in Latin-1 with CRLF, as Financial PhraseBank ships them."""
    return "".join(f"{s}@{label}\r\n" for s, label in rows).encode("latin-1")


@pytest.fixture(scope="module")
def phrasebank_run(tiny_bert: Path, tiny_overrides: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phrasebank")
    words = {"food": ["pizza", "bread", "cheese", "soup"], "sports": ["tennis", "goal", "match", "team"]}
    rows = [
        (f"the {a} and {b} , très bien", label)
        for label, ws in words.items()
        for a in ws
        for b in ws
        if a != b
    ]
    train = folder / "Sentences_AllAgree.txt"
    train.write_bytes(phrasebank_lines(rows))
    overrides = tiny_overrides(
        tiny_bert,
        train,
        None,
        folder / "runs",
        *PHRASEBANK_OPTIONS,
        "data.text_column=sentence",
        "data.dev_size=0.25",
        "name=phrasebank",
        epochs=2,
    )
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


def test_predict_reads_an_ordinary_csv_with_its_own_options(
    phrasebank_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tickets = tmp_path / "tickets.csv"
    tickets.write_text(
        'id,text\nt1,"pizza, bread and cheese"\nt2,football match today\nt3,"soup, salad"\n', encoding="utf-8"
    )
    out = tmp_path / "predictions.jsonl"
    assert main(["predict", str(phrasebank_run), "--input", str(tickets), "--output", str(out)]) == 0
    assert "wrote 3 predictions" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    # Not "id,text" as a text, not one unsplit string per row: the header and the commas are the CSV's.
    assert [(r["id"], r["text"]) for r in rows] == [
        ("t1", "pizza, bread and cheese"),
        ("t2", "football match today"),
        ("t3", "soup, salad"),
    ]
    assert all(r["label"] in {"food", "sports"} for r in rows)


def test_eval_reads_a_normal_csv_with_the_run_columns(phrasebank_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "labelled.csv"
    data.write_text(
        'sentence,label\npizza and cheese,food\ntennis match,sports\n"bread, soup",food\n', encoding="utf-8"
    )
    metrics = tunelab.evaluate(phrasebank_run, data, out_dir=tmp_path / "report")
    assert metrics["n"] == 3  # before the fix: "empty label" (read with '@', no header)


def test_eval_takes_reading_options_on_the_command_line(
    phrasebank_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "Sentences_50Agree.txt"
    data.write_bytes(phrasebank_lines([("crème brûlée recipe", "food"), ("tennis goal", "sports")]))
    argv = [
        "eval",
        str(phrasebank_run),
        "--data",
        str(data),
        *PHRASEBANK_OPTIONS,
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 0
    assert f"{data} (2 rows):" in capsys.readouterr().out


def test_phrasebank_layout_is_detected_from_the_file(tmp_path: Path) -> None:
    """'@' is sniffed, Latin-1 found, and given column names that are not the first row mean no header."""
    from tunelab.data.file_options import options_for_file

    data = tmp_path / "news.txt"
    data.write_bytes(
        phrasebank_lines([("Profit rose , says CEO Müller .", "positive"), ("Sales fell .", "negative")])
    )
    run = DataConfig(text_column="sentence")
    cfg = options_for_file(data, run, ["data.column_names=[sentence,label]"])
    assert (cfg.separator, cfg.encoding, cfg.header) == ("@", "latin-1", False)
    df = read_table(data, cfg)
    assert df["sentence"].tolist() == ["Profit rose , says CEO Müller .", "Sales fell ."]
    assert df["label"].tolist() == ["positive", "negative"]


def test_a_file_without_the_run_columns_fails_naming_them(
    phrasebank_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "other.csv"
    data.write_text("text,category\npizza,food\n", encoding="utf-8")
    assert main(["eval", str(phrasebank_run), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    line = lines[0]
    assert "columns 'text', 'category'" in line  # found
    assert "'sentence' (text) and 'label' (label)" in line  # needed
    assert "data.column_names=[sentence,label]" in line  # how to name them


def test_reading_options_are_checked(phrasebank_run: Path, tmp_path: Path) -> None:
    from tunelab.data.file_options import parse_file_overrides

    with pytest.raises(ConfigError, match=r"data\.train"):
        parse_file_overrides(["data.train=x.csv"])
    with pytest.raises(ConfigError, match=r"data\.header"):
        parse_file_overrides(["data.header=maybe"])
    data = tmp_path / "x.csv"
    data.write_text("sentence,label\na,food\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="column_names"):
        tunelab.evaluate(phrasebank_run, data, options=["data.header=false"])


ROWS = [("a", "pizza"), ("b", ""), ("c", "tennis goal"), ("d", "   "), ("e", "soup")]


@pytest.mark.parametrize(
    ("name", "content", "convention"),
    [
        ("tickets.csv", "id,text\n" + "".join(f"{i},{t}\n" for i, t in ROWS), "the header line not counted"),
        ("tickets.jsonl", "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in ROWS), "line numbers"),
    ],
    ids=["csv", "jsonl"],
)
def test_predict_rows_are_the_file_row_numbers(
    phrasebank_run: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    name: str,
    content: str,
    convention: str,
) -> None:
    source = tmp_path / name
    source.write_text(content, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.WARNING):
        n = tunelab.predict_file(tunelab.load(phrasebank_run), source, out)
    assert n == 3
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["row"]) for r in rows] == [("a", 1), ("c", 3), ("e", 5)]  # not 1, 2, 3
    assert "dropped 2 rows with empty text (first: row 2)" in caplog.text
    assert convention in caplog.text  # the message says how rows are counted


def test_jsonl_lines_with_unicode_line_separators(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    texts = ["first\u2028still the first", "second\u2029paragraph", "third\x85and\x0bmore"]
    # ensure_ascii=False writes U+2028/U+2029 raw, as JSON allows (and many writers do).
    source.write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8"
    )
    df = read_table(source, DataConfig())
    assert df["text"].tolist() == texts
    assert df.index.tolist() == [1, 2, 3]


def test_unknown_option_on_predict_fails_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "x.csv"
    source.write_text("text\nhello\n", encoding="utf-8")
    argv = ["predict", str(tmp_path / "no-run"), "--input", str(source), "data.sep=;", "--output", "o.jsonl"]
    assert main(argv) == 2
    assert "data.FIELD=value" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "flag"), [("eval", "--data"), ("predict", "--input"), ("export", "--data")]
)
def test_a_run_given_after_the_file_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, flag: str
) -> None:
    """``--data FILE [options]`` swallows what follows: a run folder put after the file used to be
    reported as a missing run argument."""
    source = tmp_path / "x.csv"
    source.write_text("text,label\nhello,food\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main([command, flag, str(source), "runs/banking77"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'runs/banking77' is not a data.FIELD=VALUE option" in err
    assert f"give the run folder before {flag}" in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"-DOCSTART- -X- O O\n\nEU B-ORG\nrejects O\nGerman B-MISC\ncall O\n", "conll"),
        (b"Peter B-PER\nvisited O\nParis B-LOC\n\nAnna B-PER\nleft O\n", "conll"),
        (b"text,label\nhello there,greeting\nbye now,farewell\nsee you,farewell\n", "csv"),
        (b"yes O\nno O\nmaybe O\n", "csv"),  # every tag O: no evidence it is tagged data
        (b'{"tokens": ["a"], "tags": ["O"]}\n', "jsonl"),
    ],
)
def test_a_file_without_extension_is_told_by_its_content(tmp_path, content: bytes, expected: str) -> None:
    from tunelab.data.file_options import _format_from_content

    assert _format_from_content(content) == expected


def test_a_file_named_like_the_runs_own_in_another_folder_is_read_its_own_way(
    tiny_bert: Path, tiny_overrides: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config.json keeps data.train as typed ("train.txt"): from another folder, a CSV that happened
    to have that name was taken for the run's file and read with its layout ('@', no header), so
    its header was classified as a text and each id glued onto its text."""
    project = tmp_path / "project"
    project.mkdir()
    words = {"food": ["pizza", "bread", "cheese"], "sports": ["tennis", "goal", "match"]}
    rows = [(f"the {a} and {b}", label) for label, ws in words.items() for a in ws for b in ws if a != b]
    (project / "train.txt").write_bytes(phrasebank_lines(rows))
    monkeypatch.chdir(project)
    overrides = tiny_overrides(
        tiny_bert, Path("train.txt"), None, project / "runs", *PHRASEBANK_OPTIONS,
        "data.text_column=sentence", "data.dev_size=0.25", "name=relative", epochs=1,
    )  # fmt: skip
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    (other / "train.txt").write_text("id,text\n1,pizza and bread\n2,tennis match\n", encoding="utf-8")
    assert main(["predict", str(run), "--input", "train.txt", "--output", "out.jsonl"]) == 0
    got = [json.loads(line) for line in (other / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["text"]) for r in got] == [("1", "pizza and bread"), ("2", "tennis match")]
    monkeypatch.chdir(project)  # the run's own file, by the same relative name: read as the run read it
    assert main(["predict", str(run), "--input", "train.txt", "--output", str(other / "own.jsonl")]) == 0
    own = [json.loads(line) for line in (other / "own.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(own) == len(rows) and own[0]["text"] == rows[0][0]
