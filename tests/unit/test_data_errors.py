"""tunelab.data: every user mistake is one DataError line naming the file, the place and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.config import DataConfig
from tunelab.data import LabelMap, load_labelled, load_splits, read_table, read_texts
from tunelab.errors import DataError


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def error_of(fn, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message, "messages are one line"
    return message


def test_missing_train_file_names_field_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    msg = error_of(load_splits, DataConfig(train=str(missing)))
    assert "data.train" in msg and str(missing) in msg and "not found" in msg


def test_missing_dev_file_names_field(tmp_path: Path) -> None:
    train = write(tmp_path / "t.csv", "text,label\na,x\nb,y\n")
    msg = error_of(load_splits, DataConfig(train=str(train), dev=str(tmp_path / "dev.csv")))
    assert msg.startswith("data.dev: ") and "dev.csv" in msg


def test_missing_eval_file_names_path(tmp_path: Path) -> None:
    msg = error_of(load_labelled, tmp_path / "eval.csv", DataConfig(), LabelMap(["a", "b"]))
    assert str(tmp_path / "eval.csv") in msg and "not found" in msg


def test_train_not_set() -> None:
    assert "data.train" in error_of(load_splits, DataConfig())


def test_missing_column_lists_columns_and_field(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "text,category\na,x\n")
    msg = error_of(load_splits, DataConfig(train=str(f)))
    assert "'label'" in msg and "'text', 'category'" in msg and "data.label_column" in msg


def test_missing_column_hints_at_headerless_file(tmp_path: Path) -> None:
    f = write(tmp_path / "t.txt", "good day@positive\nbad day@negative\n")
    msg = error_of(load_splits, DataConfig(train=str(f), separator="@"))
    assert "data.text_column" in msg and "data.header: false" in msg


def test_predict_input_without_text_column(tmp_path: Path) -> None:
    f = write(tmp_path / "in.csv", "id,body\n1,x\n")
    msg = error_of(read_texts, f, DataConfig(text_column="sentence"))
    assert "'sentence'" in msg and "'text'" in msg and "'id', 'body'" in msg


@pytest.mark.parametrize("content", ["text,label\n", ""], ids=["header-only", "zero-byte"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    f = write(tmp_path / "t.csv", content)
    msg = error_of(load_splits, DataConfig(train=str(f)))
    assert str(f) in msg and "empty" in msg


def test_empty_jsonl(tmp_path: Path) -> None:
    assert "empty" in error_of(read_table, write(tmp_path / "t.jsonl", "\n\n"), DataConfig())


def test_all_rows_dropped(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "text,label\n,x\n  ,y\n")
    msg = error_of(load_splits, DataConfig(train=str(f)))
    assert "every row has empty text" in msg and "data.text_column" in msg


def test_empty_text_error_policy(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "text,label\na,x\n,y\nb,x\n ,y\n")
    msg = error_of(load_splits, DataConfig(train=str(f), empty_text="error"))
    assert f"{f} row 2: empty text (2 rows in all)" in msg and "data.empty_text: drop" in msg


def test_unseen_dev_label(tmp_path: Path) -> None:
    train = write(tmp_path / "train.csv", "text,label\na,x\nb,y\n")
    dev = write(tmp_path / "dev.csv", "text,label\nc,x\nd,zzz\n")
    msg = error_of(load_splits, DataConfig(train=str(train), dev=str(dev)))
    assert f"{dev} row 2: label 'zzz'" in msg and "known: x, y" in msg


def test_unseen_eval_label(tmp_path: Path) -> None:
    f = write(tmp_path / "eval.csv", "text,label\nc,q\n")
    msg = error_of(load_labelled, f, DataConfig(), LabelMap(["a", "b"]))
    assert "row 1" in msg and "'q'" in msg and "known: a, b" in msg


def test_class_too_small_to_stratify(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "text,label\n" + "".join(f"t{i},big\n" for i in range(9)) + "lone,tiny\n")
    msg = error_of(load_splits, DataConfig(train=str(f), dev_size=0.2))
    assert "'tiny'" in msg and "only 1 row" in msg
    assert "add rows" in msg and "data.dev" in msg and "data.dev_size=0" in msg


def test_dev_split_smaller_than_label_count(tmp_path: Path) -> None:
    rows = "".join(f"t{i},{c}\n" for c in "abcde" for i in range(2))
    f = write(tmp_path / "t.csv", "text,label\n" + rows)
    msg = error_of(load_splits, DataConfig(train=str(f), dev_size=0.1))
    assert "fewer than the 5 labels" in msg and "data.dev_size" in msg


def test_wrong_encoding(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", b"text,label\n" + "Caf\xe9,x\n".encode("latin-1"))
    msg = error_of(load_splits, DataConfig(train=str(f)))
    assert f"{f}: not valid utf-8 (byte 0xe9 at offset 14)" in msg and "data.encoding" in msg
    assert "latin-1" in msg


def test_wrong_encoding_jsonl(tmp_path: Path) -> None:
    f = write(tmp_path / "t.jsonl", '{"text": "Caf\xe9"}\n'.encode("latin-1"))
    assert "byte 0xe9 at offset 13" in error_of(read_table, f, DataConfig())


def test_unknown_encoding(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "text,label\na,b\n")
    assert "data.encoding='klingon'" in error_of(read_table, f, DataConfig(encoding="klingon"))


def test_empty_label_single_label(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "text,label\na,x\nb, \nc,y\n")
    msg = error_of(load_splits, DataConfig(train=str(f)))
    assert f"{f} row 2: empty label in column 'label'" in msg


def test_list_label_for_single_label_task(tmp_path: Path) -> None:
    f = write(tmp_path / "t.jsonl", '{"text": "a", "label": ["x", "y"]}\n')
    assert "data.task: multi_label" in error_of(load_splits, DataConfig(train=str(f)))


def test_single_class_train(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "text,label\na,x\nb,x\n")
    assert "only one label" in error_of(load_splits, DataConfig(train=str(f), dev_size=0))


def test_malformed_csv(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "text,label\na,x\nb,y,extra\n")
    msg = error_of(load_splits, DataConfig(train=str(f)))
    assert str(f) in msg and "not readable as CSV" in msg and "data.separator" in msg


def test_bad_json_line(tmp_path: Path) -> None:
    f = write(tmp_path / "t.jsonl", '{"text": "a", "label": "x"}\n{"text": oops}\n')
    msg = error_of(load_splits, DataConfig(train=str(f)))
    assert f"{f} line 2: not valid JSON" in msg and "one JSON object per line" in msg


def test_json_line_not_an_object(tmp_path: Path) -> None:
    f = write(tmp_path / "t.jsonl", '["a", "x"]\n["b", "y"]\n')
    assert "line 1: expected a JSON object" in error_of(read_table, f, DataConfig())


def test_not_parquet(tmp_path: Path) -> None:
    f = write(tmp_path / "t.parquet", "text,label\na,x\n")
    msg = error_of(read_table, f, DataConfig())
    assert str(f) in msg and "Parquet" in msg and "data.format" in msg


def test_unknown_extension(tmp_path: Path) -> None:
    f = write(tmp_path / "t.dat", "text,label\na,x\n")
    assert "data.format" in error_of(read_table, f, DataConfig())


def test_label_file_missing_or_damaged(tmp_path: Path) -> None:
    assert "not found" in error_of(LabelMap.load, tmp_path / "labels.json")
    bad = write(tmp_path / "bad.json", '{"task": "single_label"}')
    assert str(bad) in error_of(LabelMap.load, bad)
