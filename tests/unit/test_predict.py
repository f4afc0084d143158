"""The Python API on a finished run: ``tunelab.load(run).predict``, ``predict_file``, ``evaluate``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tunelab
from tunelab.errors import DataError, RunError


@pytest.fixture(scope="module")
def run(
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("predict-runs")
    overrides = tiny_overrides(tiny_bert, train, test, out, "name=api")
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def predictor(run: Path) -> tunelab.Predictor:
    return tunelab.load(run)


def test_one_text_gives_a_dict_and_a_list_gives_a_list(predictor: tunelab.Predictor) -> None:
    one = predictor.predict("football match with my team")
    assert isinstance(one, dict) and one["label"] == "sports"
    many = predictor.predict(["football match with my team", "pizza and cheese for dinner"])
    assert isinstance(many, list) and [r["label"] for r in many] == ["sports", "food"]
    assert many[0] == one
    assert predictor.predict([]) == []


def test_top_k_is_ranked_and_clamped(predictor: tunelab.Predictor) -> None:
    result = predictor.predict("snow and cold wind", top_k=10)
    scores = [t["score"] for t in result["top_k"]]
    assert result["top_k"][0]["label"] == result["label"] == "weather"
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert len(predictor.predict("snow", top_k=1)["top_k"]) == 1


def test_batching_does_not_change_the_scores(predictor: tunelab.Predictor) -> None:
    texts = ["rain", "a football match with the team and a goal", "pizza", "soup and bread for dinner today"]
    together = predictor.logits(texts, batch_size=64)
    apart = np.concatenate([predictor.logits([t]) for t in texts])
    np.testing.assert_allclose(together, apart, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_empty_or_non_text_is_refused(predictor: tunelab.Predictor, bad: object) -> None:
    with pytest.raises(DataError, match="text 2: empty or not a string"):
        predictor.predict(["fine", bad])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("frame", "a DataFrame; pass one column of it"),
        ({"football match": 1}, "a mapping"),
        (None, "NoneType is not text"),
        (123, "int is not text"),
    ],
)
def test_what_is_not_texts_is_refused_in_one_line(
    predictor: tunelab.Predictor, bad: object, says: str
) -> None:
    """A DataFrame was predicted on its column names, a dict on its keys (one silent wrong
    result); None and a number failed with a bare TypeError."""
    import pandas as pd

    if bad == "frame":
        bad = pd.DataFrame({"text": ["football match", "pizza and cheese"]})
    with pytest.raises(DataError, match=says):
        predictor.predict(bad)  # type: ignore[arg-type]


def test_predict_file_from_jsonl(predictor: tunelab.Predictor, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    rows = [{"id": 7, "text": "tennis score"}, {"id": 8, "text": "cheese salad recipe"}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    target = tmp_path / "out.jsonl"
    assert tunelab.predict_file(predictor, source, target, top_k=2) == 2
    out = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    # The text is read as text; the id keeps its JSON type (it came back as "7").
    assert [(r["id"], r["row"], r["text"]) for r in out] == [
        (7, 1, "tennis score"),
        (8, 2, "cheese salad recipe"),
    ]
    assert [r["label"] for r in out] == ["sports", "food"] and all(len(r["top_k"]) == 2 for r in out)


def test_evaluate_matches_the_metrics_saved_at_training(
    run: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    test = labelled_csvs[1]
    saved = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["test"]
    metrics = tunelab.evaluate(run, test, out_dir=tmp_path / "report")
    assert metrics["accuracy"] == saved["accuracy"]
    assert metrics["loss"] == pytest.approx(saved["loss"], rel=1e-5)
    assert (
        Path(metrics["report"]) == tmp_path / "report" / "report.html" and Path(metrics["report"]).is_file()
    )
    assert (
        json.loads((tmp_path / "report" / "metrics.json").read_text(encoding="utf-8"))["accuracy"]
        == (saved["accuracy"])
    )
    assert tunelab.evaluate(run)["accuracy"] == saved["accuracy"]  # no data: the saved test metrics


def test_list_runs(run: Path) -> None:
    infos = tunelab.list_runs(run.parent)
    assert [(i.path, i.status) for i in infos] == [(run, "finished")]
    assert infos[0].summary["method"] == "full"


def test_load_refuses_what_is_not_a_finished_run(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such run folder"):
        tunelab.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    # A folder that is no run is called so; "did not finish" would send the user to --resume.
    with pytest.raises(RunError, match=r"not a run folder .*run\.json"):
        tunelab.load(tmp_path / "empty")
    (tmp_path / "half.partial" / "checkpoints").mkdir(parents=True)
    (tmp_path / "half.partial" / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RunError, match="did not finish"):
        tunelab.load(tmp_path / "half")


def test_a_long_text_ending_like_a_file_name_is_predicted_as_a_text(predictor: tunelab.Predictor) -> None:
    """Path(text).is_file() raised OSError (ENAMETOOLONG) for a one-line text longer than a file
    name may be that ended in ".csv": a support ticket "... see statement.csv"."""
    ticket = "my card was charged twice for one football match, " * 10 + "see statement.csv"
    assert len(ticket) > 255 and predictor.predict(ticket)["label"] in predictor.labels.names
    assert predictor.predict("nul\x00byte.txt")["label"] in predictor.labels.names


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8", None])
def test_a_batch_size_below_one_or_not_a_whole_number_is_refused_in_one_line(
    predictor: tunelab.Predictor, bad: object
) -> None:
    """0 failed as "range() arg 3 must not be zero", -1 as "zero-size array to reduction ..."."""
    from tunelab.errors import ConfigError

    message = rf"^batch_size {re.escape(repr(bad))}: use 1 or more$"
    with pytest.raises(ConfigError, match=message):
        predictor.predict(["football match with my team"], batch_size=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        predictor.logits(["football match with my team"], batch_size=bad)  # type: ignore[arg-type]
    assert len(predictor.logits(["football match with my team"], batch_size=1)) == 1


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("config.json", None, "no such file"),
        ("config.json", '{"data": ', "not JSON"),
        ("config.json", "[]", "a JSON array, not an object"),
        ("run.json", '{"format": "onnx", ', "not JSON"),
        ("run.json", "null", "a JSON null, not an object"),
        ("run.json", b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_a_damaged_config_or_run_json_is_named_when_loading(
    run: Path, tmp_path: Path, name: str, content: str | bytes | None, reason: str
) -> None:
    """config.json: "unexpected JSONDecodeError", naming no file. run.json was read as {}: an ONNX
    artifact loaded as a torch run, failing on its weights, and a tuned threshold became 0.5."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    if content is None:
        (copy / name).unlink()
    elif isinstance(content, bytes):
        (copy / name).write_bytes(content)
    else:
        (copy / name).write_text(content, encoding="utf-8")
    with pytest.raises(RunError) as caught:
        tunelab.load(copy)
    message = str(caught.value)
    assert message.startswith(f"{copy / name}: cannot read (") and reason in message, message
    assert message.endswith("the run folder is damaged: train or export it again") and "\n" not in message


def test_a_run_without_run_json_still_loads(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "run.json").unlink()
    assert tunelab.load(copy).predict("football match with my team")["label"] == "sports"
