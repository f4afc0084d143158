"""Chinese text and Chinese label names stay intact end to end: reading (UTF-8 and GB18030),
tokenising, training, the report and its plots, ``Predictor.predict``, ``tunelab predict --input``
(UTF-8 JSONL, not ``\\u`` escapes) and the HTTP API.

The model is a tiny random BERT with e5-small-multilingual's SentencePiece tokenizer: the bundled
MiniLM's uncased WordPiece maps most Chinese characters to ``[UNK]``, so it could not learn these
classes at all. Each class has its own words, so the tiny model learns them in a few seconds.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

import tunelab
from tunelab.cli.main import main
from tunelab.config import DataConfig
from tunelab.data import read_table
from tunelab.evaluate import plots
from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.settings import ServeSettings

pytestmark = pytest.mark.plots  # its module run's report draws Chinese label names (tests/conftest.py)

pytest.importorskip("semantra_multilingual", reason="e5-small-multilingual's tokenizer package")

# Label names in Chinese (one traditional), with words of their own, mixed simplified/traditional text.
CLASS_WORDS = {
    "好评": ["干净", "舒适", "热情", "推荐", "满意", "超值", "漂亮", "很棒"],
    "差评": ["太差", "失望", "脏乱", "退货", "垃圾", "恶劣", "投诉", "后悔"],
    "物流問題": ["快递", "物流", "送货", "包裹", "延迟", "丢件", "配送", "签收"],
}
FILLER = ["这次", "酒店", "房間", "书", "真的", "有点", "我们", "总的来说", "，", "！", "😊", "ＯＫ"]


def make_rows(per_class: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, words in CLASS_WORDS.items():
        for _ in range(per_class):
            parts = rng.sample(words, 3) + rng.sample(FILLER, 3)
            rng.shuffle(parts)
            rows.append({"text": "".join(parts), "label": label})
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[dict[str, str]], encoding: str = "utf-8") -> Path:
    path.write_bytes(pd.DataFrame(rows).to_csv(index=False).encode(encoding))
    return path


@pytest.fixture(scope="module")
def tiny_multilingual_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT (hidden 32) with e5-small-multilingual's tokenizer, as a model folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tunelab.models import e5_multilingual

    folder = tmp_path_factory.mktemp("tiny-multilingual-bert")
    _, tokenizer_json, _ = e5_multilingual._sources()
    config = BertConfig(
        vocab_size=250_037,  # e5-small's SentencePiece vocabulary (checked against the tokenizer below)
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    e5_multilingual._write_tokenizer(tokenizer_json, folder, config.max_position_embeddings)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert len(tokenizer) <= config.vocab_size and tokenizer.pad_token_id == config.pad_token_id
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("chinese-data")
    train, test = make_rows(16, seed=1), make_rows(6, seed=2)
    return {
        "train": write_csv(folder / "train.csv", train),
        "train_gb18030": write_csv(folder / "train_gb.csv", train, "gb18030"),
        "test": write_csv(folder / "test.csv", test),
        "test_gb18030": write_csv(folder / "test_gb.csv", test, "gb18030"),
    }


def train_run(model: Path, train: Path, test: Path, out: Path, tiny_overrides, *extra: str) -> Path:  # type: ignore[no-untyped-def]
    overrides = tiny_overrides(model, train, test, out, "data.dev_size=0", *extra, epochs=8)
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def trained(
    tiny_multilingual_bert: Path,
    data: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    tiny_overrides,
) -> tuple[Path, list[str]]:
    """The run folder, and the glyph warnings matplotlib gave while drawing its report's plots."""
    with warnings.catch_warnings(record=True) as caught, pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("always")
        # matplotlib's per-glyph warnings, which plots.py silences after its own one, let through
        patch.setattr(plots, "_GLYPH_MISSING", r"(?!)")
        run = train_run(
            tiny_multilingual_bert,
            data["train"],
            data["test"],
            tmp_path_factory.mktemp("runs"),
            tiny_overrides,
        )
    return run, [str(w.message) for w in caught if "missing from font" in str(w.message)]


