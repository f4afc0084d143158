"""Data files as people write them: quoting with any separator, sniffed separators, Excel, row numbers."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from tunelab.config import DataConfig
from tunelab.data import load_splits, read_table
from tunelab.errors import DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_of(fn, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "messages are one line"
    return message


# -- quoting with any separator ---------------------------------------------------------------------


def test_a_semicolon_file_from_pandas_keeps_its_quoted_fields(tmp_path: Path) -> None:
    """pandas and Excel (European locales) write ';' files and quote a text that holds a ';'."""
    f = tmp_path / "export.csv"
    pd.DataFrame({"text": ["Hello; world", "plain", 'say "hi"; bye'], "label": ["a", "b", "a"]}).to_csv(
        f, sep=";", index=False
    )
    df = read_table(f, DataConfig(separator=";"))
    assert df["text"].tolist() == ["Hello; world", "plain", 'say "hi"; bye']
    assert df["label"].tolist() == ["a", "b", "a"]


def test_a_pipe_file_with_a_stray_quote_is_read_without_quoting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = write(tmp_path / "p.txt", 'text|label\n"Profit fell|neg\nflat|neu\nup "a lot"|pos\n')
    with caplog.at_level(logging.WARNING):
        df = read_table(f, DataConfig(separator="|"))
    assert df["text"].tolist() == ['"Profit fell', "flat", 'up "a lot"']
    assert "without quoting" in caplog.text


# -- sniffing ---------------------------------------------------------------------------------------


def test_the_separator_is_sniffed_when_not_given(tmp_path: Path) -> None:
    f = write(tmp_path / "semi.csv", 'text;label\n"Hello; world, again";pos\nok, fine;neg\n')
    s = load_splits(DataConfig(train=str(f), dev_size=0))
    assert s.train.texts == ["Hello; world, again", "ok, fine"]
    assert s.labels.names == ["neg", "pos"]


def test_a_tsv_named_csv_is_read_as_tsv_when_no_separator_is_given(tmp_path: Path) -> None:
    f = write(tmp_path / "tabs.csv", "text\tlabel\nhello, world\ta\nbye, now, then\tb\n")
    df = read_table(f, DataConfig())
    assert df["text"].tolist() == ["hello, world", "bye, now, then"]


def test_the_sniffers_guess_is_checked_against_the_records(tmp_path: Path) -> None:
    """csv.Sniffer alone picks ';' here (a quote then '; ' inside a text); ',' splits every line in two."""
    f = write(tmp_path / "c.csv", 'text,label\n"He said ""no""; then left",a\n"ok; fine",b\nplain,a\n')
    df = read_table(f, DataConfig())
    assert df["text"].tolist() == ['He said "no"; then left', "ok; fine", "plain"]


def test_a_tsv_read_as_csv_says_it_looks_tab_separated(tmp_path: Path) -> None:
    f = write(tmp_path / "tabs.csv", "text\tlabel\nhello, world\ta\nbye, now, then\tb\n")
    msg = error_of(read_table, f, DataConfig(separator=","))
    assert msg.startswith(f"{f}: looks tab-separated") and "data.separator=tab" in msg
    assert "Error tokenizing" not in msg and "index_col" not in msg


def test_a_tsv_read_with_a_separator_it_lacks_says_so_instead_of_one_column(tmp_path: Path) -> None:
    f = write(tmp_path / "tabs.txt", "text\tlabel\nhello\ta\nbye\tb\n")
    msg = error_of(read_table, f, DataConfig(separator=";"))
    assert "looks tab-separated" in msg and "single column" in msg


def test_separator_tab_means_a_tab(tmp_path: Path) -> None:
    f = write(tmp_path / "t.txt", "text\tlabel\nhello, world\ta\n")
    assert read_table(f, DataConfig(separator="tab"))["label"].tolist() == ["a"]


def test_column_names_repeated_once_spaces_are_stripped_are_refused(tmp_path: Path) -> None:
    """ "text, text" (and JSON keys "text" and " text") became two columns named text: validate
    failed as "unexpected ValueError: The truth value of a Series is ambiguous"."""
    csv_file = write(tmp_path / "dup.csv", "text, text,label\na,b,x\n")
    assert "column name(s) 'text' appear more than once" in error_of(read_table, csv_file, DataConfig())
    jsonl_file = write(tmp_path / "dup.jsonl", '{"text": "a", " text": "b", "label": "x"}\n')
    assert "'text' appear more than once" in error_of(read_table, jsonl_file, DataConfig())


@pytest.mark.parametrize("orient", ["columns", "split"])
def test_a_json_file_of_whole_columns_is_refused_saying_how_to_write_rows(
    tmp_path: Path, orient: str
) -> None:
    """pandas' default df.to_json("x.json") was read as one row: a whole column became one text."""
    path = tmp_path / "frame.json"
    pd.DataFrame({"text": ["goal", "pizza"], "label": ["sports", "food"]}).to_json(path, orient=orient)
    assert "orient='records', lines=True" in error_of(read_table, path, DataConfig())
    records = tmp_path / "rows.jsonl"
    pd.DataFrame({"text": ["goal"], "label": [{"a": 1}]}).to_json(records, orient="records", lines=True)
    assert read_table(records, DataConfig())["text"].tolist() == ["goal"]  # one row with a dict cell: a row


