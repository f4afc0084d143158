"""Review fixes for ensembles, continued runs and zero-shot encoders (second round)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tunelab.config import ContinualConfig, RunConfig
from tunelab.data import LabelMap
from tunelab.data.dataset import Dataset
from tunelab.data.held_out import normalised
from tunelab.errors import ConfigError

LABELS = ["food", "sports", "weather"]
UNLABELLED = [
    "an unlabelled line about pizza",
    "an unlabelled line about the derby",
    "an unlabelled line on hail",
]


def _member(folder: Path, data: dict, summary: dict | None = None, **sections: dict) -> Path:
    """A member copy under an ensemble's ``weights/`` as ``member_setups`` reads it (no weights)."""
    folder.mkdir(parents=True)
    RunConfig.from_dict({"data": data, **sections}).save(folder / "config.json")
    LabelMap(LABELS).save(folder / "labels.json")
    (folder / "run.json").write_text(json.dumps(summary or {}), encoding="utf-8")
    return folder


def _setups(tmp_path: Path, labelled_csvs, second: dict, second_summary: dict, **sections: dict) -> list:
    """``member_setups`` of an ensemble whose first member trained on ``labelled_csvs``' train file
    and whose second has ``second`` as its data section (and ``sections``)."""
    from tunelab.ensembling.build import member_setups

    ens = tmp_path / "ens"
    _member(ens / "weights" / "m1", {"train": str(labelled_csvs[0])})
    _member(ens / "weights" / "m2", second, second_summary, **sections)
    return member_setups(ens, {"members": [{"path": "weights/m1"}, {"path": "weights/m2"}]})


@pytest.fixture
def own_data(tmp_path: Path, labelled_csvs) -> Path:
    """A folder holding the second member's training file (other texts than the first's, same
    labels) and its unlabelled file, both named relatively in its config, as typed."""
    folder = tmp_path / "project"
    folder.mkdir()
    rows = pd.read_csv(labelled_csvs[0])
    rows["text"] = "second member's " + rows["text"]
    rows.to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"text": UNLABELLED}).to_csv(folder / "unl.csv", index=False)
    return folder


