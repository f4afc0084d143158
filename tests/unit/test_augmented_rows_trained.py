"""The rows augmentation made (``augment``) count as rows the run trained on: ``tunelab eval --data``
counts them in ``rows_in_training`` and an ensemble leaves them out of its metrics, as the README
says of "every row another member trained on". Training records them in the run folder; a run
trained before it did (no such record) is not said to have trained on none of them."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

import tunelab
from tunelab.data.held_out import keys_of

LABELS = ["food", "sports", "weather"]
EXTRA = " indeed"  # a word no test text holds: deleting it gives the test text back


@pytest.fixture(scope="module")
def runs(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory, text_maker, tiny_overrides) -> dict:
    """Run ``a`` (its test file is ``test``) and run ``b``, trained with ``augment.methods=[delete]`` on
    the test texts with one word more: some rows it made are test texts."""
    folder = tmp_path_factory.mktemp("augmented-rows")
    test_rows = [(t, label) for label in LABELS for t in text_maker(label, 8, 2)]
    test = folder / "test.csv"
    pd.DataFrame(test_rows, columns=["text", "label"]).to_csv(test, index=False)
    a_train = folder / "a.csv"
    a_rows = [(t, label) for label in LABELS for t in text_maker(label, 8, 5)]
    pd.DataFrame(a_rows, columns=["text", "label"]).to_csv(a_train, index=False)
    b_train = folder / "b.csv"
    pd.DataFrame([(t + EXTRA, label) for t, label in test_rows], columns=["text", "label"]).to_csv(
        b_train, index=False
    )
    out = folder / "runs"
    a = tunelab.train(
        overrides=tiny_overrides(tiny_bert, a_train, test, out, "name=a", epochs=1), show_progress=False
    )
    b = tunelab.train(
        overrides=tiny_overrides(
            tiny_bert,
            b_train,
            None,
            out,
            "name=b",
            "augment.methods=[delete]",
            "augment.per_example=8",
            epochs=1,
        ),
        show_progress=False,
    )
    return {
        "a": a.run_dir,
        "b": b.run_dir,
        "test": test,
        "folder": folder,
        "made": _made_test_rows(b.run_dir, test),
    }


def _made_test_rows(run: Path, test: Path) -> int:
    """How many rows of ``test`` are among the rows ``run`` made, made again here as training made
    them (no label filter: nothing depends on the model)."""
    from tunelab.data.augment import augment_dataset
    from tunelab.train.augment_rows import _drop_held_out, _drop_repeats

    predictor = tunelab.load(run)
    cfg = predictor.config
    splits = predictor.task.load_splits(cfg.data)
    aug = cfg.augment
    seed = cfg.train.seed if aug.seed is None else aug.seed
    made = augment_dataset(splits.train, aug.methods, per_example=aug.per_example, alpha=aug.alpha, seed=seed)
    made, _ = _drop_held_out(made, splits)
    made, _ = _drop_repeats(made, splits.train)
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert summary["augmentation"]["kept"] == len(made.rows)  # made again as training made them
    made_keys = set(keys_of(made.rows))
    rows = predictor.task.read_labelled(str(test), cfg.data, predictor.labels, field=None)
    found = sum(key in made_keys for key in keys_of(rows))
    assert found > 0  # the data is built so that some are
    return found


def test_eval_counts_the_rows_augmentation_made_as_training_rows(runs: dict, tmp_path: Path) -> None:
    metrics = tunelab.evaluate(runs["b"], runs["test"], out_dir=tmp_path / "eval")
    assert metrics["rows_in_training"] == runs["made"]
    # a run trained without augmentation is evaluated as before
    plain = tunelab.evaluate(runs["a"], runs["test"], out_dir=tmp_path / "plain")
    assert plain["rows_in_training"] == 0 and plain["rows_in_dev"] == 0


def test_an_ensemble_leaves_out_the_rows_a_member_made(runs: dict, tmp_path: Path) -> None:
    built = tunelab.ensemble([runs["a"], runs["b"]], tmp_path / "ens", calibrate=False)
    assert built.metrics["test"]["n"] == 24 - runs["made"]
    notes = json.loads((built.path / "run.json").read_text(encoding="utf-8")).get("notes", [])
    assert any(n.startswith(f"test: {runs['made']} of 24 rows left out") for n in notes), notes
    # the ensemble folder holds what it needs: eval reads its member copies
    metrics = tunelab.evaluate(built.path, runs["test"], out_dir=tmp_path / "eval")
    assert metrics["rows_in_training"] == runs["made"]


def test_the_rows_a_run_continued_from_made_count_too(runs: dict, tmp_path: Path, text_maker) -> None:
    new = tmp_path / "new.csv"
    rows = [(t, label) for label in LABELS for t in text_maker(label, 8, 9)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(new, index=False)
    overrides = [
        f"data.train={new}",
        f"output_dir={tmp_path}",
        "name=c",
        "train.epochs=1",
        "augment.methods=[]",
    ]
    continued = tunelab.train(from_run=runs["b"], overrides=overrides, show_progress=False)
    metrics = tunelab.evaluate(continued.run_dir, runs["test"], out_dir=tmp_path / "eval")
    assert metrics["rows_in_training"] == runs["made"]


def test_a_run_trained_before_made_rows_were_recorded_is_not_said_to_have_trained_on_none(
    runs: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run whose folder has no record of its made rows (trained before tunelab kept one) still loads
    and is evaluated; its overlap is unknown, not 0, and the ensemble says its made rows may be scored."""
    old = Path(shutil.copytree(runs["b"], tmp_path / "b-old"))
    for path in old.iterdir():
        if path.name.startswith("augmented"):
            path.unlink()
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        metrics = tunelab.evaluate(old, runs["test"], out_dir=tmp_path / "eval")
    assert metrics["rows_in_training"] is None and metrics["rows_in_dev"] is None
    assert "augment" in caplog.text
    built = tunelab.ensemble([runs["a"], old], tmp_path / "ens", calibrate=False)
    notes = json.loads((built.path / "run.json").read_text(encoding="utf-8")).get("notes", [])
    assert any(str(old) in n and "augment" in n for n in notes), notes
    assert built.metrics["test"]["n"] == 24  # what it made is unknown: nothing to leave out


def test_an_exported_artifact_reads_the_record_of_the_run_it_was_exported_from(
    runs: dict, tmp_path: Path
) -> None:
    """An export copies no made rows: its run.json names the run (``source_run``), whose record is
    read where that run is the same training (the same ``finished_at``)."""
    from tunelab.evaluate.trained_rows import AUGMENTED_FILE, NotAsTrained, made_rows_of

    assert not (runs["a"] / AUGMENTED_FILE).exists()  # a run without augmentation records none
    config = tunelab.load(runs["b"]).config
    summary = json.loads((runs["b"] / "run.json").read_text(encoding="utf-8"))
    made = made_rows_of(runs["b"], config, summary)
    assert len(made) == summary["augmentation"]["kept"]
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    exported = {**summary, "format": "onnx", "source_run": str(runs["b"])}
    assert made_rows_of(artifact, config, exported) == made
    with pytest.raises(NotAsTrained, match="augmentation made are unknown"):  # another training
        made_rows_of(artifact, config, {**exported, "finished_at": "2000-01-01T00:00:00+00:00"})
