"""Behaviours of core helpers that a mutation review found untested: macro averages over the labels
seen, temperature fitting with one wrong row, carve sizes, rehearsal quotas, continuing a continued
run, NER error kinds, magnitude pruning and the few-shot draw."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tunelab
from tunelab.config import DataConfig
from tunelab.data import LabelMap, load_splits
from tunelab.data.dataset import Dataset
from tunelab.data.shots import sample_shots
from tunelab.evaluate import compute_metrics
from tunelab.evaluate.calibration import fit_temperature
from tunelab.tasks.token_classification.metrics import error_analysis
from tunelab.train.continual import stratified_sample


def test_macro_averages_run_over_labels_in_gold_or_predictions() -> None:
    """compute_metrics docstring: "Macro averages run over the labels that occur in ``y_true`` or
    ``y_pred``": a label only predicted (never gold) counts, with precision 0."""
    m = compute_metrics([0, 0, 1, 1], [0, 2, 1, 1], ["a", "b", "c"])
    # a: p=1 r=.5 f=2/3; b: p=1 r=1 f=1; c (predicted only): p=0 r=0 f=0; averaged over 3 labels.
    assert m["macro_precision"] == pytest.approx(2 / 3)
    assert m["macro_recall"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1) / 3)


def test_temperature_is_fitted_when_a_single_row_is_wrong() -> None:
    """fit_temperature docstring: only "when every row is predicted right" is T = 1 kept and
    ``fitted`` False; one wrong row among many is fitted, and overconfident logits get T > 1."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=40)
    logits = np.zeros((40, 2))
    logits[np.arange(40), labels] = 6.0  # ~99.8% confident on every row
    logits[0] = logits[0][::-1]  # ... and wrong on one of them: 97.5% right
    cal = fit_temperature(logits, labels)
    assert cal.fitted
    assert cal.temperature > 1.0
    assert cal.nll_after < cal.nll_before


def test_dev_size_is_a_fraction_of_the_whole_training_file_when_test_is_carved_too(tmp_path: Path) -> None:
    """_carve docstring: "Hold out ``size`` of the whole training file"; README: ``dev_size`` and
    ``test_size`` are fractions of train. 100 rows at 0.1/0.2 give 10 dev and 20 test rows."""
    rows = [(f"text number {i}", "pos" if i % 2 else "neg") for i in range(100)]
    path = tmp_path / "train.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    s = load_splits(DataConfig(train=str(path), dev_size=0.1, test_size=0.2))
    assert s.dev is not None and s.test is not None
    assert (len(s.train), len(s.dev), len(s.test)) == (70, 10, 20)


def test_multi_label_rehearsal_keeps_at_most_per_class_rows_of_each_label() -> None:
    """stratified_sample docstring: "a seeded sample with up to ``per_class`` rows of each label";
    with plenty of rows each label gets exactly its quota, not one more."""
    labels = [[0]] * 100 + [[1]] * 100
    data = Dataset(texts=[str(i) for i in range(200)], text_pairs=None, labels=labels, source="x")
    picked = stratified_sample(data, per_class=50, total=None, seed=3)
    held = Counter(label for i in picked for label in labels[i])
    assert held == {0: 50, 1: 50}


def test_ner_adjacent_spans_do_not_overlap_so_they_are_missed_and_spurious() -> None:
    """ERROR_KINDS: "a predicted entity overlapping no gold entity is spurious"; spans are end
    exclusive (``entities``), so a prediction starting right where the gold one ends does not overlap
    it: the gold entity is missed, not found with a wrong boundary."""
    errors = error_analysis(
        [["B-PER", "I-PER", "O", "O"]], [["O", "O", "B-PER", "O"]], [["a", "b", "c", "d"]]
    )
    counts = errors["counts"]
    assert counts["missed"] == 1 and counts["spurious"] == 1
    assert counts["wrong boundary"] == 0


def test_magnitude_pruning_zeroes_the_smallest_weights_of_the_tiny_bert(tiny_bert: Path) -> None:
    """README (--prune-method magnitude): "zero the fraction F of the smallest weights in the
    encoder's linear layers", one global ranking (prune.py): every weight cut is no larger in
    magnitude than every weight kept."""
    from torch import nn

    from tunelab.compress.prune import prune_magnitude
    from tunelab.models import build_classifier

    model = build_classifier(tiny_bert, ["a", "b"], pooling="mean", seed=0).eval()
    layers = [m for m in model.base_model.modules() if isinstance(m, nn.Linear)]
    before = [m.weight.detach().abs().clone() for m in layers]
    prune_magnitude(model, 0.5)
    cut = [b[m.weight == 0] for b, m in zip(before, layers, strict=True)]
    kept = [b[m.weight != 0] for b, m in zip(before, layers, strict=True)]
    largest_cut = max(float(c.max()) for c in cut if c.numel())
    smallest_kept = min(float(k.min()) for k in kept if k.numel())
    assert largest_cut <= smallest_kept


def _shots_data(names_rows: dict[str, int]) -> tuple[Dataset, LabelMap]:
    labels = LabelMap(sorted(names_rows), "single_label")
    texts, ids = [], []
    for name, n in names_rows.items():
        for i in range(n):
            texts.append(f"{name} text {i}")
            ids.append(labels.names.index(name))
    # Interleave the labels so that file order is not grouped by label.
    order = sorted(range(len(texts)), key=lambda i: (i * 7919) % len(texts))
    return Dataset(
        texts=[texts[i] for i in order], text_pairs=None, labels=[ids[i] for i in order], source="x"
    ), labels


def _texts_of(data: Dataset, labels: LabelMap, name: str) -> list[str]:
    return [t for t, y in zip(data.texts, data.labels or [], strict=True) if labels.names[y] == name]


def test_adding_a_label_does_not_change_the_rows_drawn_for_the_others() -> None:
    """sample_shots docstring: "each label is drawn with its own generator seeded from ``seed`` and
    its name, so adding a label to the file does not change the rows drawn for the others"."""
    data, labels = _shots_data({"mid": 30, "zed": 30})
    # The same file with rows of a label that sorts first (so is drawn first) spread among its rows.
    grown_labels = LabelMap(["aaa", "mid", "zed"], "single_label")
    texts: list[str] = []
    ids: list[int] = []
    for i, (text, label) in enumerate(zip(data.texts, data.labels or [], strict=True)):
        if i % 2 == 0:
            texts.append(f"aaa text {i}")
            ids.append(0)
        texts.append(text)
        ids.append(grown_labels.names.index(labels.names[label]))
    grown = Dataset(texts=texts, text_pairs=None, labels=ids, source="x")
    before, _ = sample_shots(data, labels, 5, seed=1)
    after, _ = sample_shots(grown, grown_labels, 5, seed=1)
    assert Counter(after.labels or []) == {0: 5, 1: 5, 2: 5}
    for name in ("mid", "zed"):
        assert _texts_of(after, grown_labels, name) == _texts_of(before, labels, name)


