"""Chinese text is read intact: UTF-8 (with or without a BOM), GB18030, ``data.encoding=auto``,
and the one-line error when a UTF-8 default meets GB18030 bytes."""

from __future__ import annotations

import codecs
import json
import logging
from pathlib import Path

import pytest

from tunelab.config import DataConfig
from tunelab.data import read_table
from tunelab.data.file_options import options_for_file
from tunelab.errors import DataError

ROWS = [
    ("这家酒店的服务质量很差，差评！", "负面"),
    ("房間乾淨，早餐很好吃", "正面"),
    ("书的内容一般", "中性"),
]


def csv_text(sep: str = ",") -> str:
    return f"text{sep}label\n" + "".join(f"{t}{sep}{label}\n" for t, label in ROWS)


def jsonl_text() -> str:
    return "".join(json.dumps({"text": t, "label": label}, ensure_ascii=False) + "\n" for t, label in ROWS)


def rows_of(path: Path, cfg: DataConfig) -> list[tuple[str, str]]:
    df = read_table(path, cfg)
    return list(zip(df["text"], df["label"], strict=True))


@pytest.mark.parametrize(
    ("name", "content"), [("d.csv", csv_text()), ("d.tsv", csv_text("\t")), ("d.jsonl", jsonl_text())]
)
def test_gb18030_reads_intact_when_configured(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode("gb18030"))
    assert rows_of(path, DataConfig(encoding="gb18030")) == ROWS


