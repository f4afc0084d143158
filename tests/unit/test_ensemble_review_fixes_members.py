"""Review fixes for ensemble members: an ensemble given as a member, and a continued member whose
previous run (its stored rehearsal sample) is gone."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.config import RunConfig
from tunelab.data import LabelMap
from tunelab.data.held_out import normalised
from tunelab.ensembling import ensemble
from tunelab.errors import RunError

LABELS = ["food", "sports", "weather"]


@pytest.fixture(scope="module")
def runs(tiny_bert, labelled_csvs, tiny_overrides, tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two tiny one-epoch runs a and b, and ab, the ensemble of them."""
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("runs")
    made = []
    for seed in (1, 2):
        overrides = tiny_overrides(
            tiny_bert, train, test, out, "data.dev_size=0.2", f"train.seed={seed}", f"name=m{seed}", epochs=1
        )
        made.append(tunelab.train(None, overrides=overrides, show_progress=False).run_dir)
    a, b = made
    return a, b, ensemble([a, b], out / "ab", calibrate=False).path


def test_an_ensemble_given_as_a_member_is_refused_naming_its_members(runs, tmp_path: Path) -> None:
    """Loaded, it passed as its first member: a, both in ab and given beside it, weighed 3/4."""
    a, b, ab = runs
    with pytest.raises(RunError) as caught:
        ensemble([ab, a], tmp_path / "nested", calibrate=False)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(f"{ab} is an ensemble: give its member runs instead")
    # the command to run instead: ab's members in its place, a once, with the options given
    assert line.endswith(f"tunelab ensemble {a} {b} --out {tmp_path / 'nested'} --no-calibrate"), line
    assert not (tmp_path / "nested").exists()


def test_the_cli_refuses_an_ensemble_member_in_one_line(runs, tmp_path: Path, capsys) -> None:
    a, b, ab = runs
    assert main(["ensemble", str(a), str(ab), "--out", str(tmp_path / "nested"), "--no-calibrate"]) != 0
    err = capsys.readouterr().err
    assert f"{ab} is an ensemble: give its member runs instead" in err
    assert f"tunelab ensemble {a} {b} --out" in err
    assert "Traceback" not in err
    assert not (tmp_path / "nested").exists()


def _member(folder: Path, data: dict, summary: dict | None = None, **sections: dict) -> Path:
    """A member copy under an ensemble's ``weights/`` as ``member_setups`` reads it (no weights)."""
    folder.mkdir(parents=True)
    RunConfig.from_dict({"data": data, **sections}).save(folder / "config.json")
    LabelMap(LABELS).save(folder / "labels.json")
    (folder / "run.json").write_text(json.dumps(summary or {}), encoding="utf-8")
    return folder


def _setups(tmp_path: Path, labelled_csvs, second_train: Path, summary: dict, **sections: dict) -> list:
    """``member_setups`` (as build and export read members) of an ensemble whose first member trained
    on ``labelled_csvs``' train file and whose second on ``second_train`` (and ``sections``)."""
    from tunelab.ensembling.build import member_setups

    ens = tmp_path / "ens"
    _member(ens / "weights" / "m1", {"train": str(labelled_csvs[0])})
    _member(ens / "weights" / "m2", {"train": str(second_train)}, summary, **sections)
    return member_setups(ens, {"members": [{"path": "weights/m1"}, {"path": "weights/m2"}]})


@pytest.fixture
def second_train(tmp_path: Path, labelled_csvs) -> Path:
    """The second member's training file: other texts than the first's, same labels."""
    rows = pd.read_csv(labelled_csvs[0])
    rows["text"] = "second member's " + rows["text"]
    rows.to_csv(tmp_path / "second.csv", index=False)
    return tmp_path / "second.csv"


def test_a_continued_member_whose_previous_run_is_gone_gets_a_note(
    labelled_csvs, second_train: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its replayed rows dropped out of the "trained on" set without a word, and were scored."""
    from tunelab.ensembling.build import trained_rows

    gone = tmp_path / "previous"  # moved or deleted since the member was continued from it
    setups = _setups(tmp_path, labelled_csvs, second_train, {}, continual={"from_run": str(gone)})
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        trained, notes = trained_rows(setups)
    stored = str(gone / "rehearsal.jsonl")
    assert len(notes) == 1, notes
    assert "its replayed rows cannot be read" in notes[0] and stored in notes[0]
    assert "may be among the rows the ensemble is scored on" in notes[0]
    assert stored in caplog.text
    assert any(key[0].startswith("second member's") for key in trained)  # its training rows still out
    assert "training rows cannot be read" not in caplog.text


def test_both_a_gone_rehearsal_sample_and_unlabelled_file_are_noted(
    labelled_csvs, second_train: Path, tmp_path: Path
) -> None:
    from tunelab.ensembling.build import trained_rows

    gone, unl = tmp_path / "previous", str(tmp_path / "gone.csv")
    setups = _setups(
        tmp_path,
        labelled_csvs,
        second_train,
        {"data_files": {"unlabeled": unl}},
        continual={"from_run": str(gone)},
        self_training={"unlabeled": unl},
    )
    trained, notes = trained_rows(setups)
    assert len(notes) == 2, notes
    assert str(gone / "rehearsal.jsonl") in notes[0]
    # not "its training and replayed rows are left out": the replayed ones are not
    assert "self_training.unlabeled" in notes[1] and notes[1].endswith("its training rows are left out")
    assert normalised(pd.read_csv(second_train)["text"][0], None) in trained  # training rows still out


def test_a_member_that_replayed_nothing_needs_no_sample(
    labelled_csvs, second_train: Path, tmp_path: Path
) -> None:
    from tunelab.ensembling.build import trained_rows

    setups = _setups(
        tmp_path,
        labelled_csvs,
        second_train,
        {},
        continual={"from_run": str(tmp_path / "previous"), "rehearsal": 0},
    )
    # No word of a stored sample it never replayed; but the run it started from is gone, and the
    # rows that run trained on (in the weights it continued) may be scored: one note says so.
    notes = trained_rows(setups)[1]
    assert len(notes) == 1, notes
    assert "rehearsal.jsonl" not in notes[0] and "the run it was continued from, is gone" in notes[0]