def test_a_label_with_exactly_n_rows_is_not_noted_as_short() -> None:
    """sample_shots: "a label with fewer keeps all of them", noted as "fewer than N training rows";
    a label with exactly N rows is not fewer, and gets no note."""
    data, labels = _shots_data({"big": 20, "exact": 5, "small": 3})
    sampled, notes = sample_shots(data, labels, 5, seed=0)
    assert Counter(labels.names[y] for y in sampled.labels or []) == {"big": 5, "exact": 5, "small": 3}
    short = [n for n in notes if "fewer than" in n]
    assert len(short) == 1 and "small (3)" in short[0] and "exact" not in short[0]


def test_the_drawn_rows_come_back_in_file_order() -> None:
    """sample_shots docstring: "The sampled rows (in file order)"."""
    data, labels = _shots_data({"one": 30, "two": 30, "three": 30})
    sampled, _ = sample_shots(data, labels, 8, seed=4)
    positions = [data.texts.index(t) for t in sampled.texts]
    assert len(positions) == 24 and positions == sorted(positions)


# Continuing a continued run: old ids stay through two continuations.
MUSIC_WORDS = ["guitar", "song", "drums", "concert", "melody", "piano", "band", "album"]


def _music_texts(n: int) -> list[str]:
    import random

    rng = random.Random("music")
    return [" ".join([*rng.sample(MUSIC_WORDS, 3), "the", "very"]) for _ in range(n)]


def test_a_continued_run_can_be_continued_again_keeping_every_label_id(
    tiny_bert: Path, tmp_path: Path, text_maker, tiny_overrides
) -> None:
    """with_previous_labels docstring: without the old order "the new label set would be sorted
    afresh and the old ids move"; README ``data.labels``: "a list keeps those ids first, ``train
    --from`` sets it". Continuing twice gives [*OLD, NEW, NEWER], each run keeping earlier ids."""
    old, new, newer = ["sports", "weather"], "food", "music"

    def csv(name: str, rows: list[tuple[str, str]]) -> Path:
        path = tmp_path / f"{name}.csv"
        pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
        return path

    first_csv = csv("first", [(t, label) for label in old for t in text_maker(label, 10, 1)])
    overrides = tiny_overrides(tiny_bert, first_csv, None, tmp_path / "runs", "name=first", epochs=0.5)
    first = tunelab.train(overrides=[*overrides, "continual.rehearsal=3"], show_progress=False)

    def continue_from(run: Path, rows: list[tuple[str, str]], name: str) -> Path:
        data = csv(name, rows)
        extra = [f"data.train={data}", f"output_dir={tmp_path / 'runs'}", f"name={name}", "train.epochs=0.5"]
        return tunelab.train(from_run=run, overrides=extra, show_progress=False).run_dir

    second = continue_from(first.run_dir, [(t, new) for t in text_maker(new, 10, 2)], "second")
    assert LabelMap.load(second / "labels.json").names == [*old, new]
    third = continue_from(second, [(t, newer) for t in _music_texts(10)], "third")
    assert LabelMap.load(third / "labels.json").names == [*old, new, newer]