@pytest.mark.parametrize(("name", "content"), [("d.csv", csv_text()), ("d.jsonl", jsonl_text())])
def test_utf8_with_bom_reads_intact(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_bytes(codecs.BOM_UTF8 + content.encode("utf-8"))
    df = read_table(path, DataConfig())
    assert list(df.columns) == ["text", "label"]  # no "\ufefftext" column
    assert rows_of(path, DataConfig()) == ROWS


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl"])
def test_utf8_default_on_gb18030_bytes_names_file_line_and_fix(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    content = jsonl_text() if name.endswith("jsonl") else csv_text("\t" if name.endswith("tsv") else ",")
    path.write_bytes(content.encode("gb18030"))
    with pytest.raises(DataError) as info:
        read_table(path, DataConfig())
    message = str(info.value)
    assert "\n" not in message
    first_line = 1 if name.endswith("jsonl") else 2  # the header line is ASCII
    assert message.startswith(f"{path}: not valid utf-8 (byte 0x")
    assert f") on line {first_line};" in message
    assert "data.encoding=gb18030" in message


def test_latin1_bytes_still_suggest_latin1(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("text,label\nCafé crème,x\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        read_table(path, DataConfig())
    assert "on line 2" in str(info.value) and "data.encoding=latin-1" in str(info.value)
    assert "gb18030" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (csv_text().encode("utf-8"), "utf-8"),
        (csv_text().encode("gb18030"), "gb18030"),
        ("text,label\nCafé crème à la tête,x\nNaïve résumé,y\n".encode("latin-1"), "latin-1"),
        # "ül" decodes as one GBK character: alone between ASCII letters, so not Chinese
        ("text,label\nProfit rose says CEO Müller,x\n".encode("latin-1"), "latin-1"),
        # traditional Chinese is outside GB2312 but comes in runs
        ("text,label\n這間酒店環境和服務態度亦算不錯,x\n".encode("gb18030"), "gb18030"),
    ],
)
def test_auto_encoding_tries_utf8_then_gb18030_and_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, data: bytes, expected: str
) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(data)
    with caplog.at_level(logging.INFO, logger="tunelab.data.readers"):
        df = read_table(path, DataConfig(encoding="auto"))
    assert f"read as {expected}" in caplog.text
    assert df["text"].tolist() == [line.split(",")[0] for line in data.decode(expected).splitlines()[1:]]


def test_auto_keeps_valid_utf8_identical_to_the_default(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(codecs.BOM_UTF8 + csv_text().encode("utf-8"))
    assert read_table(path, DataConfig(encoding="auto")).equals(read_table(path, DataConfig()))


def test_a_file_given_to_predict_is_detected_as_gb18030(tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_bytes(csv_text().encode("gb18030"))
    cfg = options_for_file(path, DataConfig())
    assert cfg.encoding == "gb18030"
    assert rows_of(path, cfg) == ROWS


def test_unquoted_tsv_whose_text_starts_with_a_quote_keeps_every_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ChnSentiCorp's train.tsv: a review opening with '"' swallowed 454 rows when read quoted."""
    texts = ['"此期间预订，入住首日赠送洗衣券。 “ 我入住的时候', "房间很干净", "早餐一般", '他说"还行"吧']
    path = tmp_path / "train.tsv"
    path.write_text(
        "label\ttext_a\n" + "".join(f"{i % 2}\t{t}\n" for i, t in enumerate(texts)), encoding="utf-8"
    )
    with caplog.at_level(logging.WARNING, logger="tunelab.data.readers"):
        df = read_table(path, DataConfig())
    assert df["text_a"].tolist() == texts
    assert df["label"].tolist() == ["0", "1", "0", "1"]
    assert "without quoting" in caplog.text


def test_quoted_tsv_fields_are_still_unquoted(tmp_path: Path) -> None:
    path = tmp_path / "excel.tsv"
    path.write_text('text\tlabel\n"第一行\n第二行"\ta\n"带""引号"\tb\n', encoding="utf-8")
    df = read_table(path, DataConfig())
    assert df["text"].tolist() == ["第一行\n第二行", '带"引号']


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_auto_encoding_looks_inside_compressed_files(tmp_path: Path, suffix: str) -> None:
    """The packed bytes are not text: detection must read what pandas will decode."""
    import pandas as pd

    from tunelab.config import DataConfig
    from tunelab.data.readers import read_table

    path = tmp_path / f"t.csv{suffix}"
    pd.DataFrame({"text": ["北京欢迎你 café", "第二行"], "label": ["a", "b"]}).to_csv(
        path, index=False, encoding="gb18030"
    )
    df = read_table(path, DataConfig(encoding="auto"))
    assert list(df["text"]) == ["北京欢迎你 café", "第二行"]


def test_a_utf8_chinese_file_with_one_bad_byte_is_named_not_read_as_latin1(tmp_path) -> None:
    """One invalid byte sent the whole file to the Latin-1 fallback: each Chinese character became
    three others, noted at info level only (eval printed metrics without a word)."""
    import pytest

    from tunelab.errors import DataError
    from tunelab.tasks.token_classification.reading import read_conll

    lines = [f"{c} O" for c in "我们今天去北京玩了。他们也去上海了。好的吗"] + ["Caf\xe9 O"]
    path = tmp_path / "mixed.conll"
    path.write_bytes("\n".join(lines[:-1]).encode("utf-8") + b"\n" + lines[-1].encode("latin-1") + b"\n")
    with pytest.raises(
        DataError,
        match=r"mixed\.conll: not valid utf-8 \(byte 0xe9 .*\) on line 22, though the rest is UTF-8",
    ):
        read_conll(path, encoding="auto")
    # a Latin-1 file (accents, no UTF-8 sequences) is still read as Latin-1
    latin = tmp_path / "latin.conll"
    latin.write_bytes("Müller B-PER\nsagt O\nCafé O\n".encode("latin-1"))
    assert [s.tokens for s in read_conll(latin, encoding="auto")] == [["Müller", "sagt", "Café"]]


def test_validate_counts_a_chinese_ner_sentences_tokens_as_the_encoder_does(tmp_path: Path) -> None:
    """The summary tokenized the sentence as one text, the encoder word by word: with e5's
    SentencePiece each Chinese character is a word with its own start piece, so a 100-character
    sentence was "59 tokens, none long" at max_length 128, and the encoder made 192 in 2 windows."""
    pytest.importorskip("semantra_multilingual", reason="e5-small-multilingual's tokenizer package")
    from transformers import AutoTokenizer, BertConfig

    from tunelab.data.summary import summarize
    from tunelab.models import e5_multilingual
    from tunelab.tasks import get_task

    _, tokenizer_json, _ = e5_multilingual._sources()
    BertConfig(vocab_size=250_037, max_position_embeddings=514).save_pretrained(str(tmp_path))
    e5_multilingual._write_tokenizer(tokenizer_json, tmp_path, 512)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    text = "我们今天去北京玩了" * 11 + "。"  # 100 characters
    path = tmp_path / "train.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"text": text, "spans": [{"start": 5, "end": 7, "label": "LOC"}]}) for _ in range(4)
        ),
        encoding="utf-8",
    )
    task = get_task("token_classification")
    splits = task.load_splits(DataConfig(train=str(path), task="token_classification", dev_size=0.25))
    summary = summarize(splits, task, tokenizer=tokenizer, max_length=128)
    encoded = task.encode(tokenizer, splits.train, max_length=512)
    assert summary.longest["train"] == max(encoded.text_tokens) > 128
    assert summary.long["train"] == len(splits.train.sentences)
