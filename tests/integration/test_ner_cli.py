"""NER end to end through the CLI on a CoNLL-2003 subset with the bundled MiniLM.

The first ``TRAIN_SENTENCES`` sentences of ``../shared/data/conll2003/train.txt`` (``-DOCSTART-``
lines kept: the reader skips them), ``DEV_SENTENCES`` of ``valid.txt`` to select the checkpoint on,
``TEST_SENTENCES`` of ``test.txt``. The trivial tagger the model must beat by far is the classic
CoNLL baseline: each word gets the tag it had most often in training (``O`` if unseen), which
finds every entity that was seen verbatim; an all-``O`` tagger scores 0.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from cli_runner import tunelab_cli  # tests/integration/cli_runner.py

from tunelab.tasks.token_classification.reading import read_conll

pytestmark = [pytest.mark.integration, pytest.mark.plots]  # a user's flow, reports with their PNGs

TRAIN_SENTENCES = 800
DEV_SENTENCES = 200
TEST_SENTENCES = 400


def sentences(path: Path) -> list[list[tuple[str, str]]]:
    """(word, tag) per sentence of a CoNLL file, as tunelab reads it (``-DOCSTART-`` dropped)."""
    return [list(zip(s.tokens, s.tags, strict=True)) for s in read_conll(path)]


def write(path: Path, sents: list[list[tuple[str, str]]]) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in sents) + "\n", encoding="utf-8")
    return path


def most_frequent_tag_f1(train: list[list[tuple[str, str]]], test: list[list[tuple[str, str]]]) -> float:
    """Entity F1 (seqeval, strict IOB2) of tagging each word with its most frequent training tag."""
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    from tunelab.tasks.token_classification.reading import to_iob2

    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for sent in train:
        for word, tag in sent:
            counts[word][tag] += 1
    gold = [[t for _, t in s] for s in test]
    # A word-by-word guess can leave an I- without its B-: repaired as the model's output is.
    pred = [to_iob2([counts[w].most_common(1)[0][0] if w in counts else "O" for w, _ in s]) for s in test]
    return float(f1_score(gold, pred, mode="strict", scheme=IOB2))


@pytest.fixture(scope="module")
def conll_subset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    source = shared_data / "conll2003"
    folder = tmp_path_factory.mktemp("conll2003")
    return {
        "train": write(folder / "train.txt", sentences(source / "train.txt")[:TRAIN_SENTENCES]),
        "dev": write(folder / "dev.txt", sentences(source / "valid.txt")[:DEV_SENTENCES]),
        "test": write(folder / "test.txt", sentences(source / "test.txt")[:TEST_SENTENCES]),
    }


@pytest.fixture(scope="module")
def ner_run(conll_subset: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    proc = tunelab_cli(
        "train",
        "data.task=token_classification",
        f"data.train={conll_subset['train']}",
        f"data.dev={conll_subset['dev']}",
        f"data.test={conll_subset['test']}",
        "data.format=conll",
        "model.name=minilm-l6",
        "model.max_length=64",
        "train.epochs=3",
        "train.batch_size=16",
        "train.learning_rate=0.0002",
        f"output_dir={out}",
        "name=conll",
        "-q",
        cwd=out,
    )
    assert f"test ({TEST_SENTENCES} rows):\n  entity_f1" in proc.stdout, proc.stdout
    return out / "conll"


def test_ner_reaches_far_above_the_most_frequent_tag_baseline(
    ner_run: Path, conll_subset: dict[str, Path]
) -> None:
    summary = json.loads((ner_run / "run.json").read_text(encoding="utf-8"))
    metrics = json.loads((ner_run / "metrics.json").read_text(encoding="utf-8"))["test"]
    assert summary["task"] == "token_classification" and summary["model_source"] == "bundled"
    assert list(summary["best_dev_metric"]) == ["entity_f1"]
    baseline = most_frequent_tag_f1(sentences(conll_subset["train"]), sentences(conll_subset["test"]))
    f1 = metrics["entity_f1"]
    print(f"CoNLL-2003 subset: test entity F1 {f1:.3f}, most-frequent-tag baseline {baseline:.3f}")
    assert f1 > max(baseline + 0.3, 0.5), f"entity F1 {f1:.3f}; the baseline scores {baseline:.3f}"
    assert {row["label"] for row in metrics["per_type"]} == {"LOC", "MISC", "ORG", "PER"}


def test_predict_and_eval_on_the_run(ner_run: Path, conll_subset: dict[str, Path], tmp_path: Path) -> None:
    text = "Peter Blackburn said in Brussels that the European Commission will meet on Monday ."
    proc = tunelab_cli("predict", str(ner_run), text, "--json", cwd=tmp_path)
    result = json.loads(proc.stdout.strip().splitlines()[0])
    found = {(e["label"], e["text"]) for e in result["entities"]}
    assert ("PER", "Peter Blackburn") in found and ("LOC", "Brussels") in found, found
    assert all(text[e["start"] : e["end"]] == e["text"] for e in result["entities"])
    proc = tunelab_cli("eval", str(ner_run), "--data", str(conll_subset["test"]), cwd=tmp_path)
    saved = json.loads((ner_run / "metrics.json").read_text(encoding="utf-8"))["test"]["entity_f1"]
    assert f"entity_f1    {100 * saved:.2f}%" in proc.stdout, proc.stdout
