"""Review fixes: --dev read for nothing by an ensemble of multi-label or NER members, continual
options that do nothing noted, and built-in tasks' refusals free of internal class names."""

from __future__ import annotations

from pathlib import Path

import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.ensembling import ensemble
from tunelab.errors import ConfigError
from tunelab.preflight import validate_run


def write_multi_label(path: Path, rows: int) -> Path:
    words = {"sports": "football goal match", "food": "pizza cheese dinner", "weather": "rain snow wind"}
    combos = [["sports"], ["food"], ["weather"], ["sports", "food"], ["food", "weather"]]
    lines = ["text,label"]
    for i in range(rows):
        labels = combos[i % len(combos)]
        lines.append(f"{' '.join(words[x] for x in labels)} {i},{'|'.join(labels)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ml_csv(tmp_path_factory) -> Path:
    return write_multi_label(tmp_path_factory.mktemp("ml") / "ml.csv", 30)


@pytest.fixture(scope="module")
def ner_runs(tiny_bert, tagged_jsonls, tiny_overrides, tmp_path_factory) -> list[Path]:
    train, _ = tagged_jsonls
    out = tmp_path_factory.mktemp("ner-runs")
    return [
        tunelab.train(
            None,
            overrides=tiny_overrides(
                tiny_bert, train, None, out, "data.task=token_classification", f"name=n{s}", epochs=1
            ),
            show_progress=False,
        ).run_dir
        for s in (1, 2)
    ]


@pytest.fixture(scope="module")
def ml_runs(tiny_bert, ml_csv, tiny_overrides, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("ml-runs")
    return [
        tunelab.train(
            None,
            overrides=tiny_overrides(
                tiny_bert,
                ml_csv,
                None,
                out,
                "data.task=multi_label",
                "data.dev_size=0.2",
                f"name=m{s}",
                epochs=1,
            ),
            show_progress=False,
        ).run_dir
        for s in (1, 2)
    ]


# --- 1: ensemble --dev with members that are not temperature-scaled ---------------------------------


@pytest.mark.parametrize(("kind", "task"), [("ml_runs", "multi_label"), ("ner_runs", "token_classification")])
def test_dev_for_members_that_are_not_temperature_scaled_is_refused(
    request, kind: str, task: str, tmp_path: Path, capsys
) -> None:
    """--dev was never read (even a missing file passed, rc 0) for multi-label and NER members."""
    runs = request.getfixturevalue(kind)
    says = f"--dev is not read: {task} members are not temperature-scaled; drop --dev"
    out = tmp_path / "ens"
    with pytest.raises(ConfigError) as info:
        ensemble(runs, out, dev=tmp_path / "missing.csv")
    assert str(info.value) == says
    assert main(["ensemble", *map(str, runs), "--out", str(out), "--dev", str(tmp_path / "missing.csv")]) == 2
    assert says in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no --out folder, no .partial


# --- 2: continual options that do nothing are noted -------------------------------------------------


def test_distill_temperature_without_distill_is_noted(labelled_csvs, tiny_bert: Path) -> None:
    base = [f"data.train={labelled_csvs[0]}", f"model.name={tiny_bert}"]
    says = "continual.distill_temperature=4 set, but continual.distill is not: no effect"
    report = validate_run(None, overrides=[*base, "continual.distill_temperature=4"], count_tokens=False)
    assert not report.problems and says in report.notes
    on = validate_run(
        None, overrides=[*base, "continual.distill_temperature=4", "continual.distill=1"], count_tokens=False
    )
    assert not any("distill" in n for n in on.notes)
    assert not any("continual." in n for n in validate_run(None, overrides=base, count_tokens=False).notes)


def test_distill_temperature_without_distill_is_noted_from_a_run(
    labelled_csvs, tiny_bert: Path, tiny_overrides, tmp_path: Path
) -> None:
    train, _ = labelled_csvs
    run = tunelab.train(
        None,
        overrides=tiny_overrides(tiny_bert, train, None, tmp_path, "data.dev_size=0.2", "name=a", epochs=1),
        show_progress=False,
    ).run_dir
    report = validate_run(
        None,
        overrides=[f"data.train={train}", "continual.distill_temperature=4"],
        from_run=run,
        count_tokens=False,
    )
    assert not report.problems, report.problems
    assert "continual.distill_temperature=4 set, but continual.distill is not: no effect" in report.notes


def test_rehearsal_on_a_task_without_row_labels_is_noted(
    tagged_jsonls, labelled_csvs, tiny_bert: Path
) -> None:
    """An NER run writes no rehearsal.jsonl: continual.rehearsal(_total) were taken without a word."""
    ner = [f"data.train={tagged_jsonls[0]}", f"model.name={tiny_bert}", "data.task=token_classification"]
    report = validate_run(
        None, overrides=[*ner, "continual.rehearsal=10", "continual.rehearsal_total=40"], count_tokens=False
    )
    says = (
        "continual.rehearsal=10, continual.rehearsal_total=40 set, but a token_classification run "
        "stores no rehearsal rows (continual learning is for classification: single-label, multi-label, "
        "text pairs): no effect"
    )
    assert not report.problems and says in report.notes
    assert not any("rehearsal" in n for n in validate_run(None, overrides=ner, count_tokens=False).notes)
    rows = [f"data.train={labelled_csvs[0]}", f"model.name={tiny_bert}", "continual.rehearsal=10"]
    assert not any("rehearsal" in n for n in validate_run(None, overrides=rows, count_tokens=False).notes)


# --- 3: built-in tasks' refusals name no internal class ---------------------------------------------


def test_shots_on_multi_label_is_refused_plainly(ml_csv: Path, tiny_bert: Path) -> None:
    overrides = [f"data.train={ml_csv}", f"model.name={tiny_bert}", "data.task=multi_label", "data.shots=3"]
    problems = validate_run(None, overrides=overrides, count_tokens=False).problems
    assert problems == [
        "data.shots=3: multi_label rows have no one label to draw N rows by; remove data.shots"
    ]


def test_from_an_ner_run_is_refused_plainly(ner_runs, tagged_jsonls) -> None:
    problems = validate_run(
        None, overrides=[f"data.train={tagged_jsonls[0]}"], from_run=ner_runs[0], count_tokens=False
    ).problems
    assert problems == [
        f"--from {Path(ner_runs[0]).resolve()}: data.task=token_classification is not supported; continual "
        "learning works for classification (single-label, multi-label, text pairs)"
    ]


def test_data_labels_on_ner_is_refused_plainly(tagged_jsonls, tiny_bert: Path) -> None:
    overrides = [
        f"data.train={tagged_jsonls[0]}",
        f"model.name={tiny_bert}",
        "data.task=token_classification",
        "data.labels=[PER,LOC]",
    ]
    problems = validate_run(None, overrides=overrides, count_tokens=False).problems
    assert problems == [
        "data.labels: a token_classification run takes its tags from the data, not a label per row "
        "(ids follow the tags seen); remove data.labels"
    ]
