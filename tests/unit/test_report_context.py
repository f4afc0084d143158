"""The run report explains the run (issue 15 item 5): notes on training, plots of short runs,
the most confident mistakes, and what the report shows around the metrics.

The pure parts are tested on synthetic metric histories and logits; ``test_report_run.py`` trains
the tiny model and reads the written reports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tunelab.evaluate import plots
from tunelab.evaluate.diagnose import training_notes
from tunelab.evaluate.mistakes import Mistake, Mistakes
from tunelab.evaluate.run_context import ReportContext
from tunelab.tasks.classification.scoring import mistakes as classification_mistakes
from tunelab.tasks.token_classification.mistakes import sentence_mistakes


def history(
    dev_loss: list[float], metric: list[float], train_loss: list[tuple[int, float]], *, steps: int = 5
) -> list[dict]:
    """Records of a run evaluated at the end of each epoch of ``steps`` steps."""
    evals = [
        {
            "event": "eval",
            "split": "dev",
            "step": steps * (i + 1),
            "epoch": float(i + 1),
            "loss": loss,
            "accuracy": m,
            "micro_f1": m,
            "macro_f1": m - 0.1,
        }
        for i, (loss, m) in enumerate(zip(dev_loss, metric, strict=True))
    ]
    train = [{"event": "train", "step": s, "loss": v} for s, v in train_loss]
    return sorted(evals + train, key=lambda r: r["step"])


# -- notes on training --------------------------------------------------------------------------


def test_overfitting_is_named_with_the_epoch_dev_loss_began_to_rise() -> None:
    records = history(
        [0.9, 0.6, 0.7, 0.8],
        [0.5, 0.7, 0.75, 0.8],
        [(5, 1.2), (10, 0.8), (15, 0.4), (20, 0.2)],
    )
    notes = training_notes(records, metric="accuracy")
    assert len(notes) == 1
    assert notes[0].startswith("Over-fitting: dev loss rose from epoch 3 on")
    assert "0.6000 at its lowest, 0.8000 at the end" in notes[0]
    assert "training loss kept falling (0.8000 → 0.2000)" in notes[0]


def test_overfitting_reads_sparse_train_records_of_a_short_run() -> None:
    # Train loss is logged every 10 steps: two records for four evaluations.
    records = history([0.9, 0.5, 0.6, 0.7], [0.5, 0.8, 0.85, 0.9], [(10, 0.7), (20, 0.3)])
    notes = training_notes(records, metric="accuracy")
    assert len(notes) == 1 and "rose from epoch 3 on" in notes[0]


@pytest.mark.parametrize(
    "dev_loss, train_loss",
    [
        ([0.9, 0.6, 0.5, 0.4], [(5, 1.2), (10, 0.8), (15, 0.4), (20, 0.2)]),  # both fall: healthy
        ([0.9, 0.6, 0.7, 0.8], [(5, 0.2), (10, 0.3), (15, 0.4), (20, 0.5)]),  # both rise: not over-fitting
        ([0.9, 0.600, 0.605, 0.606], [(5, 1.2), (10, 0.8), (15, 0.4), (20, 0.2)]),  # within noise
    ],
)
def test_no_overfitting_note_when_dev_loss_did_not_rise_against_falling_train_loss(
    dev_loss: list[float], train_loss: list[tuple[int, float]]
) -> None:
    records = history(dev_loss, [0.5, 0.6, 0.7, 0.8], train_loss)
    assert training_notes(records, metric="accuracy") == []


def test_a_dev_metric_that_never_beat_epoch_1_gets_a_sentence() -> None:
    records = history([0.9, 0.8, 0.7], [0.62, 0.60, 0.62], [(5, 1.0), (10, 0.9), (15, 0.8)])
    notes = training_notes(records, metric="accuracy")
    assert notes == [
        "The dev accuracy never improved after epoch 1 (62.00% then, 2 later evaluation(s) no better): "
        "the later epochs bought nothing. Try another learning rate, or check the data (labels, size "
        "of the dev split)."
    ]
    # The selection metric decides: dev loss fell every epoch.
    assert training_notes(records, metric="loss") == []


def test_a_perfect_first_epoch_is_not_called_a_failure() -> None:
    records = history([0.3, 0.2], [1.0, 1.0], [(5, 0.5), (10, 0.2)])
    (note,) = training_notes(records, metric="accuracy")
    assert "already 100.00% after epoch 1" in note and "fewer epochs would do" in note


def test_a_lower_is_better_selection_metric_counts_a_fall_as_improvement() -> None:
    records = history([0.9, 0.95, 0.97], [0.5, 0.6, 0.7], [(5, 1.0), (10, 0.9), (15, 0.8)])
    overfitting, flat = training_notes(records, metric="loss")
    assert overfitting.startswith("Over-fitting: dev loss rose from epoch 2 on")
    assert flat.startswith("The dev loss never improved after epoch 1 (0.9000 then")
    assert "never improved" not in " ".join(training_notes(records, metric="accuracy"))


def test_no_notes_from_a_single_evaluation_or_none() -> None:
    assert training_notes(history([0.5], [0.7], [(5, 0.9)]), metric="accuracy") == []
    assert training_notes([{"event": "train", "step": 3, "loss": 1.0}], metric="accuracy") == []


def test_evaluations_inside_an_epoch_are_named_by_step() -> None:
    records = [
        {"event": "eval", "split": "dev", "step": s, "epoch": e, "loss": 0.5, "accuracy": a}
        for s, e, a in [(3, 0.5, 0.8), (6, 1.0, 0.7), (9, 1.5, 0.8)]
    ]
    (note,) = training_notes(records, metric="accuracy")
    assert "after epoch 0.5 (step 3)" in note


# -- the training plot ----------------------------------------------------------------------------


def lines_of(fig) -> dict[str, list]:
    """The drawn lines of each axis by title."""
    return {ax.get_title(): ax.get_lines() for ax in fig.axes}


def test_identical_metric_curves_are_drawn_once_and_the_legend_says_so() -> None:
    records = history([0.9, 0.8], [0.5, 0.6], [(5, 1.0), (10, 0.9)])
    fig = plots.training_curves_figure(records)
    evaluation = lines_of(fig)["Evaluation"]
    labels = [line.get_label() for line in evaluation]
    assert labels == ["dev accuracy = micro_f1", "dev macro_f1"]
    legend = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert legend == labels


def test_a_perfect_run_draws_one_score_curve() -> None:
    records = history([0.3, 0.2], [1.0, 1.0], [(5, 0.5), (10, 0.2)])
    for r in records:
        if r["event"] == "eval":
            r["macro_f1"] = 1.0
    (line,) = lines_of(plots.training_curves_figure(records))["Evaluation"]
    assert line.get_label() == "dev accuracy = macro_f1 = micro_f1"


def test_a_short_run_shows_every_point_with_a_marker() -> None:
    # Three steps: one train-loss record, one evaluation. A line needs two points: without a
    # marker the train loss is invisible.
    records = [
        {"event": "train", "step": 3, "loss": 1.1},
        {"event": "eval", "split": "dev", "step": 3, "epoch": 1.0, "loss": 1.0, "accuracy": 0.5},
    ]
    drawn = lines_of(plots.training_curves_figure(records))
    assert set(drawn) == {"Loss", "Evaluation"}
    for title, lines in drawn.items():
        assert lines, f"{title} is an empty axis"
        assert all(line.get_marker() not in (None, "None", "") for line in lines), title
    ticks = plots.training_curves_figure(records).axes[-1].xaxis.get_major_locator()()
    assert all(float(t).is_integer() for t in ticks)


def test_a_long_train_curve_keeps_lines_without_markers() -> None:
    records = [{"event": "train", "step": s, "loss": 1 / s} for s in range(10, 1000, 10)]
    (raw, smooth) = lines_of(plots.training_curves_figure(records))["Loss"]
    assert raw.get_marker() in (None, "None", "") and smooth.get_marker() in (None, "None", "")


# -- the mistakes ---------------------------------------------------------------------------------


def test_single_label_mistakes_are_the_wrong_rows_most_confident_first() -> None:
    logits = np.log(
        np.array(
            [
                [0.8, 0.1, 0.1],  # gold 0, right
                [0.2, 0.7, 0.1],  # gold 0, wrong at 0.7
                [0.1, 0.1, 0.8],  # gold 1, wrong at 0.8
                [0.4, 0.35, 0.25],  # gold 2, wrong at 0.4
            ]
        )
    )
    found = classification_mistakes(
        logits, [0, 0, 1, 2], ["a", "b", "c"], ["t0", "t1", "t2", "t3"], None, multi=False, threshold=0.5
    )
    assert found.total == 4
    assert [(m.text, m.gold, m.predicted) for m in found.rows] == [
        ("t2", "b", "c"),
        ("t1", "a", "b"),
        ("t3", "c", "a"),
    ]
    assert [round(m.confidence, 3) for m in found.rows] == [0.8, 0.7, 0.4]


def test_pair_mistakes_show_both_texts() -> None:
    logits = np.log(np.array([[0.1, 0.9]]))
    found = classification_mistakes(logits, [0], ["no", "yes"], ["q"], ["a"], multi=False, threshold=0.5)
    assert (found.rows[0].text, found.rows[0].pair, found.rows[0].shown()) == ("q", "a", "q ⟂ a")


def test_a_pair_runs_mistakes_csv_keeps_the_two_texts_in_two_columns(tmp_path: Path) -> None:
    """A pair run's ``mistakes.csv`` joined both texts into one cell ("q ⟂ a"): relabelled and fed
    back (the relabel-the-mistakes workflow) it could not be read as pairs at all."""
    from tunelab.config import DataConfig
    from tunelab.data.labelled import read_labelled_table
    from tunelab.data.labels import LabelMap
    from tunelab.evaluate.mistakes import write_csv

    logits = np.log(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]))
    found = classification_mistakes(
        logits, [0, 1, 1], ["no", "yes"], ["q1", "q2", "q3"], ["a1", "=a2", "a3"], multi=False, threshold=0.5
    )
    path = write_csv(tmp_path / "mistakes.csv", found)
    assert path.read_text().splitlines()[0] == "text,text_pair,gold,predicted,confidence"
    cfg = DataConfig(text_column="text", text_pair_column="text_pair", label_column="gold")
    read = read_labelled_table(path, cfg, LabelMap(["no", "yes"]), label_kind="one")
    assert sorted(zip(read.texts, read.text_pairs, read.labels, strict=True)) == [
        ("q1", "a1", 0),
        ("q2", "'=a2", 1),  # made inert for spreadsheets, as any cell
    ]


def test_multi_label_mistakes_rank_by_the_surest_wrong_decision() -> None:
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    probs = np.array([[0.9, 0.1], [0.6, 0.05], [0.9, 0.99], [0.45, 0.2]])
    found = classification_mistakes(
        logit(probs),
        [[0], [0, 1], [0], [0]],
        ["x", "y"],
        ["right", "missed y", "extra y", "missed x"],
        None,
        multi=True,
        threshold=0.5,
    )
    # sets as JSON lists, as predict --output writes them ("x | y" and "(none)" came back as labels)
    assert [(m.text, m.gold, m.predicted) for m in found.rows] == [
        ("extra y", '["x"]', '["x", "y"]'),  # gave y at 0.99
        ("missed y", '["x", "y"]', '["x"]'),  # left y out at 0.05: 0.95 sure it is not there
        ("missed x", '["x"]', "[]"),  # left x out at 0.45: 0.55 sure
    ]
    assert [round(m.confidence, 2) for m in found.rows] == [0.99, 0.95, 0.55]


def test_a_relabelled_multi_label_mistakes_csv_trains_as_the_same_label_sets(tmp_path: Path) -> None:
    """``mistakes.csv`` wrote sets as "a | b" and an empty one as "(none)", whatever the run's
    ``data.label_delimiter``: fed back (the relabel-the-mistakes workflow) they were read as labels
    named "(none)" and "a | b"."""
    import tunelab
    from tunelab.evaluate.mistakes import write_csv

    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    probs = np.array([[0.9, 0.99], [0.2, 0.1], [0.1, 0.9]])
    found = classification_mistakes(
        logit(probs), [[0], [0, 1], []], ["x", "y; z"], ["a", "b", "c"], None, multi=True, threshold=0.5
    )
    path = write_csv(tmp_path / "mistakes.csv", found)
    read = tunelab.read_labelled(path, text_column="text", label_column="gold", multi_label=True)
    by_text = dict(zip(read.texts, read.labels, strict=True))
    assert by_text == {"a": ["x"], "b": ["x", "y; z"], "c": []}, by_text
    read = tunelab.read_labelled(path, text_column="text", label_column="predicted", multi_label=True)
    assert dict(zip(read.texts, read.labels, strict=True)) == {"a": ["x", "y; z"], "b": [], "c": ["y; z"]}


def test_ner_mistakes_are_sentences_with_wrong_entities_surest_first() -> None:
    words = [["peter", "visited", "paris"], ["anna", "left", "rome"], ["john", "liked", "berlin"]]
    gold = [["B-PER", "O", "B-LOC"], ["B-PER", "O", "B-LOC"], ["B-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "B-LOC"], ["B-LOC", "O", "B-LOC"], ["B-PER", "O", "O"]]
    probs = [np.array([0.9, 0.9, 0.9]), np.array([0.6, 0.99, 0.99]), np.array([0.99, 0.99, 0.8])]
    found = sentence_mistakes(gold, pred, words, probs)
    assert found.total == 3 and found.example == "sentence"
    assert [(m.text, m.gold, m.predicted) for m in found.rows] == [
        ("john liked berlin", "john (PER); berlin (LOC)", "john (PER)"),
        ("anna left rome", "anna (PER); rome (LOC)", "anna (LOC); rome (LOC)"),
    ]
    # The probability of the tags chosen for the wrong entities' words: berlin's O, anna's B-LOC.
    assert [m.confidence for m in found.rows] == [0.8, 0.6]


# -- the report around the metrics ----------------------------------------------------------------


def test_the_report_shows_recipe_data_notes_and_mistakes_the_same_for_any_task(tmp_path: Path) -> None:
    from tunelab.evaluate.report import write_report
    from tunelab.tasks.token_classification.report import write_report as write_ner_report

    rows = [Mistake(f"text {i}", "a", "b", 1 - i / 100) for i in range(25)]
    context = ReportContext(
        hyperparameters={"learning rate": 5e-5, "head learning rate": 2e-3, "seed": 7},
        data_summary=["rows: train 10 (t.csv)", "! label 'postive' (1 rows) looks like a typo of 'positive'"],
        notes=["Over-fitting: dev loss rose from epoch 3 on."],
        mistakes=Mistakes(rows=rows, total=40),
    )
    metrics = {"n": 40, "accuracy": 0.375, "confusion_matrix": [[15, 0], [25, 0]], "top_confusions": []}
    for folder, write in ((tmp_path / "cls", write_report), (tmp_path / "ner", write_ner_report)):
        kwargs = {"label_names": ["a", "b"]} if write is write_report else {}
        written = write(folder, metrics, history=[], context=context, **kwargs)
        md = written["report.md"].read_text(encoding="utf-8")
        html = written["report.html"].read_text(encoding="utf-8")
        assert "| head learning rate | 0.002 |" in md and "| seed | 7 |" in md
        assert "1 line(s) marked ! need a look" in md
        assert "```\nrows: train 10 (t.csv)\n! label 'postive'" in md  # as validate prints it
        assert "<pre>rows: train 10 (t.csv)\n! label &#x27;postive&#x27;" in html
        assert "Over-fitting: dev loss rose from epoch 3 on." in md and "<p>Over-fitting" in html
        assert "25 of 40 texts are wrong, the surest first (the 20 surest are shown" in md
        assert "| text 0 | a | b | 1.000 |" in md and "text 19" in md and "text 20" not in md
        csv = (folder / "mistakes.csv").read_text(encoding="utf-8").splitlines()
        assert csv[0] == "text,gold,predicted,confidence" and len(csv) == 26
        assert csv[1] == "text 0,a,b,1.0000"


def test_no_context_keeps_the_report_as_it_was(tmp_path: Path) -> None:
    from tunelab.evaluate.report import write_report

    written = write_report(tmp_path, {"n": 2, "accuracy": 1.0}, label_names=["a", "b"])
    md = written["report.md"].read_text(encoding="utf-8")
    assert "Hyper-parameters" not in md and "mistakes" not in md
    assert not (tmp_path / "mistakes.csv").exists()


def test_mistakes_csv_cells_that_a_spreadsheet_would_run_are_made_inert(tmp_path: Path) -> None:
    """A text starting with '=' was written as it is: a spreadsheet ran =HYPERLINK(...) as a formula."""
    import csv

    from tunelab.evaluate.mistakes import write_csv

    rows = [Mistake('=HYPERLINK("http://x")', "+gold", "@pred", 0.9), Mistake("fine, text", "a", "b", 0.5)]
    path = write_csv(tmp_path / "mistakes.csv", Mistakes.sorted(rows, total=2))
    with path.open(encoding="utf-8", newline="") as f:
        read = list(csv.reader(f))
    assert read[1][:3] == ['\'=HYPERLINK("http://x")', "'+gold", "'@pred"]
    assert read[2][:3] == ["fine, text", "a", "b"]


def test_mistakes_csv_keeps_numeric_labels_as_numbers(tmp_path: Path) -> None:
    """Every cell starting with '-' or '+' got a "'": a -1 / +1 label came back as '-1 and '+1."""
    import csv

    from tunelab.evaluate.mistakes import write_csv

    rows = [
        Mistake("-2.5e3 is the amount", "-1", "+1", 0.9),
        Mistake("-cmd|' /C calc'!A0", "-inf", "+nan", 0.8),
        Mistake("-1 ", "+1_0", "-", 0.7),
    ]
    path = write_csv(tmp_path / "mistakes.csv", Mistakes.sorted(rows, total=3))
    with path.open(encoding="utf-8", newline="") as f:
        read = list(csv.reader(f))
    assert read[1][:3] == ["'-2.5e3 is the amount", "-1", "+1"]
    assert read[2][:3] == ["'-cmd|' /C calc'!A0", "'-inf", "'+nan"]  # words, not numbers: still inert
    assert read[3][:3] == ["'-1 ", "'+1_0", "'-"]


def test_chinese_ner_mistakes_and_error_examples_are_written_without_spaces_between_characters() -> None:
    """A Chinese sentence is one word a character; joined by spaces the report showed "我 住 在 北 京"."""
    from tunelab.tasks.token_classification.metrics import error_analysis

    words = [["我", "住", "在", "北", "京", "。"]]
    gold, pred = [["O", "O", "O", "B-LOC", "I-LOC", "O"]], [["O", "O", "O", "B-LOC", "O", "O"]]
    (mistake,) = sentence_mistakes(gold, pred, words, [np.full(6, 0.9)]).rows
    assert (mistake.text, mistake.gold, mistake.predicted) == ("我住在北京。", "北京 (LOC)", "北 (LOC)")
    example = error_analysis(gold, pred, words)["examples"]["wrong boundary"][0]
    assert example == {"sentence": "我住在北京。", "gold": "北京 (LOC)", "predicted": "北 (LOC)"}


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"rows": {"train": 5', "not JSON: "),
        (b"[1, 2]", "a JSON array, not an object"),
        (b"\xff\xfe{}", "not UTF-8 text"),
    ],
    ids=["cut", "list", "not-utf8"],
)
def test_a_damaged_data_summary_is_left_out_of_the_report_with_a_warning_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, says: str
) -> None:
    """``tunelab eval`` goes on without the section, but it was left out with no word at all."""
    from tunelab.evaluate.run_context import DATA_SUMMARY_JSON, saved_data_summary

    (tmp_path / DATA_SUMMARY_JSON).write_bytes(content)
    with caplog.at_level("WARNING", logger="tunelab.evaluate.run_context"):
        assert saved_data_summary(tmp_path) is None
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"{tmp_path / DATA_SUMMARY_JSON}: cannot read ({says}"), message
    assert message.endswith("); the report leaves out the run's training data"), message


def test_a_missing_or_older_data_summary_is_left_out_without_a_word(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run older than the file, or an ensemble, has none; another version's keys do not fit."""
    from tunelab.evaluate.run_context import DATA_SUMMARY_JSON, saved_data_summary

    with caplog.at_level("WARNING", logger="tunelab.evaluate.run_context"):
        assert saved_data_summary(tmp_path) is None
        (tmp_path / DATA_SUMMARY_JSON).write_text('{"rows": {"train": 5}}', encoding="utf-8")
        assert saved_data_summary(tmp_path) is None
    assert caplog.records == []
