"""Review fixes for zero-shot prediction and continued runs' rehearsal totals (third round)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.config import ContinualConfig
from tunelab.data.dataset import Dataset
from tunelab.errors import ConfigError, ModelNotFoundError
from tunelab.inference.forward import softmax
from tunelab.train.continual import short_sample_note, stratified_sample

DESCRIPTIONS = {"sports": "football match goal", "food": "pizza cheese dinner", "weather": "rain snow storm"}
TEXTS = ["football match today", "pizza for dinner", "rain and snow"]
LONG_TEXT = "the card I ordered last month has still not arrived " * 6  # over 255 bytes, no slash


@pytest.fixture
def labels_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "labels.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in DESCRIPTIONS.items()), encoding="utf-8")
    return path


# -- a text too long for a path where a run folder may go ------------------------------------------


def test_zero_shot_predicts_a_text_too_long_for_a_file_name(
    tiny_bert: Path, labels_yaml: Path, capsys
) -> None:
    """The first text was probed as a run folder: "unexpected OSError: [Errno 36] File name too long"."""
    assert len(LONG_TEXT.encode()) > 255
    argv = ["predict", "--zero-shot", str(labels_yaml), "--encoder", str(tiny_bert), LONG_TEXT, "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["text"] == LONG_TEXT


def test_a_text_too_long_for_a_file_name_where_the_run_goes_is_one_line(capsys) -> None:
    """Without --zero-shot: the run was left out, which the line says (was "unexpected OSError")."""
    assert main(["predict", LONG_TEXT, "another text"]) == 2
    err = capsys.readouterr().err
    assert "not a run folder (too long for a path); give the run folder first" in err
    assert "unexpected" not in err and len(err.strip().splitlines()) == 1


# -- rehearsal_total with a label that has fewer rows than its share: noted, the sample unchanged -------


def _data(counts: list[int]) -> Dataset:
    labels = [label for label, n in enumerate(counts) for _ in range(n)]
    return Dataset(texts=[f"t{i}" for i in range(len(labels))], text_pairs=None, labels=labels, source="x")


def test_a_short_labels_share_is_not_handed_on_so_begun_runs_resume() -> None:
    """Handing a short label's share to the others changed the sample of continued runs begun
    before, whose resume compares it with run.json ("the data changed"); the short total is noted
    by the continued run instead (the test below)."""
    data = _data([24, 4, 4])
    picked = stratified_sample(data, per_class=50, total=24, seed=3)
    assert Counter(data.labels[i] for i in picked) == {0: 8, 1: 4, 2: 4}


@pytest.mark.parametrize(("counts", "total", "seed"), [([20, 7, 9], 18, 1), ([30, 30, 30, 30], 50, 7)])
def test_a_total_every_label_can_fill_samples_the_same_rows_as_before(
    counts: list[int], total: int, seed: int
) -> None:
    """The even split and its seeded draws, as stored before the fix (continued runs replay them)."""
    data = _data(counts)
    rng = random.Random(seed)
    keys = list(range(len(counts)))
    base, extra = divmod(total, len(keys))
    bonus = set(rng.sample(keys, extra))
    groups = {k: [i for i, label in enumerate(data.labels) if label == k] for k in keys}
    before = sorted(i for k in keys for i in rng.sample(groups[k], base + (k in bonus)))
    assert stratified_sample(data, per_class=50, total=total, seed=seed) == before


def test_a_previous_run_that_stored_fewer_rows_than_the_total_is_noted() -> None:
    rows = _data([10, 6])
    note = short_sample_note(rows, ContinualConfig(rehearsal_total=24))
    assert note == (
        "rehearsal: the previous run stored 16 rows, fewer than continual.rehearsal_total=24 asks for; "
        "what it stored is replayed"
    )
    assert short_sample_note(rows, ContinualConfig(rehearsal_total=16)) is None


# -- --nli given a tunelab run trained on NLI pairs -------------------------------------------------


def train_nli_run(tiny_bert: Path, folder: Path, tiny_overrides, *extra: str) -> Path:
    """A tiny text-pair run (premise, hypothesis) with labels entailment, neutral, contradiction."""
    rng = random.Random(0)
    words = ["football", "pizza", "rain", "cheese", "goal", "snow", "match", "dinner"]
    rows = [
        {
            "premise": " ".join(rng.sample(words, 3)),
            "hypothesis": " ".join(rng.sample(words, 2)),
            "label": ["entailment", "neutral", "contradiction"][i % 3],
        }
        for i in range(24)
    ]
    pd.DataFrame(rows).to_csv(folder / "nli.csv", index=False)
    overrides = tiny_overrides(
        tiny_bert, folder / "nli.csv", None, folder / "runs", "name=nli", "data.text_column=premise",
        "data.text_pair_column=hypothesis", *extra, epochs=1,
    )  # fmt: skip
    return tunelab.train(overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def nli_run(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory, tiny_overrides) -> Path:
    return train_nli_run(tiny_bert, tmp_path_factory.mktemp("nli-run"), tiny_overrides)


def test_nli_takes_a_tunelab_run_trained_on_nli_pairs(
    nli_run: Path, labels_yaml: Path, tmp_path: Path, capsys
) -> None:
    """It was "no NLI model there (Couldn't instantiate the backend tokenizer ...)", and RUN/weights
    loaded with a 5-token tokenizer that read every word as [UNK]."""
    run = tunelab.load(nli_run)
    entail = run.labels.names.index("entailment")
    hypotheses = [f"This example is {d}." for d in DESCRIPTIONS.values()]
    # the run's own entailment logit of each (text, hypothesis), as `predict --pair` reads them
    expected = np.stack([run.logits([t] * len(hypotheses), hypotheses)[:, entail] for t in TEXTS])
    for nli in (nli_run, nli_run / "weights"):
        predictor = tunelab.zero_shot_predictor(DESCRIPTIONS, nli=str(nli))
        ours = softmax(predictor.logits(TEXTS))
        np.testing.assert_allclose(ours, softmax(expected), atol=1e-5)
    argv = ["predict", "--zero-shot", str(labels_yaml), "--nli", str(nli_run), TEXTS[0], "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["text"] == TEXTS[0]
    built = tunelab.zero_shot(DESCRIPTIONS, tmp_path / "zs", nli=str(nli_run)).path
    np.testing.assert_allclose(softmax(tunelab.load(built).logits(TEXTS)), ours, atol=1e-5)


def test_nli_reads_a_run_s_text_only_up_to_the_run_s_own_max_length(
    tiny_bert: Path, tmp_path: Path, tiny_overrides
) -> None:
    """A run trained with model.max_length=16 read (premise, hypothesis) up to its positions (512):
    far longer pairs than it was trained on. Now the premise is cut to fit 16 tokens with the
    hypothesis, so what follows the first 16 words (one token each) changes nothing."""
    run = train_nli_run(tiny_bert, tmp_path, tiny_overrides, "model.max_length=16")
    words = ["football", "pizza", "rain", "cheese", "goal", "snow", "match", "dinner"]
    tokenizer = tunelab.load(run).tokenizer
    assert all(len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1 for w in words)
    long = " ".join(words * 8)  # 64 tokens
    cut = " ".join((words * 8)[:16])
    other_start = " ".join(words[::-1] + words * 7)  # the same length, other first words
    predictor = tunelab.zero_shot_predictor(DESCRIPTIONS, nli=str(run))
    got = predictor.logits([long, cut, other_start])
    np.testing.assert_allclose(got[0], got[1], atol=1e-5)
    # and the premise is read: other first words give other logits
    assert not np.allclose(got[0], got[2], atol=1e-4)


def test_nli_refuses_a_run_with_no_trained_model_in_one_line(tiny_bert: Path, tmp_path: Path) -> None:
    zs = tunelab.zero_shot(DESCRIPTIONS, tmp_path / "zs", encoder=str(tiny_bert)).path
    with pytest.raises(ModelNotFoundError, match=r"a zeroshot run has no trained NLI model"):
        tunelab.zero_shot_predictor(DESCRIPTIONS, nli=str(zs))


def test_nli_refuses_a_run_trained_on_single_texts(tiny_bert: Path, tmp_path: Path, tiny_overrides) -> None:
    """It has an entailment label, but never saw a (premise, hypothesis) pair."""
    rows = [
        {"text": f"word {i}", "label": ["entailment", "neutral", "contradiction"][i % 3]} for i in range(12)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "single.csv", index=False)
    overrides = tiny_overrides(
        tiny_bert, tmp_path / "single.csv", None, tmp_path / "runs", "name=one", "data.dev_size=0", epochs=1
    )
    run = tunelab.train(overrides=overrides, show_progress=False).run_dir
    with pytest.raises(
        ModelNotFoundError, match=r"a run trained on single texts, not on \(premise, hypothesis\)"
    ):
        tunelab.zero_shot_predictor(DESCRIPTIONS, nli=str(run))


# -- a label file or --out too long for a file name ------------------------------------------------


def test_a_label_file_too_long_for_a_file_name_is_one_line(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"a{300}\.yaml: file name too long; use a shorter name$"):
        tunelab.zero_shot_predictor(tmp_path / f"{'a' * 300}.yaml", encoder=str(tiny_bert))


def test_an_out_too_long_for_a_file_name_is_one_line(tiny_bert: Path, tmp_path: Path) -> None:
    long_name = "a" * 300
    with pytest.raises(ConfigError, match=rf"^--out .*{long_name}: file name too long; use a shorter name$"):
        tunelab.zero_shot(DESCRIPTIONS, tmp_path / long_name, encoder=str(tiny_bert))
