"""Text-pair models (``data.text_pair_column``) end to end: ``Predictor.predict``, ``tunelab predict``
and the HTTP API take pairs, and refuse the other kind of input naming the field to use.

Two tiny models are trained once for the module: one on (question, context) pairs, one on single
texts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

import tunelab
from tunelab.cli.main import main
from tunelab.errors import ConfigError, DataError
from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.settings import ServeSettings

BASE = ["model.max_length=32", "model.pooling=mean", "train.batch_size=8", "train.patience=null"]


def _train(tiny_bert: Path, data: Path, out: Path, name: str, *extra: str) -> Path:
    overrides = [
        f"data.train={data}",
        f"model.name={tiny_bert}",
        f"output_dir={out}",
        *BASE,
        "train.epochs=2",
        "train.learning_rate=0.005",
        f"name={name}",
        *extra,
    ]
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def pair_run(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("pairs")
    frame = pd.read_csv(labelled_csvs[0])
    rows = pd.DataFrame(
        {
            "question": frame["text"],
            "context": [f"context {i} {label}" for i, label in enumerate(frame["label"])],
            "label": frame["label"],
        }
    )
    data = folder / "pairs.csv"
    rows.to_csv(data, index=False)
    extra = ("data.text_column=question", "data.text_pair_column=context")
    return _train(tiny_bert, data, folder / "runs", "pairs", *extra)


@pytest.fixture(scope="module")
def single_run(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return _train(tiny_bert, labelled_csvs[0], tmp_path_factory.mktemp("single"), "single")


@pytest.fixture(scope="module")
def pair_model(pair_run: Path) -> tunelab.Predictor:
    return tunelab.load(pair_run)


@pytest.fixture(scope="module")
def single_model(single_run: Path) -> tunelab.Predictor:
    return tunelab.load(single_run)


# -- Predictor.predict -------------------------------------------------------------------------------


def test_a_pair_model_predicts_pairs_and_the_pair_text_counts(pair_model: tunelab.Predictor) -> None:
    assert pair_model.text_pair_column == "context"
    one = pair_model.predict("rain today", "context 1 weather")
    assert isinstance(one, dict) and one["label"] in pair_model.labels.names
    many = pair_model.predict(["rain today", "rain today"], ["context 1 weather", "context 2 sports"])
    assert many[0] == one
    assert many[1]["top_k"] != one["top_k"]  # the second text is really read


def test_a_pair_model_asked_with_single_texts_names_text_pairs(pair_model: tunelab.Predictor) -> None:
    with pytest.raises(
        DataError, match=r"trained on text pairs \(data.text_pair_column='context'\).*text_pairs"
    ):
        pair_model.predict(["rain today"])


def test_pairs_must_match_the_texts_and_not_be_empty(pair_model: tunelab.Predictor) -> None:
    with pytest.raises(DataError, match="2 texts but 1 text_pairs"):
        pair_model.predict(["a", "b"], ["c"])
    with pytest.raises(DataError, match="text_pairs 2: empty"):
        pair_model.predict(["a", "b"], ["c", " "])


def test_a_series_with_one_pair_text_pairs_every_row_with_it(pair_model: tunelab.Predictor) -> None:
    """A string pair beside a Series was split into letters: row 0 was scored against 'c'."""
    texts = pd.Series(["rain today", "pizza tonight"], index=[10, 11])
    got = pair_model.predict(texts, "context 1 weather")
    assert list(got.index) == [10, 11]
    assert got.loc[10, "score"] == pytest.approx(
        pair_model.predict("rain today", "context 1 weather")["score"]
    )
    assert got.loc[11, "score"] == pytest.approx(
        pair_model.predict("pizza tonight", "context 1 weather")["score"]
    )


def test_two_series_are_paired_by_index(pair_model: tunelab.Predictor) -> None:
    """Paired by position, texts indexed [1, 2] met the pairs indexed [2, 1] crosswise."""
    texts = pd.Series(["rain today", "pizza tonight"], index=[1, 2])
    pairs = pd.Series(["context 3 food", "context 1 weather"], index=[2, 1])
    got = pair_model.predict(texts, pairs)
    assert got.loc[1, "score"] == pytest.approx(
        pair_model.predict("rain today", "context 1 weather")["score"]
    )
    assert got.loc[2, "score"] == pytest.approx(
        pair_model.predict("pizza tonight", "context 3 food")["score"]
    )
    with pytest.raises(DataError, match="text_pairs' index is not texts' index"):
        pair_model.predict(texts, pd.Series(["a", "b"], index=[7, 8]))


def test_a_single_text_model_refuses_text_pairs(single_model: tunelab.Predictor) -> None:
    assert single_model.text_pair_column is None
    with pytest.raises(DataError, match="classifies single texts: give no text_pairs"):
        single_model.predict(["rain today"], ["context"])


# -- tunelab predict ---------------------------------------------------------------------------------


def test_cli_predicts_pairs_given_with_pair(
    pair_run: Path, pair_model: tunelab.Predictor, capsys: Any
) -> None:
    argv = [
        "predict",
        str(pair_run),
        "--pair",
        "rain today",
        "context 1 weather",
        "--pair",
        "goal",
        "x",
        "--json",
    ]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["text"], r["text_pair"]) for r in lines] == [
        ("rain today", "context 1 weather"),
        ("goal", "x"),
    ]
    assert lines[0]["top_k"] == pair_model.predict("rain today", "context 1 weather")["top_k"]


def test_cli_refuses_the_wrong_kind_naming_the_option(pair_run: Path, single_run: Path, capsys: Any) -> None:
    assert main(["predict", str(pair_run), "rain today"]) == 2
    err = capsys.readouterr().err
    assert "data.text_pair_column='context'" in err and "--pair TEXT TEXT_PAIR" in err
    assert main(["predict", str(single_run), "--pair", "rain", "today"]) == 2
    assert "classifies single texts" in capsys.readouterr().err


def test_cli_input_file_reads_the_pair_column(
    pair_run: Path, pair_model: tunelab.Predictor, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    pd.DataFrame(
        {"question": ["rain today", "pizza"], "context": ["context 1 weather", "context 3 food"]}
    ).to_csv(source, index=False)
    target = tmp_path / "out.jsonl"
    assert main(["predict", str(pair_run), "--input", str(source), "--output", str(target)]) == 0
    out = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [(r["text"], r["text_pair"]) for r in out] == [
        ("rain today", "context 1 weather"),
        ("pizza", "context 3 food"),
    ]
    assert out[1]["top_k"] == pair_model.predict("pizza", "context 3 food")["top_k"]


# -- tunelab eval -----------------------------------------------------------------------------------


def _pair_file(labelled_csvs: tuple[Path, Path], target: Path, pair_name: str = "context") -> Path:
    frame = pd.read_csv(labelled_csvs[1])
    pairs = [f"context {i} {label}" for i, label in enumerate(frame["label"])]
    pd.DataFrame({"question": frame["text"], pair_name: pairs, "label": frame["label"]}).to_csv(
        target, index=False
    )
    return target


def test_eval_of_a_pair_run_may_rename_the_pair_column(
    pair_run: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    same = tunelab.evaluate(pair_run, _pair_file(labelled_csvs, tmp_path / "a.csv"), out_dir=tmp_path / "a")
    renamed = _pair_file(labelled_csvs, tmp_path / "b.csv", pair_name="passage")
    options = ["data.text_pair_column=passage"]
    other = tunelab.evaluate(pair_run, renamed, out_dir=tmp_path / "b", options=options)
    assert other["accuracy"] == same["accuracy"] and other["n"] == same["n"]


def _eval_cli(run: Path, data: Path, option: str, out: Path) -> int:
    """``tunelab eval RUN --data DATA OPTION --out OUT``: the exit status."""
    return main(["eval", str(run), "--data", str(data), option, "--out", str(out)])


def test_eval_refuses_to_clear_a_pair_runs_pair_column(
    pair_run: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, capsys: Any
) -> None:
    data = _pair_file(labelled_csvs, tmp_path / "pairs.csv")
    with pytest.raises(ConfigError, match=r"data.text_pair_column=None: this run was trained on text pairs"):
        tunelab.evaluate(pair_run, data, out_dir=tmp_path / "api", options=["data.text_pair_column=null"])
    assert _eval_cli(pair_run, data, "data.text_pair_column=null", tmp_path / "cli") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "data.text_pair_column='context'" in err and "data.text_pair_column=COLUMN" in err
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()


def test_eval_refuses_a_pair_column_for_a_single_text_run(
    single_run: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, capsys: Any
) -> None:
    frame = pd.read_csv(labelled_csvs[1]).assign(other=lambda f: f["text"].str[::-1])
    data = tmp_path / "with_pairs.csv"
    frame.to_csv(data, index=False)
    with pytest.raises(ConfigError, match=r"data.text_pair_column='other': this run classifies single texts"):
        tunelab.evaluate(single_run, data, out_dir=tmp_path / "api", options={"text_pair_column": "other"})
    assert _eval_cli(single_run, data, "data.text_pair_column=other", tmp_path / "cli") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give no data.text_pair_column" in err
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()


# -- the HTTP API ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(
    pair_model: tunelab.Predictor, single_model: tunelab.Predictor, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = ServeSettings(
        data_dir=tmp_path_factory.mktemp("serve"),
        db=None,
        require_keys=False,
        max_wait_ms=20,
        max_chars_per_text=40,
    )
    served = [
        ServedModel("nli", "1", pair_model, "runs/pairs"),
        ServedModel("topics", "1", single_model, "runs/single"),
    ]
    with TestClient(create_app(settings, served), raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_api_serves_pairs_as_the_predictor_does(
    client: TestClient, pair_model: tunelab.Predictor
) -> None:
    pairs = [["rain today", "context 1 weather"], ["rain today", "context 2 sports"], ["goal", "context 3"]]
    r = client.post("/v1/models/nli/predict", json={"pairs": pairs, "top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"]["texts"] == 3
    expected = pair_model.predict([a for a, _ in pairs], [b for _, b in pairs])
    for got, want in zip(body["results"], expected, strict=True):
        assert got["label"] == want["label"]
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)


def test_concurrent_pair_requests_are_batched_and_each_gets_its_own(
    client: TestClient, pair_model: tunelab.Predictor
) -> None:
    pairs = [[f"rain {i}", f"context {i} weather"] for i in range(6)]

    def ask(pair: list[str]) -> dict[str, Any]:
        r = client.post("/v1/models/nli/predict", json={"pairs": [pair]})
        assert r.status_code == 200, r.text
        return r.json()["results"][0]

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(ask, pairs))
    for pair, result in zip(pairs, got, strict=True):
        assert result["score"] == pytest.approx(pair_model.predict(*pair)["score"], abs=1e-4)


def test_a_pair_model_asked_with_texts_is_422_naming_pairs(client: TestClient) -> None:
    r = client.post("/v1/models/nli/predict", json={"texts": ["rain today"]})
    assert r.status_code == 422
    err = r.json()["error"]
    assert (
        err["code"] == "pairs_required"
        and '"pairs"' in err["message"]
        and "text_pair_column='context'" in err["message"]
    )


def test_a_single_text_model_asked_with_pairs_is_422_naming_texts(client: TestClient) -> None:
    r = client.post("/v1/models/topics/predict", json={"pairs": [["rain", "today"]]})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "texts_required" and '"texts"' in err["message"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"pairs": [["rain", "x"]], "texts": ["rain"]}, "give texts or pairs, not both"),
        ({"pairs": [["rain"]]}, "body.pairs.0.1"),
        ({"pairs": [["rain", "  "]]}, "pairs[0][1] is empty"),
        ({"pairs": []}, "body.pairs"),
        ({}, "body.texts"),
    ],
)
def test_pair_schema_problems_are_422_with_the_field(client: TestClient, body: Any, where: str) -> None:
    r = client.post("/v1/models/nli/predict", json=body)
    assert r.status_code == 422
    assert where in r.json()["error"]["message"], r.json()


def test_a_long_pair_text_is_422_naming_it(client: TestClient) -> None:
    r = client.post("/v1/models/nli/predict", json={"pairs": [["rain", "ok"], ["rain", "x" * 41]]})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "text_too_long" and "pairs[1][1]" in err["message"]


def test_openapi_documents_pairs(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["PredictRequest"]
    assert {"texts", "pairs"} <= set(schema["properties"])
    assert "text pairs" in schema["properties"]["pairs"]["description"]
