"""Unit tests for tunelab.evaluate: metrics against hand-computed values, threshold, report files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tunelab.evaluate import TOP_CONFUSIONS_ABOVE, compute_metrics, tune_threshold, write_report

pytestmark = pytest.mark.plots  # these tests read the report's PNGs (tests/conftest.py)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# 3 classes, 6 examples. Confusion matrix (rows true, cols predicted):
#   a: [2, 1, 0]   b: [0, 1, 1]   c: [0, 0, 1]
# a: P=2/2 R=2/3 F1=0.8   b: P=1/2 R=1/2 F1=0.5   c: P=1/2 R=1/1 F1=2/3
LABELS = ["a", "b", "c"]
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_single_label_matches_hand_computed_values():
    m = compute_metrics(Y_TRUE, Y_PRED, LABELS)

    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    # Single-label micro averages all equal accuracy.
    for key in ("micro_precision", "micro_recall", "micro_f1"):
        assert m[key] == pytest.approx(4 / 6)
    assert m["per_class"][0] == {
        "label": "a",
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert [c["support"] for c in m["per_class"]] == [3, 2, 1]
    assert m["top_confusions"] == [
        {"true": "a", "predicted": "b", "count": 1},
        {"true": "b", "predicted": "c", "count": 1},
    ]
    assert "hamming_loss" not in m


def test_single_label_is_plain_json():
    m = compute_metrics(np.array(Y_TRUE), np.array(Y_PRED), LABELS)
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    assert all(type(m[k]) is float for k in ("accuracy", "macro_f1", "micro_f1", "weighted_recall"))


def test_label_absent_from_split_is_listed_but_not_macro_averaged():
    m = compute_metrics(Y_TRUE, Y_PRED, [*LABELS, "d"])

    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # neither in the data nor predicted: no score (it showed as a 0.00 F1 bar, read as a failure)
    assert m["per_class"][3] == {"label": "d", "precision": None, "recall": None, "f1": None, "support": 0}
    assert m["confusion_matrix"][3] == [0, 0, 0, 0]
    # predicted but never in the data: a real 0 precision
    wrong = compute_metrics([0, 1], [0, 3], [*LABELS, "d"])
    assert wrong["per_class"][3] == {"label": "d", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert [row[3] for row in m["confusion_matrix"]] == [0, 0, 0, 0]


def test_top_confusions_sorted_by_count_and_capped_at_20():
    n = 25
    y_true = [i for i in range(n) for _ in range(i + 1)]  # class i has i+1 examples, all wrong
    y_pred = [(i + 1) % n for i in y_true]
    m = compute_metrics(y_true, y_pred, [f"c{i}" for i in range(n)])

    counts = [c["count"] for c in m["top_confusions"]]
    assert len(counts) == 20
    assert counts == sorted(counts, reverse=True)
    assert m["top_confusions"][0] == {"true": "c24", "predicted": "c0", "count": 25}
    assert m["accuracy"] == 0.0


@pytest.mark.parametrize(
    ("y_true", "y_pred", "multi", "match"),
    [
        ([0, 1], [0], False, "examples"),
        ([0, 3], [0, 1], False, "label id 3"),
        ([0.5, 1], [0, 1], False, "integer"),
        ([], [], False, "0 examples"),
        ([[0, 2, 0]], [[0, 1, 0]], True, "0 and 1"),
        ([[0, 1]], [[0, 1]], True, "shape"),
    ],
)
def test_bad_inputs_are_rejected(y_true, y_pred, multi, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(y_true, y_pred, LABELS, multi_label=multi)


def test_a_task_name_is_not_a_multi_label_flag():
    """Tasks are chosen through ``tunelab.tasks``; a name here would silently read as True."""
    with pytest.raises(TypeError, match="multi_label"):
        compute_metrics([0, 1], [0, 1], LABELS, multi_label="regression")
    with pytest.raises(TypeError):
        compute_metrics([0, 1], [0, 1], LABELS, "single_label")  # keyword only


def test_multi_label_metrics():
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    y_pred = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    m = compute_metrics(y_true, y_pred, LABELS, multi_label=True)

    assert m["accuracy"] == pytest.approx(1 / 3)  # subset accuracy: only row 1 is exact
    assert m["hamming_loss"] == pytest.approx(2 / 9)
    # tp=3, fp=0, fn=2
    assert m["micro_precision"] == pytest.approx(1.0)
    assert m["micro_recall"] == pytest.approx(3 / 5)
    assert m["micro_f1"] == pytest.approx(0.75)
    # a: P=1 R=1 F1=1; b: P=1 R=1/2 F1=2/3; c: P=0 R=0 F1=0
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert [c["support"] for c in m["per_class"]] == [2, 2, 1]
    assert m["confusion_matrix"] is None
    assert m["top_confusions"] is None
    json.dumps(m, allow_nan=False)


def test_tune_threshold_finds_the_gap_closest_to_half():
    # Positives score 0.3-0.4, negatives 0.1-0.2: 0.25 and 0.30 are both perfect; 0.30 is nearer 0.5.
    y_true = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    probs = np.where(y_true == 1, [[0.35, 0.3]], [[0.15, 0.2]])
    assert tune_threshold(probs, y_true) == pytest.approx(0.3)
    # Shifted up by 0.5: 0.75 and 0.80 are perfect, 0.75 is nearer 0.5.
    assert tune_threshold(probs + 0.5, y_true) == pytest.approx(0.75)


def test_tune_threshold_beats_default_on_low_probabilities():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=(200, 5))
    probs = np.clip(0.1 + 0.25 * y_true + rng.normal(0, 0.05, size=y_true.shape), 0, 1)
    threshold = tune_threshold(probs, y_true)
    assert 0.15 <= threshold <= 0.35
    tuned = compute_metrics(y_true, (probs >= threshold).astype(int), list("vwxyz"), multi_label=True)
    default = compute_metrics(y_true, (probs >= 0.5).astype(int), list("vwxyz"), multi_label=True)
    assert tuned["micro_f1"] > 0.9 > default["micro_f1"]


def test_tune_threshold_flat_optimum_keeps_half():
    assert tune_threshold(np.zeros((3, 2)), np.zeros((3, 2), dtype=int)) == 0.5


def test_tune_threshold_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        tune_threshold(np.zeros((3, 2)), np.zeros((3, 3)))


def _assert_png(path):
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_report_small_single_label(tmp_path):
    labels = ["neg", "pos", "<b>odd & | name</b>"]
    m = compute_metrics(Y_TRUE, Y_PRED, labels)
    meta = {"model": "tiny-bert", "method": "lora", "train_time_s": 12.345, "samples_per_s": 1234.5}

    written = write_report(tmp_path, m, label_names=labels, meta=meta, title="Tiny run")

    assert set(written) == {"report.md", "report.html", "confusion_matrix.png", "per_class_f1.png"}
    _assert_png(tmp_path / "plots" / "confusion_matrix.png")
    _assert_png(tmp_path / "plots" / "per_class_f1.png")
    assert not (tmp_path / "plots" / "top_confusions.png").exists()
    assert written["confusion_matrix.png"] == tmp_path / "plots" / "confusion_matrix.png"

    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
    assert 'src="plots/' not in page
    assert "<link" not in page and "<script" not in page
    assert "neg" in page and "pos" in page
    assert "&lt;b&gt;odd &amp; | name&lt;/b&gt;" in page
    assert "<b>odd" not in page
    assert "tiny-bert" in page and "1,234" in page

    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# Tiny run\n")
    assert "](plots/confusion_matrix.png)" in md
    assert "](plots/per_class_f1.png)" in md
    assert "66.67%" in md  # accuracy 4/6 as a percentage with 2 decimals
    assert "odd & \\| name" in md  # a pipe would split the table cell
    assert "| tiny-bert |" in md
    assert "## Results on test" in md


def test_report_many_classes_uses_top_confusions(tmp_path):
    n = TOP_CONFUSIONS_ABOVE + 5
    labels = [f"intent_{i}" for i in range(n)]
    y_true = [i for i in range(n) for _ in range(3)]
    y_pred = [t if k else (t + 1) % n for k, t in enumerate(y_true)]  # every third example wrong
    m = compute_metrics(y_true, y_pred, labels)

    written = write_report(tmp_path, m, label_names=labels, split="dev")

    assert "top_confusions.png" in written and "confusion_matrix.png" not in written
    _assert_png(tmp_path / "plots" / "top_confusions.png")
    assert not (tmp_path / "plots" / "confusion_matrix.png").exists()
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "](plots/top_confusions.png)" in md
    assert "## Results on dev" in md
    assert "intent_34" in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_report_with_history_draws_training_curves(tmp_path):
    history = [
        {"event": "train", "step": s, "epoch": s / 100, "loss": 2.0 / s, "lr": 1e-4, "samples_per_s": 50.0}
        for s in range(1, 80)
    ]
    history += [
        {
            "event": "eval",
            "step": 40,
            "epoch": 0.4,
            "split": "dev",
            "loss": 0.9,
            "accuracy": 0.6,
            "macro_f1": 0.5,
        },
        {"event": "eval", "step": 79, "epoch": 0.79, "split": "dev", "loss": 0.7, "accuracy": 0.7},
        {"event": "train", "step": 80},  # missing loss
        {"event": "eval", "loss": 0.1},  # missing step
        {"event": "train", "step": 81, "loss": math.nan},
        {"event": "run_start", "config": {}},
    ]
    m = compute_metrics(Y_TRUE, Y_PRED, LABELS)

    written = write_report(tmp_path, m, label_names=LABELS, history=history)

    _assert_png(written["training.png"])
    assert "](plots/training.png)" in (tmp_path / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("history", [[], None, [{"event": "train"}, {"note": "no event"}]])
def test_report_without_usable_history_has_no_training_plot(tmp_path, history):
    m = compute_metrics(Y_TRUE, Y_PRED, LABELS)

    written = write_report(tmp_path, m, label_names=LABELS, history=history)

    assert "training.png" not in written
    assert not (tmp_path / "plots" / "training.png").exists()
    assert "training.png" not in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_report_multi_label_and_sparse_metrics(tmp_path):
    y_true = np.array([[1, 0, 1], [0, 1, 0]])
    m = compute_metrics(y_true, y_true, LABELS, multi_label=True)

    written = write_report(tmp_path, m, label_names=LABELS)
    assert set(written) == {"report.md", "report.html", "per_class_f1.png"}
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "Subset accuracy" in md and "Hamming loss" in md
    assert "Decision threshold" not in md

    # The training loop adds the eval loss and the tuned threshold; they show as plain numbers.
    written = write_report(tmp_path, {**m, "loss": 0.123456, "threshold": 0.35}, label_names=LABELS)
    md = written["report.md"].read_text(encoding="utf-8")
    assert "| Loss | 0.1235 |" in md and "| Decision threshold | 0.35 |" in md

    # A metrics dict missing most keys (an old or partial metrics.json) still gives a report.
    written = write_report(tmp_path / "sparse", {"accuracy": 0.5}, label_names=LABELS)
    assert "50.00%" in written["report.md"].read_text(encoding="utf-8")


def test_report_rejects_matrix_that_does_not_match_labels(tmp_path):
    m = compute_metrics(Y_TRUE, Y_PRED, LABELS)
    with pytest.raises(ValueError, match="shape"):
        write_report(tmp_path, m, label_names=["a", "b"])


def test_the_per_class_plot_leaves_out_labels_without_a_score() -> None:
    """A label absent from the file and never predicted was drawn as a 0.00 bar."""
    from tunelab.evaluate import plots

    assert plots.per_class_f1_png([{"label": "d", "f1": None}]) is None  # nothing to draw
    assert plots.per_class_f1_png([{"label": "a", "f1": 0.5}, {"label": "d", "f1": None}]) is not None


def test_a_one_label_multi_label_run_is_scored_on_its_label() -> None:
    """scikit-learn read an (n, 1) multi-hot array as a binary target and ``labels=[0]`` as the
    value 0, so a one-label run (a "spam" or nothing detector) was scored on the rows without the
    label: perfect predictions gave F1 0 and support 0, never predicting it gave recall 1."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    perfect = compute_metrics([[1], [1], [0]], [[1], [1], [0]], ["spam"], multi_label=True)
    assert perfect["micro_f1"] == perfect["macro_f1"] == 1.0
    assert perfect["per_class"] == [
        {"label": "spam", "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    ]
    never = compute_metrics([[1], [0], [0]], [[0], [0], [0]], ["spam"], multi_label=True)
    assert never["micro_recall"] == never["micro_f1"] == 0.0 and never["per_class"][0]["support"] == 1
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 2, (50, 1)), rng.integers(0, 2, (50, 1))
    m = compute_metrics(true, pred, ["spam"], multi_label=True)
    t, p = true[:, 0], pred[:, 0]  # the textbook binary scores of the one label
    assert m["micro_f1"] == pytest.approx(f1_score(t, p)) and m["macro_f1"] == pytest.approx(f1_score(t, p))
    assert m["micro_precision"] == pytest.approx(precision_score(t, p))
    assert m["micro_recall"] == pytest.approx(recall_score(t, p))
    assert m["per_class"][0]["support"] == int(t.sum())
    assert m["hamming_loss"] == pytest.approx(float((t != p).mean()))
    assert m["accuracy"] == pytest.approx(float((t == p).mean()))