def test_with_training_paths_finds_the_unlabelled_file_the_run_trained_on(
    own_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only train/dev/test were resolved: a relative self_training.unlabeled named a file of the
    current directory (none, or another of the same name, read without a word)."""
    from tunelab.inference.predictor import with_training_paths

    config = RunConfig.from_dict({"self_training": {"unlabeled": "unl.csv"}})
    summary = {"data_files": {"unlabeled": str(own_data / "unl.csv")}}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "unl.csv").write_text("text\nsomeone else's file\n", encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    assert with_training_paths(config, summary).self_training.unlabeled == str(own_data / "unl.csv")
    monkeypatch.chdir(own_data)  # names the same file from here: kept as typed, as --resume keeps it
    assert with_training_paths(config, summary).self_training.unlabeled == "unl.csv"


def test_an_ensemble_built_elsewhere_leaves_out_a_self_trained_members_rows(
    own_data: Path, labelled_csvs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built (or exported: both go through ``member_setups``) from another directory, the member's
    unlabelled file was not found, the member skipped, and the dev rows it trained on scored."""
    from tunelab.ensembling.build import trained_rows

    files = {"train": str(own_data / "train.csv"), "unlabeled": str(own_data / "unl.csv")}
    second = {"train": "train.csv"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    setups = _setups(
        tmp_path, labelled_csvs, second, {"data_files": files}, self_training={"unlabeled": "unl.csv"}
    )
    trained, notes = trained_rows(setups)
    assert notes == []
    assert {normalised(t, None) for t in UNLABELLED} <= set(trained)
    assert any(key[0].startswith("second member's") for key in trained)


def test_a_member_whose_unlabelled_file_is_gone_still_has_its_training_rows_left_out(
    own_data: Path, labelled_csvs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One unreadable file skipped the whole member: its training split was scored too."""
    from tunelab.ensembling.build import trained_rows

    gone = str(tmp_path / "gone.csv")
    setups = _setups(
        tmp_path,
        labelled_csvs,
        {"train": str(own_data / "train.csv")},
        {"data_files": {"unlabeled": gone}},
        self_training={"unlabeled": gone},
    )
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        trained, notes = trained_rows(setups)
    assert any(key[0].startswith("second member's") for key in trained)
    assert len(notes) == 1 and "its unlabelled texts (self_training.unlabeled) cannot be read" in notes[0]
    assert notes[0].endswith("its training and replayed rows are left out"), notes[0]
    assert "training rows cannot be read" not in caplog.text


def test_replayed_rows_holding_a_line_separator_are_left_out(labelled_csvs, tmp_path: Path) -> None:
    """``splitlines`` split a stored text at U+2028 (json.dumps(ensure_ascii=False) leaves it as it
    is): JSONDecodeError, the member skipped, none of its rows left out."""
    from tunelab.ensembling.build import trained_rows
    from tunelab.train.continual import write_rehearsal

    previous = _finished_run(tmp_path / "previous", {})
    # its own training file readable, so the member's chain is read whole and no note is due
    RunConfig.from_dict({"data": {"train": str(labelled_csvs[0])}}).save(previous / "config.json")
    texts = ["two lines\u2028in one text", "a paragraph\u2029break", "a next\u0085line"]
    stored = Dataset(texts=texts, text_pairs=None, labels=[0, 1, 2], source="x")
    assert write_rehearsal(previous, stored, LabelMap(LABELS), ContinualConfig(), seed=0) == 3
    setups = _setups(
        tmp_path,
        labelled_csvs,
        {"train": str(labelled_csvs[1])},
        {},
        continual={"from_run": str(previous)},
    )
    trained, notes = trained_rows(setups)
    assert notes == []
    assert {normalised(t, None) for t in texts} <= set(trained)


def _finished_run(folder: Path, continual: dict) -> Path:
    """A finished run folder as ``--from`` reads it, without weights worth loading."""
    (folder / "weights").mkdir(parents=True)
    RunConfig.from_dict({"data": {"train": "old.csv"}, "continual": continual}).save(folder / "config.json")
    LabelMap(LABELS).save(folder / "labels.json")
    (folder / "run.json").write_text(json.dumps({"status": "finished"}), encoding="utf-8")
    return folder


@pytest.mark.parametrize("asked", ["all", "8"])
def test_continual_rehearsal_on_the_command_line_is_not_overridden_by_runs_total(
    tmp_path: Path, asked: str
) -> None:
    """RUN's rehearsal_total came along and took precedence over the rehearsal given here (and capped
    the continued run's own stored sample)."""
    from tunelab.train.continual import continued_config

    run = _finished_run(tmp_path / "first", {"rehearsal_total": 6})
    new = ["data.train=new.csv"]
    cc = continued_config(run, [*new, f"continual.rehearsal={asked}"]).continual
    assert (cc.rehearsal, cc.rehearsal_total) == (asked if asked == "all" else int(asked), None)
    assert continued_config(run, new).continual.rehearsal_total == 6  # RUN's own setting, not asked
    both = continued_config(run, [*new, f"continual.rehearsal={asked}", "continual.rehearsal_total=9"])
    assert both.continual.rehearsal_total == 9


def test_a_rehearsal_total_over_a_rehearsal_that_was_set_is_noted() -> None:
    """Both set: the total wins, which run.json's notes now say (it was silent)."""
    from tunelab.train.continual import short_sample_note

    rows = Dataset(texts=["a", "b"], text_pairs=None, labels=[0, 1], source="x")
    note = short_sample_note(rows, ContinualConfig(rehearsal="all", rehearsal_total=6))
    assert note is not None
    assert note.startswith(
        "rehearsal: continual.rehearsal_total=6 takes precedence over continual.rehearsal=all"
    )
    # rehearsal left as it was: no precedence to note (only that 2 rows were stored, fewer than 6)
    assert "precedence" not in (short_sample_note(rows, ContinualConfig(rehearsal_total=6)) or "")


def test_an_ensemble_of_zero_shot_runs_is_scored_on_the_first_ones_test_file(
    tiny_bert: Path, labelled_csvs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No metrics, and three warnings "data.train is not set; give the training file" (advice for a
    run that has none)."""
    from tunelab.ensembling import ensemble
    from tunelab.zeroshot import zero_shot

    test = labelled_csvs[1]
    runs = [
        zero_shot(LABELS, tmp_path / name, encoder=str(tiny_bert), template=template, test=test).path
        for name, template in (("zs1", None), ("zs2", "This is about {}."))
    ]
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        built = ensemble(runs, tmp_path / "ens", calibrate=False)
    assert "data.train" not in caplog.text, caplog.text
    assert set(built.metrics) == {"test"} and built.metrics["test"]["n"] == len(pd.read_csv(test))
    with pytest.raises(
        ConfigError, match=r"zs1: a zero-shot run has no dev split to calibrate on; give --dev"
    ):
        ensemble(runs, tmp_path / "ens-calibrated")


def _pickled_copy(tiny_bert: Path, folder: Path, *, keep_safetensors: bool = False) -> None:
    """``tiny_bert``'s files with its weights pickled (``pytorch_model.bin``)."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(tiny_bert, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    if not keep_safetensors:
        (folder / "model.safetensors").unlink()


@pytest.mark.parametrize("layout", ["folder", "module"])
def test_an_encoder_folder_with_pickled_weights_only_is_refused(
    tiny_bert: Path, tmp_path: Path, layout: str
) -> None:
    """sentence-transformers unpickled ``--encoder FOLDER``'s pytorch_model.bin, which can run code,
    while ``--nli`` refuses one."""
    from tunelab.embeddings import load_encoder

    root = tmp_path / "enc"
    if layout == "folder":
        _pickled_copy(tiny_bert, root)
        pickle = root / "pytorch_model.bin"
    else:  # sentence-transformers' module folders, each loading its own weights
        _pickled_copy(tiny_bert, root / "0_Transformer")
        shutil.copy2(tiny_bert / "config.json", root / "config.json")  # what resolve_model looks for
        (root / "1_Pooling").mkdir()
        pooling = {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}
        (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")
        modules = [
            {
                "idx": 0,
                "name": "0",
                "path": "0_Transformer",
                "type": "sentence_transformers.models.Transformer",
            },
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        (root / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
        pickle = root / "0_Transformer" / "pytorch_model.bin"
    with pytest.raises(ConfigError) as refused:
        load_encoder(str(root))
    message = str(refused.value)
    assert message.startswith(f"{root}: pickled weights only ({pickle}), which could run code"), message
    assert "\n" not in message


def test_an_encoder_folder_with_safetensors_beside_a_pickle_loads(tiny_bert: Path, tmp_path: Path) -> None:
    from tunelab.embeddings import load_encoder

    root = tmp_path / "enc"
    _pickled_copy(tiny_bert, root, keep_safetensors=True)
    import torch

    with pytest.MonkeyPatch.context() as mp:  # the pickle beside the safetensors is never unpickled
        mp.setattr(torch, "load", lambda *a, **k: pytest.fail("pytorch_model.bin was unpickled"))
        encoder = load_encoder(str(root))
    assert encoder.encode(["a text"]).shape[0] == 1
