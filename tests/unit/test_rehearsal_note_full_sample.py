"""``train --from RUN continual.rehearsal=all`` notes that RUN stored a sample only when the sample
left rows out: a RUN whose stored sample holds every row it sampled from (8 rows a label, under the
default 50) replays them all, and the note said they were not every training row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import tunelab
from tunelab.config import ContinualConfig
from tunelab.data.dataset import Dataset

LABELS = ["sports", "weather"]
NOTE = "continual.rehearsal=all replays every row the previous run stored"


def _csv(path: Path, labels: list[str], per_label: int, seed: int, text_maker) -> Path:
    rows = [(t, label) for label in labels for t in text_maker(label, per_label, seed)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


def _notes_of_all(run: Path, tmp_path: Path, text_maker, name: str) -> str:
    new = _csv(tmp_path / f"{name}.csv", ["food"], 8, 3, text_maker)
    overrides = [
        f"data.train={new}",
        f"output_dir={tmp_path / 'runs'}",
        f"name={name}",
        "continual.rehearsal=all",
        "train.epochs=1",
    ]
    result = tunelab.train(from_run=run, overrides=overrides, show_progress=False)
    return " | ".join(result.summary["notes"])


@pytest.mark.parametrize("made", [False, True], ids=["plain", "augmented-and-self-trained"])
def test_rehearsal_all_of_a_run_that_stored_every_row_gives_no_note(
    tiny_bert: Path, tmp_path: Path, text_maker, tiny_overrides, made: bool
) -> None:
    """RUN trained on 16 rows (8 a label, no dev split) and stored all 16; made and pseudo-labelled
    rows join its training rows (run.json's rows.train) but are never stored."""
    train = _csv(tmp_path / "old.csv", LABELS, 8, 1, text_maker)
    extra = ["data.dev_size=0", "name=first"]
    if made:
        unlabelled = tmp_path / "unlabelled.csv"
        pool = [t for label in LABELS for t in text_maker(label, 4, 7)]
        pd.DataFrame({"text": pool}).to_csv(unlabelled, index=False)
        extra += [
            "augment.methods=[delete]",
            "augment.per_example=2",
            f"self_training.unlabeled={unlabelled}",
        ]
    first = tunelab.train(
        overrides=tiny_overrides(tiny_bert, train, None, tmp_path / "runs", *extra, epochs=1),
        show_progress=False,
    )
    stored = (first.run_dir / "rehearsal.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(stored) == 16
    if made:  # the case the fix reads run.json for: more training rows than the 16 it sampled from
        summary = first.summary
        assert summary["augmentation"]["kept"] > 0 and summary["self_training"]["added"] > 0
        assert (
            summary["rows"]["train"]
            == 16 + summary["augmentation"]["kept"] + summary["self_training"]["added"]
        )
    notes = _notes_of_all(first.run_dir, tmp_path, text_maker, "second")
    assert NOTE not in notes, notes


def test_the_note_stays_where_the_sample_left_rows_out() -> None:
    """RUN stored 5 rows a label of its 36 training rows: the note is due (with its summary or
    without one, from the per-label cap reached)."""
    rows = Dataset(texts=[f"t{i}" for i in range(10)], text_pairs=None, labels=[0] * 5 + [1] * 5, source="x")
    from tunelab.train.continual import short_sample_note

    asked, stored = ContinualConfig(rehearsal="all"), ContinualConfig(rehearsal=5)
    summary = {"rows": {"train": 36}, "augmentation": None, "self_training": None}
    assert NOTE in (short_sample_note(rows, asked, stored, summary) or "")
    assert NOTE in (short_sample_note(rows, asked, stored) or "")
    # every row stored: 10 training rows, or no summary and no label at the cap of 50
    assert short_sample_note(rows, asked, stored, {"rows": {"train": 10}}) is None
    assert short_sample_note(rows, asked, ContinualConfig()) is None
