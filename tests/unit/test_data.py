"""tunelab.data: formats, columns, labels, splits, and the real shared datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tunelab.config import DataConfig
from tunelab.data import Dataset, LabelMap, Splits, load_labelled, load_splits, read_table, read_texts

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def two_class_csv(path: Path, per_class: int = 10) -> Path:
    rows = [f"text {label} {i},{label}" for label in ("pos", "neg") for i in range(per_class)]
    return write(path, "text,label\n" + "\n".join(rows) + "\n")


# -- formats --------------------------------------------------------------------------------------


def test_csv_keeps_labels_as_strings_and_strips(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", 'text,label\n"  hello,\n world ",0\nbye,1\n')
    s = load_splits(DataConfig(train=str(f), dev_size=0))
    assert s.train.texts == ["hello,\n world", "bye"]
    assert s.labels.names == ["0", "1"]
    assert s.train.labels == [0, 1]
    assert s.dev is None and s.test is None
    assert isinstance(s, Splits) and isinstance(s.train, Dataset) and len(s.train) == 2


def test_tsv_by_extension(tmp_path: Path) -> None:
    f = write(tmp_path / "t.tsv", "sentence\tlabel\na, b\t1\nc\t0\n")
    s = load_splits(DataConfig(train=str(f), text_column="sentence", dev_size=0))
    assert s.train.texts == ["a, b", "c"]
    assert s.train.labels == [1, 0]


def test_jsonl_and_json_array(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": 0, "extra": None}]
    jl = write(tmp_path / "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    arr = write(tmp_path / "t.json", json.dumps(rows))
    for f in (jl, arr):
        s = load_splits(DataConfig(train=str(f), dev_size=0))
        assert s.train.texts == ["a", "b"]
        assert s.labels.names == ["0", "1"]
        assert s.train.labels == [1, 0]


def test_parquet(tmp_path: Path) -> None:
    f = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["a", "b", "c"], "label": [2, 0, 2]}).to_parquet(f)
    s = load_splits(DataConfig(train=str(f), dev_size=0))
    assert s.labels.names == ["0", "2"]
    assert s.train.labels == [1, 0, 1]


def phrasebank_config(path: Path) -> DataConfig:
    """Financial PhraseBank's own format: Latin-1, no header, ``sentence@label``."""
    return DataConfig(
        train=str(path),
        separator="@",
        encoding="latin-1",
        header=False,
        column_names=["sentence", "label"],
        text_column="sentence",
        dev_size=0,
    )


def test_custom_separator_latin1_no_header_keeps_quotes(tmp_path: Path) -> None:
    body = 'Caf\xe9 "sales" rose .@positive\r\n"Profit fell@negative\r\nIt\'s flat .@neutral\r\n'
    f = write(tmp_path / "fpb.txt", body, "latin-1")
    cfg = phrasebank_config(f)
    s = load_splits(cfg)
    assert s.train.texts == ['Café "sales" rose .', '"Profit fell', "It's flat ."]
    assert s.labels.names == ["negative", "neutral", "positive"]


def test_format_setting_overrides_extension(tmp_path: Path) -> None:
    f = write(tmp_path / "data.dat", "text\tlabel\nx\ty\n")
    df = read_table(f, DataConfig(format="tsv"))
    assert list(df.columns) == ["text", "label"]
    assert df.index.tolist() == [1]  # 1-based data row numbers


def test_text_pairs(tmp_path: Path) -> None:
    f = write(tmp_path / "p.csv", "premise,hypothesis,label\na,b,yes\nc,d,no\n")
    cfg = DataConfig(train=str(f), text_column="premise", text_pair_column="hypothesis", dev_size=0)
    s = load_splits(cfg)
    assert s.train.texts == ["a", "c"]
    assert s.train.text_pairs == ["b", "d"]
    assert s.train.labels == [1, 0]


# -- multi-label ----------------------------------------------------------------------------------


def test_multi_label_delimited(tmp_path: Path) -> None:
    f = write(tmp_path / "m.csv", "text,label\na,refund|billing\nb,\nc, billing | billing \n")
    s = load_splits(DataConfig(train=str(f), task="multi_label", dev_size=0))
    assert s.labels.names == ["billing", "refund"]
    assert s.labels.task == "multi_label"
    assert s.train.labels == [[0, 1], [], [0]]


def test_multi_label_lists_in_jsonl(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": []}, {"text": "c", "label": ["y"]}]
    f = write(tmp_path / "m.jsonl", "\n".join(json.dumps(r) for r in rows))
    s = load_splits(DataConfig(train=str(f), task="multi_label", dev_size=0))
    assert s.train.labels == [[0, 1], [], [1]]


def test_multi_label_cells_written_as_lists_are_read_as_lists(tmp_path: Path) -> None:
    """pandas' to_csv writes a list column as "['a', 'b']": each distinct list text became one label."""
    import pandas as pd

    f = tmp_path / "m.csv"
    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [["x", "y"], ["x"], [], ["[urgent]"]]}).to_csv(
        f, index=False
    )
    s = load_splits(DataConfig(train=str(f), task="multi_label", dev_size=0))
    assert s.labels.names == ["[urgent]", "x", "y"]
    assert s.train.labels == [[1, 2], [1], [], [0]]
    g = write(tmp_path / "n.csv", 'text,label\na,"[""x"", ""y""]"\nb,[urgent]|x\n')
    t = load_splits(DataConfig(train=str(g), task="multi_label", dev_size=0))
    assert [[t.labels.names[i] for i in row] for row in t.train.labels] == [["x", "y"], ["[urgent]", "x"]]


