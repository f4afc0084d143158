"""Files as they arrive: cut-short archives, binary Parquet text, multi-line records, repeated headers,
Mac line ends, JSON arrays and label names in either Unicode normalisation."""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import lzma
import unicodedata
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tunelab.config import DataConfig
from tunelab.data import load_splits, read_table
from tunelab.data.file_options import options_for_file, row_convention
from tunelab.data.held_out import normalised
from tunelab.data.labelled import read_extracted
from tunelab.data.labels import LabelMap
from tunelab.data.summary import summarize
from tunelab.errors import DataError
from tunelab.tasks import get_task

CSV = "text,label\n" + "".join(f"row number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(200))
NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")


def error_of(fn, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, "messages are one line"
    return message


# -- 1. archives cut short or damaged ----------------------------------------------------------------


def _cut(packed: bytes) -> bytes:
    return packed[: len(packed) // 2]  # a download that stopped half way


@pytest.mark.parametrize(
    ("name", "packed"),
    [
        ("train.csv.gz", _cut(gzip.compress(CSV.encode()))),
        ("train.jsonl.gz", _cut(gzip.compress(b'{"text": "a", "label": "x"}\n' * 200))),
        ("train.csv.bz2", _cut(bz2.compress(CSV.encode()))),
        ("train.csv.xz", _cut(lzma.compress(CSV.encode()))),
        ("train.csv.gz", CSV.encode()),  # named .gz, never packed
        ("train.csv.gz", gzip.compress(CSV.encode())[:20] + b"\xff" * 40 + gzip.compress(CSV.encode())[60:]),
    ],
    ids=["gz", "jsonl-gz", "bz2", "xz", "not-gz", "damaged-gz"],
)
@pytest.mark.parametrize("encoding", ["utf-8", "auto"])
def test_an_archive_cut_short_or_damaged_is_one_line(
    tmp_path: Path, name: str, packed: bytes, encoding: str
) -> None:
    """EOFError, BadGzipFile, zlib.error, OSError and LZMAError escaped as tracebacks."""
    path = tmp_path / name
    path.write_bytes(packed)
    msg = error_of(read_table, path, DataConfig(encoding=encoding))
    suffix = path.suffix
    assert msg.startswith(f"{path}: cannot unpack this {suffix} file (")
    assert "download it again" in msg


@pytest.mark.skipif(importlib.util.find_spec("zstandard") is not None, reason="zstandard is installed")
def test_a_zst_file_without_zstandard_says_how_to_read_it(tmp_path: Path) -> None:
    path = tmp_path / "train.csv.zst"
    path.write_bytes(b"(\xb5/\xfd" + b"\x00" * 20)
    msg = error_of(read_table, path, DataConfig())
    assert "pip install zstandard" in msg and "unpack it first" in msg


def test_a_whole_archive_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "train.csv.gz"
    path.write_bytes(gzip.compress(CSV.encode()))
    assert len(read_table(path, DataConfig(encoding="auto"))) == 200


# -- 2. Parquet text stored as BINARY ----------------------------------------------------------------


def test_parquet_strings_stored_as_binary_are_text(tmp_path: Path) -> None:
    """pyarrow gives bytes for a BINARY column, and str() made "b'hello'" of them."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "text": pa.array([b"hello", "café".encode()], type=pa.binary()),
            "label": pa.array([[b"a", b"b"], [b"c"]], type=pa.list_(pa.binary())),
        }
    )
    path = tmp_path / "bin.parquet"
    pq.write_table(table, path)
    df = read_table(path, DataConfig())
    assert df["text"].tolist() == ["hello", "café"]
    assert df["label"].tolist() == [["a", "b"], ["c"]]

    # bytes that are not UTF-8 (an image beside the texts) do not stop the file from being read
    image = pa.array([b"\x89PNG\xff", b"\xff\xfe"], pa.binary())
    beside = pa.table({"text": ["fine", "good"], "image": image})
    pq.write_table(beside, path)
    assert read_table(path, DataConfig())["text"].tolist() == ["fine", "good"]


# -- 3. and 4. the file's own line in a parser error -----------------------------------------------


def test_a_parser_error_after_a_multi_line_text_names_the_files_own_line(tmp_path: Path) -> None:
    """pandas counts records: after a quoted text over three lines its "line 6" was line 8."""
    path = tmp_path / "bad.csv"
    path.write_text('text,label\n"multi\nline\ntext",pos\n\n\nok,neg\nbad,row,here\n', encoding="utf-8")
    assert "line 8 has 3 fields where line 1 has 2" in error_of(read_table, path, DataConfig(separator=","))
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(b'text,label\r\n"a\r\nb",pos\r\n\r\nbad,row,here\r\n')
    assert "line 5 has 3 fields" in error_of(read_table, crlf, DataConfig(separator=","))
    packed = tmp_path / "bad.csv.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert "line 8 has 3 fields" in error_of(read_table, packed, DataConfig())


def test_a_parser_error_says_record_where_the_line_cannot_be_told(tmp_path: Path) -> None:
    """A .zip is not streamed here: the record pandas counted, never a wrong line."""
    path = tmp_path / "bad.csv.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("bad.csv", 'text,label\n"multi\nline\ntext",pos\n\n\nok,neg\nbad,row,here\n')
    msg = error_of(read_table, path, DataConfig())
    assert "record 6 (blank lines counted) has 3 fields" in msg and "line 6" not in msg


def test_an_extra_field_in_the_first_data_row_names_its_line(tmp_path: Path) -> None:
    """pandas only warns there ("Length of header or names does not match"), naming no line."""
    path = tmp_path / "extra.csv"
    path.write_text("text,label\nhello,pos,extra\nbye,neg\n", encoding="utf-8")
    msg = error_of(read_table, path, DataConfig())
    assert "line 2 has 3 fields where line 1 has 2" in msg
    path.write_text('\ntext,label\n\n"a\nb",pos,x\nok,neg\n', encoding="utf-8")
    assert "line 4 has 3 fields where line 2 has 2" in error_of(read_table, path, DataConfig())


# -- 5. a header naming a column twice ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "options"),
    [
        ("dup.csv", "text,label,text\nhello,pos,other\n", {}),
        ("dup.tsv", "text\tlabel\t text \nhello\tpos\tother\n", {}),
        ("dup.txt", "text;label;text\nhello;pos;other\n", {"separator": ";"}),
    ],
)
def test_a_repeated_header_name_is_refused(tmp_path: Path, name: str, content: str, options: dict) -> None:
    """pandas renamed the second "text" to "text.1", and the first was used with no word."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    msg = error_of(read_table, path, DataConfig(**options))
    assert msg.startswith(f"{path}: column name(s) 'text' appear more than once")


def test_a_repeated_header_name_in_a_sheet_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("openpyxl")
    path = tmp_path / "dup.xlsx"
    pd.DataFrame([["text", "label", "text"], ["hello", "pos", "other"]]).to_excel(
        path, index=False, header=False
    )
    assert "'text' appear more than once" in error_of(read_table, path, DataConfig())


def test_empty_header_cells_and_replaced_headers_are_not_repeats(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("text,label,,\nhello,pos,,\n", encoding="utf-8")
    assert read_table(path, DataConfig())["text"].tolist() == ["hello"]
    path.write_text("x,x\nhello,pos\n", encoding="utf-8")  # the header row data.column_names replaces
    assert read_table(path, DataConfig(column_names=["text", "label"]))["text"].tolist() == ["hello"]


# -- 6. lines ending in \r alone ----------------------------------------------------------------------


@pytest.mark.parametrize(("sep", "name"), [(";", "mac.csv"), ("\t", "mac.txt")])
def test_a_file_with_carriage_return_line_ends_is_sniffed(tmp_path: Path, sep: str, name: str) -> None:
    """Excel for Mac's "CSV (Macintosh)": the sniffer saw one record and kept the usual separator."""
    path = tmp_path / name
    path.write_bytes(f"text{sep}label\rhello, there{sep}pos\rbye{sep}neg\r".encode())
    df = read_table(path, DataConfig())
    assert df["text"].tolist() == ["hello, there", "bye"]
    assert df["label"].tolist() == ["pos", "neg"]
    cfg = options_for_file(path, DataConfig(), {"column_names": ["text", "label"]})
    assert cfg.separator == sep and cfg.header is True


# -- 7. a JSON array numbers its rows by item --------------------------------------------------------


def test_a_json_array_file_says_its_rows_are_item_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text('[\n  {"text": "a", "label": "x"},\n  {"text": "b", "label": ""}\n]\n', encoding="utf-8")
    assert row_convention(path, DataConfig()) == "rows are item numbers of the JSON array"
    msg = error_of(read_extracted, path, DataConfig(), label_kind="one")
    assert "row 2: empty label" in msg and "item numbers" in msg and "line numbers" not in msg
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"text": "a", "label": "x"}\n', encoding="utf-8")
    assert row_convention(lines, DataConfig()) == "rows are line numbers"


# -- 8. label names in NFC and NFD -------------------------------------------------------------------


def _write(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows), encoding="utf-8")
    return str(path)


def test_a_label_in_nfd_in_dev_is_the_training_label_in_nfc(tmp_path: Path) -> None:
    """Both print "café"; the dev row was refused as an unknown label."""
    train = _write(tmp_path / "train.csv", [("good coffee", NFC), ("bad tea", "tea"), ("ok", NFD)])
    dev = _write(tmp_path / "dev.csv", [("nice coffee", NFD), ("green tea", "tea")])
    splits = load_splits(DataConfig(train=train, dev=dev))
    assert splits.labels.names == [NFC, "tea"]  # one label, not two
    assert splits.dev is not None and splits.dev.labels == [0, 1]


def test_a_run_trained_before_keeps_its_nfd_label(tmp_path: Path) -> None:
    """A saved map with an NFD name reads NFC names from data, and its names round-trip as saved."""
    old = LabelMap([NFD, "tea"])
    assert old.encode([NFC, "tea", NFD], source="dev.csv", rows=[1, 2, 3]) == [0, 1, 0]
    assert NFC in old and old.id_of(NFC) == 0
    again = LabelMap.from_dict(old.to_dict())
    assert again.names == [NFD, "tea"] and again == old
    path = tmp_path / "labels.json"
    old.save(path)
    assert LabelMap.load(path).names == [NFD, "tea"]
    # Continuing it (data.labels = its names) with NFC data adds no second "café".
    train = _write(tmp_path / "train.csv", [("coffee", NFC), ("tea", "tea"), ("juice", "juice")])
    splits = load_splits(DataConfig(train=train, dev_size=0, labels=[NFD, "tea"]))
    assert splits.labels.names == [NFD, "tea", "juice"]
    assert splits.train.labels == [0, 1, 2]


def test_texts_in_nfc_and_nfd_are_the_same_for_leakage_and_duplicates(tmp_path: Path) -> None:
    assert normalised(f"A {NFC}", None) == normalised(f"a  {NFD}", None)
    train = _write(
        tmp_path / "train.csv", [(f"at the {NFC}", "a"), (f"at the {NFD}", "a"), ("x", "b"), ("y", "b")]
    )
    dev = _write(tmp_path / "dev.csv", [(f"AT THE {NFD}", "a"), ("z", "b")])
    cfg = DataConfig(train=train, dev=dev)
    summary = summarize(load_splits(cfg), get_task(cfg.task))
    assert summary.duplicates["train"] == 1
    assert summary.shared["train-dev"] == 1
