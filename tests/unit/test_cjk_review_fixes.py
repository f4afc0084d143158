"""Review fixes for East Asian files: Big5, EUC-KR, Shift-JIS and EUC-JP told apart from GB18030 by
``data.encoding=auto`` and the encoding hint; BOM-less UTF-16; a TSV text that starts with a quoted
phrase keeps its quotes; plot labels in a script no font has are named; a label file written with a
full-width colon says so."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunelab.config import DataConfig
from tunelab.data.file_options import options_for_file
from tunelab.data.readers import detect_encoding, read_table
from tunelab.errors import ConfigError, DataError
from tunelab.evaluate import plots
from tunelab.zeroshot.labels import read_label_descriptions

KOREAN = [
    "이 호텔은 서비스가 정말 좋았어요",
    "방이 너무 작고 시끄러웠습니다",
    "음식이 맛있어요",
    "직원들이 친절하고 위치도 좋아요",
]
JAPANESE = ["このホテルはサービスがとても良かった", "部屋が狭くてうるさかった", "料理がおいしい"]
TRADITIONAL = ["這家酒店環境和服務態度亦算不錯", "房間空間太小，床也不舒服", "早餐一般，價格偏高"]
LEGACY = [("euc_kr", KOREAN), ("shift_jis", JAPANESE), ("euc_jp", JAPANESE), ("big5", TRADITIONAL)]


def write_csv(path: Path, texts: list[str], encoding: str) -> Path:
    path.write_bytes(
        ("text,label\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(texts))).encode(encoding)
    )
    return path


# --- 1: Big5, EUC-KR, Shift-JIS and EUC-JP are not read as GB18030 ---------------------------------


@pytest.mark.parametrize(("encoding", "texts"), LEGACY)
def test_auto_reads_each_east_asian_encoding_as_itself_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, encoding: str, texts: list[str]
) -> None:
    """Each decodes as GB18030 too: read so, the texts were Chinese-looking garbage, logged at info."""
    path = write_csv(tmp_path / "d.csv", texts, encoding)
    with caplog.at_level(logging.WARNING, logger="tunelab.data.readers"):
        df = read_table(path, DataConfig(encoding="auto"))
    assert df["text"].tolist() == texts
    assert any(
        r.levelno == logging.WARNING and f"read as {encoding}" in r.getMessage() for r in caplog.records
    )
    assert options_for_file(path, DataConfig()).encoding == encoding  # predict --input files too


@pytest.mark.parametrize(
    "text",
    [
        "北京好",  # Hangul throughout in EUC-KR
        "感覺不太",  # traditional characters in GBK: valid Big5 with a low second byte
        "4999买的 机器和价格都不错 " * 3,  # ten distinct characters, all Hangul in EUC-KR
        "这家酒店的服务质量很差，差评！房间太小。其他的都一般。",
    ],
)
def test_gbk_chinese_short_or_long_still_reads_as_gb18030(tmp_path: Path, text: str) -> None:
    path = write_csv(tmp_path / "d.csv", [text], "gbk")
    assert detect_encoding(path) == "gb18030"
    assert read_table(path, DataConfig(encoding="auto"))["text"].tolist() == [text]


def test_auto_gb18030_choice_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_csv(tmp_path / "d.csv", ["这家酒店的服务质量很差", "书的内容一般"], "gb18030")
    with caplog.at_level(logging.WARNING, logger="tunelab.data.readers"):
        read_table(path, DataConfig(encoding="auto"))
    assert "read as gb18030" in caplog.text


def test_auto_refuses_bytes_that_read_as_two_scripts(tmp_path: Path) -> None:
    """Six Big5 characters that are plausible hanzi in GB18030 too: no guess, the choice named."""
    path = write_csv(tmp_path / "d.csv", ["這間酒店環境"], "big5")
    with pytest.raises(DataError) as info:
        detect_encoding(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    assert "data.encoding=gb18030 or big5" in message


@pytest.mark.parametrize(("encoding", "texts"), LEGACY)
def test_utf8_error_hint_names_the_east_asian_encoding(
    tmp_path: Path, encoding: str, texts: list[str]
) -> None:
    path = write_csv(tmp_path / "d.csv", texts, encoding)
    with pytest.raises(DataError) as info:
        read_table(path, DataConfig())
    assert f"data.encoding={encoding} " in str(info.value)
    assert "gb18030" not in str(info.value)


# --- 5: UTF-16 without a byte-order mark -------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("texts", [["房间太小，很吵", "服务很好"], ["plain ascii", "second row"]])
def test_auto_reads_utf16_without_bom(tmp_path: Path, encoding: str, texts: list[str]) -> None:
    """Chinese UTF-16 was read as Latin-1 garbage; ASCII UTF-16 as UTF-8 with NULs in every name."""
    path = write_csv(tmp_path / "d.csv", texts, encoding)
    df = read_table(path, DataConfig(encoding="auto"))
    assert list(df.columns) == ["text", "label"]
    assert df["text"].tolist() == texts


def test_utf8_error_hint_names_utf16_without_bom(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", ["房间太小，很吵", "服务很好"], "utf-16-le")
    with pytest.raises(DataError) as info:
        read_table(path, DataConfig())
    assert "data.encoding=utf-16-le" in str(info.value) and "latin-1" not in str(info.value)


# --- 2: a TSV text that starts with a quoted phrase ---------------------------------------------------


def test_tsv_text_starting_with_a_quoted_phrase_keeps_its_quotes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real ChnSentiCorp row: read quoted, pandas dropped the quotes and the text changed."""
    path = tmp_path / "dev.tsv"
    path.write_text('label\ttext_a\n1\t"PC卡插槽"为什么我找不到\n0\t很好\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tunelab.data.readers"):
        df = read_table(path, DataConfig())
    assert df["text_a"].tolist() == ['"PC卡插槽"为什么我找不到', "很好"]
    assert "without quoting" in caplog.text


def test_tsv_that_quotes_whole_fields_keeps_its_quoting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "excel.tsv"
    path.write_text('text\tlabel\n"有\t制表符"\ta\n"带""引号"\tb\n"PC卡"\tc\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tunelab.data.readers"):
        df = read_table(path, DataConfig())
    assert df["text"].tolist() == ["有\t制表符", '带"引号', "PC卡"]
    assert "without quoting" not in caplog.text


# --- 6: plot labels in a script the fonts lack ---------------------------------------------------------


@pytest.fixture
def fresh_fonts() -> Iterator[None]:
    def clear() -> None:
        plots.font_families.cache_clear()
        plots._warn_no_cjk_font.cache_clear()
        covered = getattr(plots, "_covered", None)
        if covered is not None:
            covered.cache_clear()

    clear()
    yield
    clear()


def test_korean_labels_warn_once_naming_korean_and_the_font(
    fresh_fonts: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Noto Sans SC has no Hangul: Korean labels drew as boxes and nothing was said."""
    assert len(plots.font_families()) == 2, "the CJK font package (pylopdf-fonts-zh-cn) is a dependency"
    labels = ["긍정", "부정", "正面"]
    with caplog.at_level(logging.WARNING, logger="tunelab.evaluate.plots"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matplotlib's own "Glyph ... missing", one per character
        plots.confusion_matrix_png([[3, 1, 0], [0, 2, 1], [1, 0, 4]], labels)
        plots.per_class_f1_png([{"label": n, "f1": 0.5} for n in labels], 0.5)
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "Korean" in notes[0] and "fonts-noto-cjk" in notes[0] and "pylopdf" not in notes[0]


def test_chinese_and_latin_labels_draw_without_a_warning(
    fresh_fonts: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tunelab.evaluate.plots"):
        plots.confusion_matrix_png([[3, 1], [0, 2]], ["正面（好评）", "négatif…"])
    assert caplog.records == []


# --- 7: a label file written with a full-width colon ---------------------------------------------------


@pytest.mark.parametrize(
    ("content", "line"), [("正面：好评\n负面：差评\n", 1), ("正面: 好评\n负面：差评\n", 2)]
)
def test_label_file_with_a_full_width_colon_names_the_line(tmp_path: Path, content: str, line: int) -> None:
    path = tmp_path / "labels.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_label_descriptions(path)
    message = str(info.value)
    assert message.startswith(f"{path} line {line} uses a full-width colon '：'")
    assert "with an ASCII colon" in message and "\n" not in message