@pytest.fixture(scope="module")
def model(trained: tuple[Path, list[str]]) -> tunelab.Predictor:
    return tunelab.load(trained[0])


def test_labels_are_the_chinese_names_and_the_model_learns_them(
    model: tunelab.Predictor, data: dict[str, Path]
) -> None:
    assert sorted(model.labels.names) == sorted(CLASS_WORDS)
    test = pd.read_csv(data["test"], dtype=str)
    predicted = [r["label"] for r in model.predict(test["text"].tolist())]
    accuracy = sum(p == t for p, t in zip(predicted, test["label"], strict=True)) / len(test)
    assert accuracy >= 0.8, f"tokenised Chinese should separate these classes; accuracy {accuracy:.2f}"


def test_report_and_plots_carry_the_chinese_label_names(trained: tuple[Path, list[str]]) -> None:
    run, glyph_warnings = trained
    for report in ("report.md", "report.html"):
        text = (run / report).read_text(encoding="utf-8")
        assert all(name in text for name in CLASS_WORDS), report
    assert list((run / "plots").glob("*.png")), "the report draws plots"
    assert glyph_warnings == []


def test_cli_predict_input_writes_utf8_jsonl_with_texts_unchanged(
    trained: tuple[Path, list[str]], model: tunelab.Predictor, tmp_path: Path
) -> None:
    texts = ["快递太慢，包裹延迟三天！", "房間乾淨舒適，推薦 😊", "Ｆｕｌｌｗｉｄｔｈ 全角，和 emoji 🚚"]
    source = write_csv(tmp_path / "in.csv", [{"text": t} for t in texts])
    target = tmp_path / "out.jsonl"
    assert main(["predict", str(trained[0]), "--input", str(source), "--output", str(target)]) == 0
    raw = target.read_bytes().decode("utf-8")
    assert "\\u" not in raw and "快递太慢" in raw  # readable UTF-8, not JSON escapes
    out = [json.loads(line) for line in raw.splitlines()]
    assert [r["text"] for r in out] == texts
    assert [r["label"] for r in out] == [r["label"] for r in model.predict(texts)]
    assert all(r["label"] in CLASS_WORDS for r in out)


def test_a_gb18030_twin_trains_to_the_same_labels(
    tiny_multilingual_bert: Path,
    data: dict[str, Path],
    model: tunelab.Predictor,
    tmp_path: Path,
    tiny_overrides,  # type: ignore[no-untyped-def]
) -> None:
    run = train_run(
        tiny_multilingual_bert,
        data["train_gb18030"],
        data["test_gb18030"],  # data.encoding applies to every split
        tmp_path,
        tiny_overrides,
        "data.encoding=gb18030",
        "train.epochs=1",
    )
    twin = tunelab.load(run)
    assert twin.labels.names == model.labels.names
    utf8 = read_table(data["train"], DataConfig())
    assert read_table(data["train_gb18030"], DataConfig(encoding="gb18030")).equals(utf8)


@pytest.fixture(scope="module")
def client(model: tunelab.Predictor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = ServeSettings(
        data_dir=tmp_path_factory.mktemp("serve"), db=None, require_keys=False, max_wait_ms=20
    )
    served = [ServedModel("评论", "1", model, "runs/chinese")]
    with TestClient(create_app(settings, served), raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_service_returns_chinese_labels_as_the_predictor_does(
    client: TestClient, model: tunelab.Predictor
) -> None:
    texts = ["物流太慢，快递延迟", "酒店干净，服务热情，推荐！"]
    r = client.post("/v1/models/评论/predict", json={"texts": texts, "top_k": 3})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    expected = model.predict(texts)
    assert [x["label"] for x in results] == [x["label"] for x in expected]
    assert {t["label"] for t in results[0]["top_k"]} == set(CLASS_WORDS)
    assert results[0]["label"].encode("utf-8") in r.content  # UTF-8 on the wire, not \u escapes
