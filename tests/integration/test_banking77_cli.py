"""The CLI end to end, as a user runs it: real bundled MiniLM, real data subsets, subprocesses.

BANKING77 subset: the first 20 intents (sorted by name), 20 training texts each from
``../shared/data/banking77/train.csv`` and 10 test texts each from ``test.csv``. The majority
class is 5% of the test rows; three epochs of full fine-tuning reach far more (0.87-0.90 seen,
LoRA 0.91 in 8 epochs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from cli_runner import tunelab_cli  # tests/integration/cli_runner.py

pytestmark = [pytest.mark.integration, pytest.mark.plots]  # a user's flow, reports with their PNGs

N_INTENTS = 20
TRAIN_PER_INTENT = 20
TEST_PER_INTENT = 10
CARD_TEXT = "I still have not received my new card"


@pytest.fixture(scope="module")
def banking_subset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    source = shared_data / "banking77"
    train = pd.read_csv(source / "train.csv")
    test = pd.read_csv(source / "test.csv")
    intents = sorted(train["category"].unique())[:N_INTENTS]
    folder = tmp_path_factory.mktemp("banking77")
    train_path, test_path = folder / "train.csv", folder / "test.csv"

    def first_rows(df: pd.DataFrame, n: int) -> pd.DataFrame:
        return df[df["category"].isin(intents)].groupby("category", sort=True).head(n)

    first_rows(train, TRAIN_PER_INTENT).to_csv(train_path, index=False)
    first_rows(test, TEST_PER_INTENT).to_csv(test_path, index=False)
    return train_path, test_path


def train_overrides(train: Path, test: Path, out: Path, name: str, *extra: str) -> list[str]:
    return [
        f"data.train={train}",
        f"data.test={test}",
        "data.label_column=category",
        "model.name=minilm-l6",
        "model.max_length=48",
        "train.batch_size=16",
        f"output_dir={out}",
        f"name={name}",
        *extra,
    ]


@pytest.fixture(scope="module")
def banking_run(banking_subset: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    train, test = banking_subset
    out = tmp_path_factory.mktemp("runs")
    # 0.0002 rather than 2e-4: PyYAML reads 2e-4 as a string (see test_config's xfail).
    proc = tunelab_cli(
        "train",
        *train_overrides(
            train, test, out, "b77", "method=full", "train.epochs=3", "train.learning_rate=0.0002"
        ),
        "-q",
        cwd=out,
    )
    run = out / "b77"
    assert f"run: {run}" in proc.stdout
    assert re.search(r"test \(200 rows\):\n\s+accuracy\s+\d+\.\d\d%", proc.stdout), proc.stdout
    return run


def test_train_reaches_far_above_the_majority_class(banking_run: Path) -> None:
    summary = json.loads((banking_run / "run.json").read_text(encoding="utf-8"))
    metrics = json.loads((banking_run / "metrics.json").read_text(encoding="utf-8"))
    assert summary["status"] == "finished" and summary["model_source"] == "bundled"
    assert summary["num_labels"] == N_INTENTS
    assert summary["rows"] == {"train": 360, "dev": 40, "test": 200}
    accuracy = metrics["test"]["accuracy"]
    print(f"BANKING77 {N_INTENTS}-intent subset, full fine-tuning: test accuracy {accuracy:.3f}")
    assert accuracy >= 0.5, f"test accuracy {accuracy:.3f}; the majority class is 0.05"
    assert (banking_run / "weights" / "model.safetensors").is_file()
    assert not list(banking_run.parent.glob("*.partial"))


def test_eval_on_the_test_file(banking_run: Path, banking_subset: tuple[Path, Path]) -> None:
    test = banking_subset[1]
    proc = tunelab_cli("eval", str(banking_run), "--data", str(test), cwd=banking_run.parent)
    match = re.search(r"accuracy\s+(\d+\.\d\d)%", proc.stdout)
    assert match, proc.stdout
    saved = json.loads((banking_run / "metrics.json").read_text(encoding="utf-8"))["test"]["accuracy"]
    assert float(match.group(1)) == pytest.approx(100 * saved, abs=0.01)
    assert (banking_run / "evals" / "test" / "report.html").is_file()
    assert f"{test} (200 rows):" in proc.stdout


def test_predict_prints_json(banking_run: Path) -> None:
    proc = tunelab_cli(
        "predict", str(banking_run), CARD_TEXT, "--json", "--top-k", "5", cwd=banking_run.parent
    )
    result = json.loads(proc.stdout.strip().splitlines()[0])
    assert result["text"] == CARD_TEXT
    assert {"label", "score", "top_k"} <= set(result)
    assert 0 < result["score"] <= 1 and len(result["top_k"]) == 5
    assert "card_arrival" in [t["label"] for t in result["top_k"]]


def test_predict_file(banking_run: Path, banking_subset: tuple[Path, Path], tmp_path: Path) -> None:
    test = banking_subset[1]
    target = tmp_path / "predictions.jsonl"
    proc = tunelab_cli(
        "predict", str(banking_run), "--input", str(test), "--output", str(target), cwd=tmp_path
    )
    assert "wrote 200 predictions" in proc.stdout
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    truth = pd.read_csv(test)["category"].tolist()
    assert len(rows) == len(truth) == 200
    hits = sum(r["label"] == t for r, t in zip(rows, truth, strict=True))
    saved = json.loads((banking_run / "metrics.json").read_text(encoding="utf-8"))["test"]["accuracy"]
    assert hits / len(truth) == pytest.approx(saved, abs=1e-9)


@pytest.mark.slow
def test_lora_on_the_subset(banking_subset: tuple[Path, Path], tmp_path: Path) -> None:
    train, test = banking_subset
    proc = tunelab_cli(
        "train",
        *train_overrides(train, test, tmp_path, "lora", "method=lora", "train.epochs=8"),
        "-q",
        cwd=tmp_path,
    )
    run = tmp_path / "lora"
    assert f"run: {run}" in proc.stdout
    weights = {p.name for p in (run / "weights").iterdir()}
    assert "adapter_model.safetensors" in weights and "model.safetensors" not in weights
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert summary["trainable_parameters"] * 20 < summary["total_parameters"]
    accuracy = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["test"]["accuracy"]
    print(f"BANKING77 {N_INTENTS}-intent subset, LoRA: test accuracy {accuracy:.3f}")
    assert accuracy >= 0.5, f"test accuracy {accuracy:.3f}; the majority class is 0.05"
    proc = tunelab_cli("predict", str(run), CARD_TEXT, "--json", cwd=tmp_path)
    assert {"label", "score", "top_k"} <= set(json.loads(proc.stdout.splitlines()[0]))


@pytest.mark.slow
def test_financial_phrasebank_as_shipped(shared_data: Path, tmp_path: Path) -> None:
    """The original file: '@'-separated, latin-1, no header; one short epoch with the bundled model."""
    source = shared_data / "financial_phrasebank" / "FinancialPhraseBank-v1.0" / "Sentences_AllAgree.txt"
    proc = tunelab_cli(
        "train",
        f"data.train={source}",
        "data.separator=@",
        "data.encoding=latin-1",
        "data.header=false",
        "data.column_names=[sentence, label]",
        "data.text_column=sentence",
        "model.name=minilm-l6",
        "model.max_length=48",
        "train.epochs=1",
        "train.batch_size=32",
        "train.learning_rate=0.0001",
        f"output_dir={tmp_path}",
        "name=fpb",
        "-q",
        cwd=tmp_path,
    )
    run = tmp_path / "fpb"
    assert f"run: {run}" in proc.stdout
    labels = json.loads((run / "labels.json").read_text(encoding="utf-8"))["labels"]
    assert labels == ["negative", "neutral", "positive"]
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert summary["rows"]["train"] + summary["rows"]["dev"] == 2264
    accuracy = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["dev"]["accuracy"]
    print(f"Financial PhraseBank (all agree), 1 epoch: dev accuracy {accuracy:.3f}")
    # Neutral is 61% of the rows; one epoch measured 0.952 (2026-12-06, seeded): the gate leaves five
    # points for another CPU's arithmetic, and a model that learned nothing (0.61-0.65) fails it.
    assert accuracy > 0.90
