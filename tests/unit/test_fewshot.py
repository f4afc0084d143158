"""Few-shot training: ``data.shots`` sampling per label and the ``setfit`` method on the tiny model."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import tunelab
from tunelab.config import DataConfig
from tunelab.data.splits import read_splits
from tunelab.errors import ConfigError, DataError
from tunelab.methods import get_method
from tunelab.methods.setfit.pairs import draw_label_batches, sample_pairs


def _shots(train: Path, shots: int, seed: int | None, **extra: Any):
    cfg = DataConfig(train=str(train), dev_size=0.0, shots=shots, shots_seed=seed, **extra)
    return read_splits(cfg, multi_label=False)


def _rows(splits) -> list[tuple[str, int]]:
    return list(zip(splits.train.texts, splits.train.labels, strict=True))


def test_shots_keeps_n_rows_of_every_label_and_the_seed_decides_which(train_csv: Path) -> None:
    a, again, other = _shots(train_csv, 5, 1), _shots(train_csv, 5, 1), _shots(train_csv, 5, 2)
    assert Counter(a.train.labels) == {0: 5, 1: 5, 2: 5}  # 20 rows per label in the file
    assert _rows(a) == _rows(again)
    assert Counter(other.train.labels) == {0: 5, 1: 5, 2: 5}
    assert set(_rows(a)) != set(_rows(other))
    full = set(_rows(_shots(train_csv, 1000, 1)))
    assert set(_rows(a)) <= full and len(full) == 60  # a sample of the file's rows, nothing made up


def test_shots_keeps_all_rows_of_a_short_label_and_says_so(tmp_path: Path) -> None:
    rows = [(f"a text {i}", "big") for i in range(12)] + [(f"b text {i}", "small") for i in range(3)]
    path = tmp_path / "train.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    splits = _shots(path, 8, None)
    assert Counter(splits.labels.names[i] for i in splits.train.labels) == {"big": 8, "small": 3}
    assert any("small (3)" in note and "keep all" in note for note in splits.notes)


def test_shots_samples_after_the_dev_split_so_dev_does_not_depend_on_the_draw(train_csv: Path) -> None:
    one = read_splits(
        DataConfig(train=str(train_csv), dev_size=0.2, shots=4, shots_seed=1), multi_label=False
    )
    two = read_splits(
        DataConfig(train=str(train_csv), dev_size=0.2, shots=4, shots_seed=2), multi_label=False
    )
    assert one.dev.texts == two.dev.texts
    assert not set(one.train.texts) & set(one.dev.texts)


def test_shots_is_refused_for_multi_label_and_bad_values(train_csv: Path) -> None:
    with pytest.raises(DataError, match=r"data\.shots"):
        read_splits(DataConfig(train=str(train_csv), dev_size=0.0, shots=4), multi_label=True)
    with pytest.raises(ConfigError, match="shots=0"):
        DataConfig(shots=0)
    with pytest.raises(ConfigError, match="shots=True"):  # a YAML `shots: yes` is not one shot
        DataConfig(shots=True)


def test_pairs_grow_with_rows_not_with_labels_squared() -> None:
    labels = [label for label in range(77) for _ in range(16)]  # BANKING77 at 16 per label
    pairs = sample_pairs(labels, positives=3, negatives=5, max_pairs=None, seed=0)
    assert len(pairs) == len(labels) * 8
    assert all((labels[p.a] == labels[p.b]) == (p.similar == 1.0) and p.a != p.b for p in pairs)
    assert sum(p.similar for p in pairs) == len(labels) * 3
    capped = sample_pairs(labels, positives=3, negatives=5, max_pairs=1000, seed=0)
    assert len(capped) == 1000 and 0 < sum(p.similar for p in capped) < 1000
    assert sample_pairs(labels, positives=3, negatives=5, max_pairs=None, seed=0) == pairs
    assert sample_pairs(labels, positives=3, negatives=5, max_pairs=None, seed=1) != pairs


def test_a_label_with_one_row_gets_no_positive_pair() -> None:
    pairs = sample_pairs([0, 1, 1, 1], positives=2, negatives=2, max_pairs=None, seed=0)
    assert not [p for p in pairs if p.similar == 1.0 and 0 in (p.a, p.b)]
    assert len([p for p in pairs if p.a == 0]) == 2  # its two negatives


def test_setfit_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="positives=0"):
        get_method("setfit").parse_options({"positives": 0})
    with pytest.raises(ConfigError, match=r"loss='cos'.*cosine, mnrl, triplet"):
        get_method("setfit").parse_options({"loss": "cos"})
    with pytest.raises(ConfigError, match=r"batch_size=3 with loss=triplet \(use 4 or more\)"):
        get_method("setfit").parse_options({"loss": "triplet", "batch_size": 3})
    assert get_method("setfit").parse_options({"loss": "mnrl", "batch_size": 2}).batch_size == 2


def test_label_batches_hold_distinct_labels_each_with_its_rows() -> None:
    labels = [label for label in range(77) for _ in range(8)] + [77]  # one label with a single row
    batches = draw_label_batches(labels, size=32, per_label=2, steps=50, seed=0)
    assert len(batches) == 50
    for rows in batches:
        assert len(rows) == 32
        firsts = [labels[r] for r in rows[0::2]]
        assert [labels[r] for r in rows[1::2]] == firsts  # anchor and positive share a label
        assert len(set(firsts)) == 16  # no label twice: its rows would be counted as negatives
        assert len(set(rows)) == 32 and 77 not in firsts
    assert draw_label_batches(labels, size=32, per_label=2, steps=50, seed=0) == batches
    assert draw_label_batches(labels, size=32, per_label=2, steps=50, seed=1) != batches
    fours = draw_label_batches(labels, size=32, per_label=4, steps=3, seed=0)
    assert all(len({labels[r] for r in rows}) == 8 for rows in fours)
    # A label with 2-3 rows takes part with all of them (a few-shot run keeps a short label whole).
    short = [0] * 8 + [1] * 8 + [2] * 3 + [3] * 2
    seen = Counter(
        labels_in
        for rows in draw_label_batches(short, size=32, per_label=4, steps=20, seed=0)
        for labels_in in Counter(short[r] for r in rows).items()
    )
    assert {label for label, _ in seen} == {0, 1, 2, 3} and {n for (label, n) in seen if label >= 2} == {3, 2}
    assert draw_label_batches([0, 0, 1], size=32, per_label=2, steps=3, seed=0) == []  # one usable label


@pytest.fixture(scope="module")
def setfit_run(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory: Any
) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("setfit-runs")
    overrides = tiny_overrides(
        tiny_bert,
        train,
        test,
        out,
        "name=sf",
        "method=setfit",
        "method.learning_rate=0.005",  # the tiny random encoder needs large steps
        "data.shots=8",
        "data.dev_size=0",
        epochs=1,
    )
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


def test_setfit_tunes_the_encoder_and_the_run_reloads_and_predicts(
    setfit_run: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    summary = json.loads((setfit_run / "run.json").read_text(encoding="utf-8"))
    assert summary["rows"]["train"] == 24  # 8 per label, 3 labels
    note = next(n for n in summary["notes"] if n.startswith("setfit: contrastive stage on 192 pairs"))
    assert "capped" not in note  # max_pairs (20000 by default) cut nothing
    log = (setfit_run / "logs" / "train.log").read_text(encoding="utf-8")
    assert "few-shot: 8 rows per label" in log and "setfit: contrastive stage" in log
    # The contrastive stage moved the encoder (the loop after it trains the head only).
    base = load_file(str(tiny_bert / "model.safetensors"))
    tuned = load_file(str(setfit_run / "weights" / "model.safetensors"))
    key = next(k for k in tuned if k.endswith("encoder.layer.0.attention.self.query.weight"))
    base_key = next(k for k in base if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert not torch.equal(tuned[key], base[base_key])
    # Reloaded from the folder, the model predicts what the run scored on test.
    test = pd.read_csv(labelled_csvs[1])
    predicted = [r["label"] for r in tunelab.load(setfit_run).predict(test["text"].tolist())]
    accuracy = sum(p == t for p, t in zip(predicted, test["label"], strict=True)) / len(test)
    metrics = json.loads((setfit_run / "metrics.json").read_text(encoding="utf-8"))
    assert accuracy == pytest.approx(metrics["test"]["accuracy"])
    assert accuracy > 0.6  # 3 labels: chance is 1/3


@pytest.mark.parametrize("loss", ["mnrl", "triplet"])
def test_setfit_in_batch_losses_tune_the_encoder_in_the_pairs_budget(
    loss: str, tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = labelled_csvs
    overrides = tiny_overrides(
        tiny_bert,
        train,
        test,
        tmp_path,
        "name=sf",
        "method=setfit",
        f"method.loss={loss}",
        "method.learning_rate=0.005",
        "data.shots=8",
        "data.dev_size=0",
        epochs=1,
    )
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    note = next(n for n in summary["notes"] if n.startswith("setfit: contrastive stage"))
    per_label = {"mnrl": 2, "triplet": 4}[loss]
    # 3 labels of 8 rows: every batch holds all 3; 192 pairs / batch 16 = 12 steps
    assert f"loss {loss} on label batches of 3 labels x up to {per_label} rows, 12 steps" in note
    base = load_file(str(tiny_bert / "model.safetensors"))
    tuned = load_file(str(run / "weights" / "model.safetensors"))
    key = next(k for k in tuned if k.endswith("encoder.layer.0.attention.self.query.weight"))
    base_key = next(k for k in base if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert not torch.equal(tuned[key], base[base_key])


def test_an_in_batch_loss_says_which_labels_it_cannot_use(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A label with one row is in no batch of mnrl or triplet (it cannot be its own positive)."""
    train = tmp_path / "train.csv"
    rows = pd.read_csv(labelled_csvs[0])
    pd.concat([rows, pd.DataFrame({"text": ["a lone example"], "label": ["lonely"]})]).to_csv(
        train, index=False
    )
    overrides = tiny_overrides(
        tiny_bert,
        train,
        None,
        tmp_path,
        "name=sf",
        "method=setfit",
        "method.loss=triplet",
        "method.learning_rate=0.005",
        "data.shots=8",
        "data.dev_size=0",
        epochs=1,
    )
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    notes = json.loads((run / "run.json").read_text(encoding="utf-8"))["notes"]
    assert "setfit: 1 label(s) with a single training row take no part in loss triplet" in notes


