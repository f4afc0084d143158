"""Data reading and model loading (review): each case read or loaded wrongly, or failed with an
unexpected error, before its fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tunelab.config import DataConfig
from tunelab.data.file_options import options_for_file
from tunelab.data.readers import detect_encoding, read_table
from tunelab.errors import DataError, ModelNotFoundError
from tunelab.models import resolve_model
from tunelab.models.classifier import build_classifier, load_tokenizer


def test_a_tab_separator_given_by_name_with_column_names(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_text("first text\tsports\nsecond text\tfood\n", encoding="utf-8")
    cfg = options_for_file(path, DataConfig(), ["data.separator=tab", "data.column_names=[text,label]"])
    assert read_table(path, cfg)["text"].tolist() == ["first text", "second text"]


def test_a_headerless_sheet_keeps_its_first_row(tmp_path: Path) -> None:
    path = tmp_path / "nohead.xlsx"
    pd.DataFrame([["first text", "a"], ["second text", "b"], ["third text", "a"]]).to_excel(
        path, header=False, index=False
    )
    cfg = options_for_file(path, DataConfig(), ["data.column_names=[text,label]"])
    assert cfg.header is False
    assert read_table(path, cfg)["text"].tolist() == ["first text", "second text", "third text"]
    # A sheet whose first row is those names keeps it as the header.
    with_names = tmp_path / "head.xlsx"
    pd.DataFrame({"text": ["first text"], "label": ["a"]}).to_excel(with_names, index=False)
    assert options_for_file(with_names, DataConfig(), ["data.column_names=[text,label]"]).header is True


def test_windows_1252_text_is_read_as_written(tmp_path: Path) -> None:
    path = tmp_path / "win.csv"
    path.write_bytes("text,label\n“Great” product – 5€,a\nDon’t buy,b\n".encode("cp1252"))
    assert detect_encoding(path) == "cp1252"
    df = read_table(path, DataConfig(encoding="auto"))
    assert df["text"].tolist() == ["“Great” product – 5€", "Don’t buy"]
    with pytest.raises(DataError, match=r"data\.encoding=cp1252"):
        read_table(path, DataConfig())  # utf-8: the hint names what the bytes are
    latin = tmp_path / "latin.csv"  # no byte in 0x80-0x9F: still Latin-1
    latin.write_bytes("text,label\nCafé crème,x\n".encode("latin-1"))
    assert detect_encoding(latin) == "latin-1"


def test_a_utf16_file_read_as_utf8_suggests_utf16(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("text,label\nhello,a\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"data\.encoding=utf-16"):
        read_table(path, DataConfig())


def test_a_model_folder_without_tokenizer_files_is_refused(tiny_bert: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):  # model.save_pretrained alone writes these
        shutil.copy(tiny_bert / name, bare / name)
    with pytest.raises(ModelNotFoundError, match=r"no tokenizer files .*tokenizer\.save_pretrained"):
        load_tokenizer(bare)


@pytest.mark.parametrize("damage", ["truncated", "shapes"])
def test_damaged_or_mismatched_weights_are_one_line(damage: str, tiny_bert: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert, folder)
    if damage == "truncated":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    else:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config["intermediate_size"] += 8
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelNotFoundError, match=r"cannot load encoder weights") as info:
        build_classifier(folder, ["a", "b"], seed=0)
    assert "\n" not in str(info.value)


def test_offline_a_hub_model_in_the_local_cache_is_used(
    monkeypatch: pytest.MonkeyPatch, tiny_bert: Path
) -> None:
    import huggingface_hub

    calls: list[dict] = []

    def cached(**kwargs: object) -> str:
        calls.append(kwargs)
        return str(tiny_bert)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached)
    resolved = resolve_model("someorg/tiny-bert")
    assert resolved.source == "hub" and resolved.path == tiny_bert
    assert calls[0]["local_files_only"] is True


def test_a_local_folder_named_like_an_upstream_id_is_the_users(
    monkeypatch: pytest.MonkeyPatch, tiny_bert: Path, tmp_path: Path
) -> None:
    shutil.copytree(tiny_bert, tmp_path / "multilingual-e5-small")  # as `git clone` of the hub repo
    monkeypatch.chdir(tmp_path)
    resolved = resolve_model("multilingual-e5-small")
    assert resolved.source == "local" and resolved.path == (tmp_path / "multilingual-e5-small").resolve()


def test_a_semicolon_file_keeps_a_quoted_text_with_a_semicolon_and_a_line_break(tmp_path: Path) -> None:
    # Excel in the locales whose CSV separator is ';' writes exactly this; read unquoted, the
    # first record became two rows, one of them labelled " world".
    path = tmp_path / "semi.csv"
    body = 'text;label\n"Hello; world\nsecond line";positive\nplain text;negative\n'
    path.write_text(body, encoding="utf-8")
    df = read_table(path, DataConfig())
    assert df["text"].tolist() == ["Hello; world\nsecond line", "plain text"]
    assert df["label"].tolist() == ["positive", "negative"]
    other = tmp_path / "semi2.csv"  # with the separator given: it was a parse error
    other.write_text('text;label\n"Line one\nline two; more";positive\nx;negative\n', encoding="utf-8")
    assert read_table(other, DataConfig(separator=";"))["label"].tolist() == ["positive", "negative"]