def test_multi_label_split_is_random_and_noted(tmp_path: Path) -> None:
    rows = "\n".join(f"t{i},{'a|b' if i % 2 else 'a'}" for i in range(20))
    f = write(tmp_path / "m.csv", "text,label\n" + rows + "\n")
    s = load_splits(DataConfig(train=str(f), task="multi_label", dev_size=0.25))
    assert s.dev is not None and len(s.dev) == 5 and len(s.train) == 15
    assert any("random split" in n and "cannot be stratified" in n for n in s.notes)


# -- splits ---------------------------------------------------------------------------------------


def test_stratified_split_has_both_classes_and_is_deterministic(tmp_path: Path) -> None:
    f = two_class_csv(tmp_path / "t.csv", per_class=10)
    cfg = DataConfig(train=str(f), dev_size=0.2, split_seed=7)
    a, b = load_splits(cfg), load_splits(cfg)
    assert a.dev is not None and len(a.dev) == 4 and len(a.train) == 16
    assert sorted(a.dev.labels) == [0, 0, 1, 1]  # type: ignore[arg-type]
    assert a.dev.texts == b.dev.texts  # type: ignore[union-attr]
    assert set(a.dev.texts).isdisjoint(a.train.texts)
    assert a.dev.source == f"{f} (dev split)"
    assert any(n == f"dev: 20% stratified split of {f} (seed 7): 4 rows" for n in a.notes)
    other = load_splits(DataConfig(train=str(f), dev_size=0.2, split_seed=8))
    assert other.dev.texts != a.dev.texts  # type: ignore[union-attr]


def test_dev_and_test_carved_from_train(tmp_path: Path) -> None:
    f = two_class_csv(tmp_path / "t.csv", per_class=10)
    s = load_splits(DataConfig(train=str(f), dev_size=0.2, test_size=0.2))
    assert s.dev is not None and s.test is not None
    assert (len(s.train), len(s.dev), len(s.test)) == (12, 4, 4)
    assert set(s.dev.texts).isdisjoint(s.test.texts)


def test_dev_and_test_files(tmp_path: Path) -> None:
    train = two_class_csv(tmp_path / "train.csv")
    dev = write(tmp_path / "dev.csv", "text,label\nd1,neg\n\t,pos\n")
    test = write(tmp_path / "test.csv", "text,label\nt1,pos\n")
    s = load_splits(DataConfig(train=str(train), dev=str(dev), test=str(test)))
    assert s.dev is not None and s.dev.labels == [0] and s.dev.source == str(dev)
    assert s.test is not None and s.test.labels == [1]
    assert len(s.train) == 20
    assert f"{dev}: dropped 1 row with empty text (first: row 2)" in s.notes


def test_empty_text_drop_is_noted(tmp_path: Path) -> None:
    f = write(tmp_path / "t.csv", "text,label\na,x\n  ,y\n,x\nb,y\n")
    s = load_splits(DataConfig(train=str(f), dev_size=0))
    assert s.train.texts == ["a", "b"]
    assert f"{f}: dropped 2 rows with empty text (first: row 2)" in s.notes


# -- labels ---------------------------------------------------------------------------------------


def test_label_map_roundtrip(tmp_path: Path) -> None:
    m = LabelMap.from_names(["b", "a", "b"], "multi_label")
    assert m.names == ["a", "b"] and m.id_of("b") == 1 and len(m) == 2
    path = m.save(tmp_path / "run" / "labels.json")
    assert json.loads(path.read_text()) == {"task": "multi_label", "labels": ["a", "b"]}
    assert LabelMap.load(path) == m
    assert LabelMap.from_dict(m.to_dict()) == m


def test_load_labelled_uses_run_label_map(tmp_path: Path) -> None:
    f = write(tmp_path / "eval.csv", "body,cat\nx,b\ny,a\n")
    ds = load_labelled(f, DataConfig(text_column="body", label_column="cat"), LabelMap(["a", "b"]))
    assert ds.labels == [1, 0] and ds.texts == ["x", "y"] and ds.source == str(f)


# -- predict input --------------------------------------------------------------------------------


def test_read_texts_falls_back_to_text_column(tmp_path: Path) -> None:
    f = write(
        tmp_path / "in.jsonl", '{"id": 7, "text": "hi"}\n{"id": 8, "text": " "}\n{"id": 9, "text": "yo"}\n'
    )
    texts, pairs, frame = read_texts(f, DataConfig(text_column="sentence"))
    assert texts == ["hi", "yo"] and pairs is None
    assert frame["id"].tolist() == ["7", "9"] and frame.index.tolist() == [1, 3]


def test_read_texts_prefers_configured_column(tmp_path: Path) -> None:
    f = write(tmp_path / "in.csv", "text,sentence\nwrong,right\n")
    texts, _, _ = read_texts(f, DataConfig(text_column="sentence"))
    assert texts == ["right"]


# -- real data ------------------------------------------------------------------------------------

needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared datasets not found at {SHARED_DATA}"
)


@needs_shared
def test_financial_phrasebank_as_is() -> None:
    path = SHARED_DATA / "financial_phrasebank" / "FinancialPhraseBank-v1.0" / "Sentences_50Agree.txt"
    cfg = phrasebank_config(path)
    s = load_splits(cfg)
    assert len(s.train) == 4846
    assert s.labels.names == ["negative", "neutral", "positive"]


@needs_shared
def test_banking77_train() -> None:
    s = load_splits(DataConfig(train=str(SHARED_DATA / "banking77" / "train.csv"), label_column="category"))
    assert s.dev is not None and len(s.train) + len(s.dev) == 10003
    assert len(s.labels) == 77
    assert all(t == t.strip() and t for t in s.train.texts + s.dev.texts)
