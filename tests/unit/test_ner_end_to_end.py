"""NER end to end on a tiny random BERT: ``tunelab.train`` with ``data.task=token_classification``,
``tunelab.load().predict``, the CLI (train, validate, predict, predict --input, eval), the HTTP API
and export (onnx, onnx-int8, structured pruning), in English and in Chinese.

The synthetic sentences use a few names, places and companies that occur only as entities, so
the 2-layer random encoder learns them in seconds; one English and one Chinese run are trained
once for the module.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tunelab
from tunelab.cli.main import main
from tunelab.config import RunConfig
from tunelab.errors import DataError, RunError
from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.settings import ServeSettings
from tunelab.tasks import get_task

PER = ["Alice", "Bob", "Carol", "Dave"]
LOC = ["Paris", "London", "Berlin", "Madrid"]
ORG = ["Acme", "Globex", "Initech"]
FILLER = ["the", "met", "in", "at", "visited", "today", "with", "from", "and", "said"]

# Characters in the bundled (uncased English) vocabulary, which the tiny test model shares: most
# Chinese characters are [UNK] there, and a model cannot tell [UNK]s apart.
ZH_PER = ["王明", "李文", "金美"]
ZH_LOC = ["北京", "上海", "广州"]
ZH_FILLER = ["的", "有", "不", "我", "年", "日月", "大学", "人", "会", "中国"]

# The tiny model's token embeddings are random, not pre-trained: full fine-tuning trains them here.
TINY = [
    "model.max_length=32",
    "train.batch_size=8",
    "train.learning_rate=0.005",
    "train.patience=null",
    "method.freeze_word_embeddings=false",
]


def english_sentences(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """``n`` sentences of 4-8 words; a company is two words (``Acme Corp``: B-ORG I-ORG)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words: list[str] = []
        tags: list[str] = []
        for _ in range(rng.randint(4, 8)):
            k = rng.random()
            if k < 0.15:
                words += [rng.choice(PER)]
                tags += ["B-PER"]
            elif k < 0.25:
                words += [rng.choice(LOC)]
                tags += ["B-LOC"]
            elif k < 0.33:
                words += [rng.choice(ORG), "Corp"]
                tags += ["B-ORG", "I-ORG"]
            else:
                words += [rng.choice(FILLER)]
                tags += ["O"]
        out.append((words, tags))
    return out


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> Path:
    blocks = ["\n".join(f"{w} {t}" for w, t in zip(*s, strict=True)) for s in sentences]
    path.write_text("-DOCSTART- O\n\n" + "\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def chinese_records(n: int, seed: int) -> list[dict[str, Any]]:
    """``{"text", "spans"}`` records: Chinese text without spaces, entities as character spans."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text, spans = "", []
        for _ in range(rng.randint(3, 6)):
            k = rng.random()
            kind, word = (
                ("PER", rng.choice(ZH_PER))
                if k < 0.25
                else ("LOC", rng.choice(ZH_LOC))
                if k < 0.45
                else (None, rng.choice(ZH_FILLER))
            )
            if kind is not None:
                spans.append({"start": len(text), "end": len(text) + len(word), "label": kind})
            text += word
        out.append({"text": text + "。", "spans": spans})
    return out


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ner-data")
    return (
        write_conll(folder / "train.conll", english_sentences(150, seed=1)),
        write_conll(folder / "test.conll", english_sentences(40, seed=2)),
    )


@pytest.fixture(scope="module")
def ner_run(tiny_bert: Path, ner_data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    train, test = ner_data
    overrides = [
        "data.task=token_classification",
        f"data.train={train}",
        f"data.test={test}",
        f"model.name={tiny_bert}",
        f"output_dir={tmp_path_factory.mktemp('ner-runs')}",
        "name=ner",
        "train.epochs=8",
        *TINY,
    ]
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def ner_model(ner_run: Path) -> tunelab.Predictor:
    return tunelab.load(ner_run)


@pytest.fixture(scope="module")
def zh_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("zh-ner")
    train = folder / "train.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for r in chinese_records(150, seed=3)]
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    overrides = [
        "data.task=token_classification",
        f"data.train={train}",
        f"model.name={tiny_bert}",
        f"output_dir={folder / 'runs'}",
        "name=zh",
        "train.epochs=8",
        *TINY,
    ]
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


def entities_of(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["label"], e["text"]) for e in result["entities"]]


# -- training ----------------------------------------------------------------------------------------


def test_the_default_metric_follows_the_task_and_explicit_metrics_stay_valid() -> None:
    assert RunConfig.from_yaml(None).train.metric == "accuracy"
    ner = RunConfig.from_yaml(None, ["data.task=token_classification"])
    assert ner.train.metric == "entity_f1"
    assert RunConfig.from_yaml(None, ["train.metric=macro_f1"]).train.metric == "macro_f1"
    explicit = RunConfig.from_yaml(None, ["data.task=token_classification", "train.metric=token_accuracy"])
    assert explicit.train.metric == "token_accuracy"
    assert RunConfig.from_dict(ner.to_dict()).train.metric == "entity_f1"  # a saved config reloads


def test_conll_format_is_for_token_classification(tmp_path: Path, ner_data: tuple[Path, Path]) -> None:
    from tunelab.data import load_splits

    for given in ("data.format=conll", "data.format=auto"):  # the .conll extension says conll
        cfg = RunConfig.from_yaml(None, [f"data.train={ner_data[0]}", given])
        with pytest.raises(DataError, match=r"data\.task=token_classification"):
            load_splits(cfg.data)
    ner = RunConfig.from_yaml(
        None, ["data.task=token_classification", f"data.train={ner_data[0]}", "data.format=conll"]
    )
    assert len(get_task(ner.data.task).load_splits(ner.data).train) > 100


def test_training_selects_on_entity_f1_and_learns_the_entities(ner_run: Path) -> None:
    summary = json.loads((ner_run / "run.json").read_text(encoding="utf-8"))
    metrics = json.loads((ner_run / "metrics.json").read_text(encoding="utf-8"))
    assert summary["task"] == "token_classification"
    assert list(summary["best_dev_metric"]) == ["entity_f1"]
    assert json.loads((ner_run / "config.json").read_text(encoding="utf-8"))["train"]["metric"] == "entity_f1"
    assert summary["rows"]["test"] == 40
    assert metrics["test"]["entity_f1"] > 0.6, metrics["test"]["entity_f1"]
    assert {row["label"] for row in metrics["test"]["per_type"]} == {"LOC", "ORG", "PER"}
    assert "entity_f1" in summary["headline"]["test"]
    assert (ner_run / "report.html").is_file()


def test_the_runs_stride_reaches_the_encoder(ner_model: tunelab.Predictor) -> None:
    text = " ".join(["Alice met Bob in Paris"] * 24)  # 120 words, far over 32 tokens: windows
    task, tokenizer, stride = ner_model.task, ner_model.tokenizer, ner_model.config.model.stride
    used = ner_model.encode([text])
    assert (
        used.input_ids == task.encode_texts(tokenizer, [text], None, max_length=32, stride=stride).input_ids
    )
    no_overlap = task.encode_texts(tokenizer, [text], None, max_length=32, stride=0)
    assert len(no_overlap) < len(used)
    # Metering's count: the text's tokens once, however many windows share them.
    assert used.text_lengths == no_overlap.text_lengths == [len(tokenizer(text)["input_ids"])]


def test_validate_checks_ner_data(
    ner_data: tuple[Path, Path], tiny_bert: Path, capsys: Any, tmp_path: Path
) -> None:
    args = [
        "validate",
        "data.task=token_classification",
        f"data.train={ner_data[0]}",
        f"model.name={tiny_bert}",
    ]
    assert main(args) == 0
    assert "data ok: 7 labels (token_classification)" in capsys.readouterr().out
    bad = tmp_path / "bad.conll"
    bad.write_text("Alice B-PER\nmet O\nParis X-LOC\n", encoding="utf-8")
    assert main(["validate", "data.task=token_classification", f"data.train={bad}"]) == 2
    assert f"{bad} line 3" in capsys.readouterr().err


# -- prediction --------------------------------------------------------------------------------------


def test_predict_returns_entities_with_offsets_into_the_original_text(ner_model: tunelab.Predictor) -> None:
    text = "Alice  met Bob in\tParis at Acme Corp ."
    result = ner_model.predict(text)
    assert set(result) == {"entities"}
    for e in result["entities"]:
        assert text[e["start"] : e["end"]] == e["text"]
        assert 0.0 < e["score"] <= 1.0
    assert entities_of(result) == [("PER", "Alice"), ("PER", "Bob"), ("LOC", "Paris"), ("ORG", "Acme Corp")]
    assert ner_model.predict(["the met", text])[0] == {"entities": []}


def test_cli_predict_prints_entities_and_writes_jsonl(ner_run: Path, tmp_path: Path, capsys: Any) -> None:
    assert main(["predict", str(ner_run), "Alice visited London"]) == 0
    out = capsys.readouterr().out
    assert "PER      'Alice' [0:5]" in out and "LOC      'London' [14:20]" in out
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id": "a", "text": "Carol met Dave"}\n{"id": "b", "text": "Berlin"}\n', encoding="utf-8"
    )
    target = tmp_path / "out.jsonl"
    assert main(["predict", str(ner_run), "--input", str(source), "--output", str(target)]) == 0
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"]
    assert entities_of(rows[0]) == [("PER", "Carol"), ("PER", "Dave")]
    assert rows[1]["entities"][0] | {"score": 0} == {
        "text": "Berlin",
        "label": "LOC",
        "start": 0,
        "end": 6,
        "score": 0,
    }


def test_cli_eval_reports_entity_metrics(
    ner_run: Path, ner_data: tuple[Path, Path], tmp_path: Path, capsys: Any
) -> None:
    assert main(["eval", str(ner_run), "--data", str(ner_data[1]), "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "entity_f1" in out and "token_accuracy" in out
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    trained = json.loads((ner_run / "metrics.json").read_text(encoding="utf-8"))["test"]
    assert saved["entity_f1"] == pytest.approx(trained["entity_f1"])
    assert (tmp_path / "eval" / "report.html").is_file()
    # Another file, not the run's own: read by its extension, whatever it is.
    # "copy" (no extension): read by its content; it was taken for csv and refused as "NER data
    # from format csv", a format the user never chose
    for name in ("copy.conll", "copy.txt", "copy.iob", "copy"):
        copy = tmp_path / name
        copy.write_text(ner_data[1].read_text(encoding="utf-8"), encoding="utf-8")
        assert main(["eval", str(ner_run), "--data", str(copy), "--out", str(tmp_path / f"{name}-eval")]) == 0
        again = json.loads((tmp_path / f"{name}-eval" / "metrics.json").read_text(encoding="utf-8"))
        assert again["entity_f1"] == pytest.approx(trained["entity_f1"])
    unknown = tmp_path / "unknown.conll"
    unknown.write_text("Alice B-PER\nmet O\nIBM B-COMPANY\n", encoding="utf-8")
    assert main(["eval", str(ner_run), "--data", str(unknown)]) == 2
    err = capsys.readouterr().err
    assert (
        f"error: {unknown}: entity types not in the run's training data: 'COMPANY' ({unknown} line 3)" in err
    )


# -- the HTTP API ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(
    ner_model: tunelab.Predictor, zh_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = ServeSettings(
        data_dir=tmp_path_factory.mktemp("serve"), db=None, require_keys=False, max_wait_ms=20
    )
    served = [
        ServedModel("ner", "1", ner_model, "runs/ner"),
        ServedModel("zh", "1", tunelab.load(zh_run), "runs/zh"),
    ]
    with TestClient(create_app(settings, served), raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_api_returns_entities_and_counts_each_token_once(
    client: TestClient, ner_model: tunelab.Predictor
) -> None:
    long = " ".join(["Alice met Bob in Paris"] * 12)  # several overlapping windows
    texts = ["Alice visited London", long]
    r = client.post("/v1/models/ner/predict", json={"texts": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "token_classification"
    assert body["results"] == [
        {"entities": [e | {"score": pytest.approx(e["score"], abs=1e-4)} for e in want["entities"]]}
        for want in ner_model.predict(texts)
    ]
    assert len(body["results"][1]["entities"]) == 36
    # Each text's real tokens, once: not the windows' total, which counts the overlaps twice.
    real = [len(ner_model.tokenizer(t)["input_ids"]) for t in texts]
    assert body["usage"] == {"texts": 2, "tokens": sum(real)}
    assert sum(ner_model.encode(texts).lengths) > sum(real)


def test_openapi_names_the_token_classification_task(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "token_classification" in schema["PredictResponse"]["properties"]["task"]["examples"]
    assert "EntityResult" in schema


# -- export ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["onnx", "onnx-int8"])
def test_export_checks_parity_on_entity_f1_and_predicts_the_same_entities(
    ner_run: Path, ner_model: tunelab.Predictor, fmt: str, tmp_path: Path
) -> None:
    result = tunelab.export(ner_run, format=fmt, output=tmp_path / fmt, show_progress=False)
    parity = result.parity
    assert parity["metric"] == "entity_f1" and parity["passed"]
    assert parity["data"]["rows"] == 40  # sentences, not windows
    assert parity["agreement"] >= (1.0 if fmt == "onnx" else 0.9)
    artifact = tunelab.load(result.path)
    assert artifact.logits(["Alice met Bob"]).shape[-1] == len(ner_model.labels.names)  # (N, T, L)
    texts = ["Alice met Bob in Paris", " ".join(["Carol visited Berlin"] * 15)]
    if fmt == "onnx":
        assert artifact.predict(texts) == [
            {"entities": [e | {"score": pytest.approx(e["score"], abs=1e-4)} for e in r["entities"]]}
            for r in ner_model.predict(texts)
        ]
    else:
        assert [entities_of(r) for r in artifact.predict(texts)] == [
            entities_of(r) for r in ner_model.predict(texts)
        ]


def test_structured_pruning_works_and_torch_int8_says_it_is_for_classification(
    ner_run: Path, tmp_path: Path
) -> None:
    pruned = tunelab.export(
        ner_run,
        format="onnx",
        prune=0.5,
        prune_method="ffn",
        recover_epochs=1,
        max_drop=100,
        output=tmp_path / "pruned",
        show_progress=False,
    )
    info = json.loads((pruned.path / "run.json").read_text(encoding="utf-8"))["export"]["prune"]
    assert info["ffn_per_layer"] == [32, 32] and info["recovery"]["steps"] > 0
    assert "entities" in tunelab.load(pruned.path).predict("Alice met Bob")
    with pytest.raises(RunError, match=r"torch-int8 is for sentence classification only.*onnx-int8"):
        tunelab.export(ner_run, format="torch-int8", output=tmp_path / "t8", show_progress=False)
    assert not (tmp_path / "t8").exists()


# -- Chinese -----------------------------------------------------------------------------------------


def test_chinese_entities_are_substrings_of_the_original_text(zh_run: Path, tmp_path: Path) -> None:
    model = tunelab.load(zh_run)
    text = "年会王明有北京人。"
    result = model.predict(text)
    for e in result["entities"]:
        assert text[e["start"] : e["end"]] == e["text"]
    assert entities_of(result) == [("PER", "王明"), ("LOC", "北京")]
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "李文的上海日月。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    target = tmp_path / "out.jsonl"
    assert main(["predict", str(zh_run), "--input", str(source), "--output", str(target)]) == 0
    raw = target.read_text(encoding="utf-8")
    assert '"text": "李文"' in raw and '"text": "上海"' in raw  # UTF-8, not \u escapes


def test_the_api_serves_chinese_entities(client: TestClient, zh_run: Path) -> None:
    text = "金美不王明大学广州。"
    r = client.post("/v1/models/zh/predict", json={"texts": [text]})
    assert r.status_code == 200, r.text
    assert "金美" in r.content.decode("utf-8")
    got = r.json()["results"][0]["entities"]
    assert [(e["label"], e["text"], text[e["start"] : e["end"]]) for e in got] == [
        ("PER", "金美", "金美"),
        ("PER", "王明", "王明"),
        ("LOC", "广州", "广州"),
    ]


def test_predict_input_refuses_a_column_file_without_sending_an_ner_user_astray(
    ner_data: tuple[Path, Path],
) -> None:
    """An NER run's --input needs raw texts: the message must not tell it to set the task it has."""
    from tunelab.config import DataConfig
    from tunelab.data.file_options import options_for_file
    from tunelab.data.labelled import read_texts

    data = DataConfig(task="token_classification")
    with pytest.raises(DataError) as caught:
        read_texts(ner_data[0], options_for_file(ner_data[0], data, {}))
    message = str(caught.value)
    assert "tunelab predict --input" in message and "text column" in message
    assert "set data.task" not in message


def test_predict_input_on_a_tokens_and_tags_jsonl_says_it_is_labelled_ner_data(tmp_path: Path) -> None:
    """It gave the CSV hint "if the first row is data give data.header=false ..." for JSON lines."""
    from tunelab.config import DataConfig
    from tunelab.data.file_options import options_for_file
    from tunelab.data.labelled import read_texts

    path = tmp_path / "test.jsonl"
    path.write_text('{"tokens": ["EU", "rises"], "tags": ["B-ORG", "O"]}\n', encoding="utf-8")
    with pytest.raises(
        DataError, match=r"tokens and tags: labelled NER data \(for tunelab eval --data\)"
    ) as caught:
        read_texts(path, options_for_file(path, DataConfig(task="token_classification"), {}))
    assert "data.header" not in str(caught.value)