def test_shots_is_refused_for_token_classification(tagged_jsonls: tuple[Path, Path]) -> None:
    from tunelab.data import load_splits

    cfg = DataConfig(train=str(tagged_jsonls[0]), task="token_classification", shots=4)
    with pytest.raises(DataError, match="classification only"):
        load_splits(cfg)


def test_setfit_on_another_task_is_refused_before_any_data_is_read(tmp_path: Path) -> None:
    """Pairs are drawn by label: multi-label and NER rows were refused only after the data was
    read, the model built and augmentation and self-training had run (``validate`` passed)."""
    from tunelab.config import RunConfig
    from tunelab.preflight import check_run

    for task in ("multi_label", "token_classification"):
        cfg = RunConfig.from_dict(
            {"data": {"train": str(tmp_path / "missing.csv"), "task": task}, "method": {"name": "setfit"}}
        )
        problems = check_run(cfg).problems
        assert "method setfit trains single_label only (pairs are drawn by label" in problems[0]
        assert f"one label per row), not data.task={task}" in problems[0]
    ok = RunConfig.from_dict({"data": {"train": str(tmp_path / "missing.csv")}, "method": {"name": "setfit"}})
    assert not any("method setfit trains" in p for p in check_run(ok).problems)


@pytest.mark.parametrize(("max_pairs", "says"), [(20000, None), (None, None), (10, "capped at 10 (of 48)")])
def test_the_contrastive_note_names_the_cap_only_when_it_cut_pairs(
    tiny_bert: Path, text_maker: Any, max_pairs: int | None, says: str | None
) -> None:
    """max_pairs is set by default: every note said ", capped at 20000", even on 192 pairs."""
    from tunelab.data import LabelMap
    from tunelab.data.dataset import Dataset
    from tunelab.methods.setfit import SetFitConfig
    from tunelab.methods.setfit.contrastive import contrastive_finetune
    from tunelab.models import load_tokenizer
    from tunelab.tasks import get_task

    names = ["food", "sports", "weather"]
    texts = [t for name in names for t in text_maker(name, 4, 3)]
    rows = Dataset(texts, None, [i for i in range(3) for _ in range(4)], source="rows")
    task = get_task("single_label")
    model = task.build_model(tiny_bert, LabelMap(names), pooling="mean", seed=0)
    enc = task.encode(load_tokenizer(tiny_bert), rows, max_length=32)
    options = SetFitConfig(positives=2, negatives=2, max_pairs=max_pairs, epochs=0.01, batch_size=16)
    [note] = contrastive_finetune(model, enc, options, seed=0)
    kept = 10 if max_pairs == 10 else 48  # 12 rows x (2 + 2)
    assert note.startswith(f"setfit: contrastive stage on {kept} pairs"), note
    if says is None:
        assert "capped" not in note, note
    else:
        assert says in note, note