def test_a_parser_error_names_the_files_own_line(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.csv", "text,label\n\nfine,a\ntoo,many,fields\n")
    msg = error_of(read_table, f, DataConfig(separator=","))
    assert "line 4 has 3 fields where line 1 has 2" in msg


# -- Excel ------------------------------------------------------------------------------------------


def excel(path: Path) -> Path:
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"x": [1]}).to_excel(writer, sheet_name="notes", index=False)
        pd.DataFrame({"text": ["good card", "lost card", "fee"], "label": [1, 0, 1]}).to_excel(
            writer, sheet_name="data", index=False
        )
    return path


def test_an_excel_sheet_is_read_with_data_sheet(tmp_path: Path) -> None:
    f = excel(tmp_path / "book.xlsx")
    s = load_splits(DataConfig(train=str(f), sheet="data", dev_size=0))
    assert s.train.texts == ["good card", "lost card", "fee"]
    assert s.labels.names == ["0", "1"]  # whole numbers stay "1", not "1.0"


def test_an_excel_file_without_data_sheet_reads_the_first_sheet(tmp_path: Path) -> None:
    f = excel(tmp_path / "book.xlsx")
    assert list(read_table(f, DataConfig()).columns) == ["x"]


def test_an_unknown_sheet_names_the_sheets(tmp_path: Path) -> None:
    f = excel(tmp_path / "book.xlsx")
    msg = error_of(read_table, f, DataConfig(sheet="Sheet1"))
    assert "no sheet 'Sheet1'" in msg and "'notes', 'data'" in msg and "data.sheet" in msg


def test_excel_column_names_must_name_every_column(tmp_path: Path) -> None:
    """pandas' names= with fewer names than columns made the first column the index: the texts
    were read from the next column (ticket ids classified); with a header row it failed as
    "unexpected ParserError"."""
    path = tmp_path / "three.xlsx"
    pd.DataFrame([["good card", "t-1", "x"], ["lost card", "t-2", "y"]]).to_excel(
        path, index=False, header=False
    )
    for header in (False, True):
        msg = error_of(read_table, path, DataConfig(header=header, column_names=["text", "id"]))
        assert "sheet 'Sheet1' has 3 columns, data.column_names names 2 (text, id)" in msg
    df = read_table(path, DataConfig(header=False, column_names=["text", "id", "extra"]))
    assert df["text"].tolist() == ["good card", "lost card"] and df["id"].tolist() == ["t-1", "t-2"]
    named = read_table(path, DataConfig(header=True, column_names=["text", "id", "extra"]))
    assert named["text"].tolist() == ["lost card"]  # the first row was the header, renamed


def test_a_file_that_is_not_a_workbook_says_so(tmp_path: Path) -> None:
    f = write(tmp_path / "fake.xlsx", "text,label\na,b\n")
    assert "not a readable .xlsx workbook" in error_of(read_table, f, DataConfig())


# -- row numbers ------------------------------------------------------------------------------------


def test_row_messages_say_what_a_row_number_counts(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "text,label\na,x\nb,\n")
    msg = error_of(load_splits, DataConfig(train=str(f), dev_size=0))
    assert f"{f} row 2: empty label" in msg and "header line not counted" in msg


def test_excel_row_messages_say_excel_counts_one_more(tmp_path: Path) -> None:
    f = tmp_path / "b.xlsx"
    pd.DataFrame({"text": ["a", "b"], "label": ["x", None]}).to_excel(f, index=False)
    msg = error_of(load_splits, DataConfig(train=str(f), dev_size=0))
    assert "row 2: empty label" in msg and "Excel's row number is one more" in msg


def test_every_missing_column_is_named_at_once(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "text,label\na,x\nb,y\n")
    msg = error_of(load_splits, DataConfig(train=str(f), text_column="txt", label_column="lbl"))
    assert "'txt' or 'lbl'" in msg and "data.text_column and data.label_column" in msg


def test_an_encoding_error_in_a_gzipped_file_names_the_unpacked_line(tmp_path: Path) -> None:
    """Its packed bytes were decoded: "byte 0x8b at offset 1 on line 1" is gzip's header, not the
    Latin-1 é on line 3."""
    import gzip

    path = tmp_path / "latin.csv.gz"
    path.write_bytes(gzip.compress("text,label\ngood,a\ncaf\xe9,b\n".encode("latin-1")))
    msg = error_of(read_table, path, DataConfig(encoding="utf-8"))
    assert "byte 0xe9 at offset 21 of the unpacked text) on line 3" in msg
