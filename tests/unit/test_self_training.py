"""Self-training (``self_training.unlabeled``): a frozen probe's confident labels of unlabelled texts
join the training split only, capped per label; bad input is refused before a run folder exists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tunelab
from tunelab.config import RunConfig, SelfTrainingConfig
from tunelab.errors import ConfigError, DataError
from tunelab.tasks import get_task
from tunelab.train import pseudo_rows


def _unlabeled(path: Path, texts: list[str], column: str = "text") -> Path:
    pd.DataFrame({column: texts, "note": ["x"] * len(texts)}).to_csv(path, index=False)
    return path


def _read(cfg: RunConfig) -> tuple[list[str], int] | None:
    return pseudo_rows.check_self_training(cfg, get_task("single_label"))


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"self_training\.per_label=0 .*self_training\.min_confidence=1"):
        SelfTrainingConfig(per_label=0, min_confidence=1.0)
    with pytest.raises(ConfigError, match=r"self_training\.rounds=True"):
        SelfTrainingConfig(rounds=True)
    with pytest.raises(ConfigError, match=r"self_training\.unlabeled=' '"):
        SelfTrainingConfig(unlabeled=" ")
    # "yes" is true here as in a run file (coerce_types keeps YAML 1.1's yes/no for a bool field)
    with pytest.raises(ConfigError, match=r"self_training\.label_names='sure' \(use true or false\)"):
        SelfTrainingConfig(label_names="sure")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"self_training\.label_names=true needs unlabeled texts"):
        SelfTrainingConfig(label_names=True)


def _clusters(rng: np.random.Generator, centres: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(len(centres)), n)
    x = centres[labels] + 0.05 * rng.standard_normal((len(labels), centres.shape[1]))
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def test_the_probe_labels_each_row_and_keeps_the_most_confident_per_label() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8)
    x_train, y_train = _clusters(rng, centres, 4)
    x_pool, y_pool = _clusters(rng, centres, 30)
    cfg = RunConfig.from_dict({"self_training": {"per_label": 10, "rounds": 2}})
    chosen, pseudo, _, _ = pseudo_rows._pseudo_label(x_train, y_train, x_pool, cfg)
    # at most per_label rows of each label, every one labelled as its cluster
    assert sorted(np.bincount(pseudo).tolist()) == [10, 10, 10]
    assert (pseudo == y_pool[chosen]).all()
    # a confidence floor no row reaches keeps none
    cfg = RunConfig.from_dict({"self_training": {"min_confidence": 0.999999}})
    chosen, pseudo, _, _ = pseudo_rows._pseudo_label(x_train, y_train, x_pool, cfg)
    assert len(chosen) == 0 and len(pseudo) == 0


def test_pseudo_labels_are_label_ids_when_some_label_has_no_training_row() -> None:
    """The probe's classes are the ids in train (here 1 and 2 of 0..2), not its column numbers."""
    rng = np.random.default_rng(2)
    centres = np.eye(3, 8)
    x_train, y_train = _clusters(rng, centres[1:], 4)
    x_pool, y_pool = _clusters(rng, centres[1:], 6)
    cfg = RunConfig.from_dict({"self_training": {"rounds": 1}})
    chosen, pseudo, _, _ = pseudo_rows._pseudo_label(x_train, y_train + 1, x_pool, cfg)
    assert len(chosen) == 12 and set(pseudo.tolist()) == {1, 2}
    assert (pseudo == y_pool[chosen] + 1).all()


def test_the_least_confident_rows_are_the_ones_left_out() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(2, 8)
    x_train, y_train = _clusters(rng, centres, 4)
    # pool: 5 clear rows of each label, and 2 ambiguous ones halfway between the clusters
    x_clear, _ = _clusters(rng, centres, 5)
    between = (centres[0] + centres[1]) / 2 + 0.01 * rng.standard_normal((2, 8))
    x_pool = np.vstack([x_clear, between / np.linalg.norm(between, axis=1, keepdims=True)])
    cfg = RunConfig.from_dict({"self_training": {"per_label": 5, "rounds": 1}})
    chosen, _, _, _ = pseudo_rows._pseudo_label(x_train, y_train, x_pool, cfg)
    assert sorted(chosen.tolist()) == list(range(10))  # the two ambiguous rows (10, 11) are not kept


def test_pseudo_labelled_rows_join_only_the_training_split(
    tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path, monkeypatch
) -> None:
    task = get_task("single_label")
    base = tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path / "runs", "data.dev_size=0.2", epochs=1)
    splits = task.load_splits(RunConfig.from_yaml(None, base).data)
    fresh = [f"{text} again today" for text in splits.test.texts]  # texts no split holds
    repeats = [f"  {splits.dev.texts[0].upper()} ", splits.test.texts[1], splits.train.texts[0], fresh[0]]
    pool = _unlabeled(tmp_path / "pool.csv", [*fresh, *repeats, ""])
    encoded: list[list[str]] = []
    real_encode = task.encode

    def spy_encode(tokenizer, dataset, **kwargs):
        encoded.append(list(dataset.texts))
        return real_encode(tokenizer, dataset, **kwargs)

    monkeypatch.setattr(task, "encode", spy_encode)
    overrides = [*base, f"self_training.unlabeled={pool}", "self_training.per_label=3", "name=st"]
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    info = result.summary["self_training"]
    # a dev, a test and a training text and a repeated one are skipped; the empty row too
    assert info["skipped_empty"] == 1 and info["dropped_as_repeated"] == 4
    assert info["pool"] == len(fresh)
    assert 0 < info["added"] <= 3 * len(splits.labels.names)
    rows = result.summary["rows"]
    added = info["added"]
    assert rows == {"train": len(splits.train) + added, "dev": len(splits.dev), "test": len(splits.test)}
    # the training rows encoded: the labelled ones first, then pseudo-labelled texts from the pool
    train_enc = [t for t in encoded if len(t) == rows["train"]]
    assert train_enc and train_enc[-1][: len(splits.train)] == splits.train.texts
    assert set(train_enc[-1][len(splits.train) :]) <= set(fresh)
    assert list(splits.dev.texts) in encoded and list(splits.test.texts) in encoded
    # a later --from replays labelled rows only: the stored sample holds no pseudo-labelled text
    run = Path(result.run_dir)
    stored = [json.loads(line)["text"] for line in (run / "rehearsal.jsonl").read_text().splitlines()]
    assert stored and not set(stored) & set(fresh)
    assert any("self_training:" in note for note in result.summary["notes"])
    # train --from: the unlabelled file is old data, reset like the data files
    from tunelab.train.continual import continued_config

    assert continued_config(run, [f"data.train={train_csv}"]).self_training.unlabeled is None


def test_label_names_are_rows_for_the_probe_only(
    tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path, monkeypatch
) -> None:
    """``self_training.label_names``: each label's name, as words, is one more labelled text for
    the probe; the run itself trains on the labelled and pseudo-labelled rows only."""
    assert pseudo_rows.label_text("card_arrival") == "card arrival"
    assert pseudo_rows.label_text(" top-up__failed ") == "top up failed"
    task = get_task("single_label")
    base = tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path / "runs", "data.dev_size=0.2", epochs=1)
    splits = task.load_splits(RunConfig.from_yaml(None, base).data)
    pool = _unlabeled(tmp_path / "pool.csv", [f"{text} again today" for text in splits.test.texts])
    probed: list[tuple[list[str], list[int]]] = []
    real_features = pseudo_rows._features

    def spy(task, tokenizer, model, rows, cfg):
        probed.append((list(rows.texts), list(rows.labels or [])))
        return real_features(task, tokenizer, model, rows, cfg)

    monkeypatch.setattr(pseudo_rows, "_features", spy)
    names = splits.labels.names
    overrides = [*base, f"self_training.unlabeled={pool}", "self_training.label_names=true", "name=st-names"]
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    teacher_texts, teacher_labels = probed[0]
    assert teacher_texts[-len(names) :] == [pseudo_rows.label_text(n) for n in names]
    assert teacher_labels[-len(names) :] == list(range(len(names)))
    assert teacher_texts[: -len(names)] == list(splits.train.texts)
    info = result.summary["self_training"]
    assert info["label_names"] == len(names)
    assert result.summary["rows"]["train"] == len(splits.train) + info["added"]  # no name row trains
    # train --from: both go with the old unlabelled file (label_names alone would be refused)
    from tunelab.train.continual import continued_config

    again = continued_config(result.run_dir, [f"data.train={train_csv}"]).self_training
    assert (again.unlabeled, again.label_names) == (None, False)


def test_bad_input_is_refused_before_a_run_folder_exists(
    tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path, tagged_jsonls
) -> None:
    runs = tmp_path / "runs"
    base = tiny_overrides(tiny_bert, train_csv, test_csv, runs, epochs=1)
    with pytest.raises(DataError, match=r"self_training\.unlabeled: .*nope\.csv: file not found"):
        tunelab.train(None, overrides=[*base, f"self_training.unlabeled={tmp_path / 'nope.csv'}"])
    wrong = _unlabeled(tmp_path / "wrong.csv", ["a text"], column="body")
    with pytest.raises(DataError, match=r"self_training\.unlabeled: .*wrong\.csv: no column 'text' .*'body'"):
        tunelab.train(None, overrides=[*base, f"self_training.unlabeled={wrong}"])
    empty = _unlabeled(tmp_path / "empty.csv", ["", " "])
    with pytest.raises(DataError, match=r"holds no text"):
        tunelab.train(None, overrides=[*base, f"self_training.unlabeled={empty}"])
    listed = tmp_path / "listed.jsonl"
    listed.write_text('{"text": "a text"}\n{"text": ["two", "texts"]}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"self_training\.unlabeled: .*listed\.jsonl row 2: .*holds a list"):
        tunelab.train(None, overrides=[*base, f"self_training.unlabeled={listed}"])
    pool = _unlabeled(tmp_path / "pool.csv", ["a text"])
    with pytest.raises(ConfigError, match=r"self_training: data\.task=multi_label is not supported"):
        tunelab.train(None, overrides=[*base, "data.task=multi_label", f"self_training.unlabeled={pool}"])
    train, test = tagged_jsonls
    ner = tiny_overrides(tiny_bert, train, test, runs, "data.task=token_classification", epochs=1)
    with pytest.raises(ConfigError, match=r"data\.task=token_classification is not supported"):
        tunelab.train(None, overrides=[*ner, f"self_training.unlabeled={pool}"])
    assert not runs.exists() or not any(runs.iterdir())


def test_nothing_is_added_without_new_texts_or_with_one_label(
    tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path
) -> None:
    """Both paths return before anything is encoded (no model is needed), with a note saying why."""
    overrides = tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path / "runs")
    splits = get_task("single_label").load_splits(RunConfig.from_yaml(None, overrides).data)
    old = _unlabeled(tmp_path / "old.csv", [splits.train.texts[0], splits.test.texts[0]])
    cfg = RunConfig.from_yaml(None, [*overrides, f"self_training.unlabeled={old}"])
    out, info = pseudo_rows.add_pseudo_labelled_rows(splits, splits.train, _read(cfg), cfg, None, None, None)
    assert info["added"] == 0 and info["pool"] == 0 and out.train.texts == splits.train.texts
    assert out.notes[-1] == "self_training: no row added (no unlabelled text is new)"
    new = _unlabeled(tmp_path / "new.csv", ["a text no split holds"])
    cfg = RunConfig.from_yaml(None, [*overrides, f"self_training.unlabeled={new}"])
    one = splits.train.take([i for i, label in enumerate(splits.train.labels) if label == 0])
    out, info = pseudo_rows.add_pseudo_labelled_rows(splits, one, _read(cfg), cfg, None, None, None)
    assert info["added"] == 0 and info["pool"] == 1 and len(out.train) == len(splits.train)
    assert out.notes[-1] == "self_training: no row added (the training rows have one label)"


def test_the_unlabelled_file_is_read_with_its_own_options(train_csv: Path, tmp_path: Path) -> None:
    """The training file's options describe that file: with a Financial PhraseBank run's (`@`, no
    header, Latin-1) a plain CSV's header line became a text to pseudo-label, and with
    data.format=csv a JSON lines file was one unsplit column."""
    fpb = tmp_path / "fpb.txt"
    fpb.write_bytes("pizza caf\u00e9@food\ngoal today@sports\n".encode("latin-1"))
    tickets = _unlabeled(tmp_path / "tickets.csv", ["my pizza was cold", "the football match today"])
    as_phrasebank = [f"data.train={fpb}", "data.separator=@", "data.header=false",
                     "data.column_names=[text,label]", "data.encoding=latin-1"]  # fmt: skip
    cfg = RunConfig.from_yaml(None, [*as_phrasebank, f"self_training.unlabeled={tickets}"])
    assert _read(cfg) == (["my pizza was cold", "the football match today"], 0)
    jsonl = tmp_path / "tickets.jsonl"
    jsonl.write_text('{"text": "a goal"}\n{"text": "some soup"}\n', encoding="utf-8")
    cfg = RunConfig.from_yaml(
        None, [f"data.train={train_csv}", "data.format=csv", f"self_training.unlabeled={jsonl}"]
    )
    assert _read(cfg) == (["a goal", "some soup"], 0)
    # the training file itself, given as the unlabelled one, is read as the run reads it
    cfg = RunConfig.from_yaml(None, [*as_phrasebank, f"self_training.unlabeled={fpb}"])
    assert _read(cfg) == (["pizza caf\u00e9", "goal today"], 0)
    # a headerless file of one text a line, laid out as the run's own: read with the run's options
    lines = tmp_path / "lines.txt"
    lines.write_bytes("the soup was cold\nwhat a goal\n".encode("latin-1"))
    cfg = RunConfig.from_yaml(None, [*as_phrasebank, f"self_training.unlabeled={lines}"])
    assert _read(cfg) == (["the soup was cold", "what a goal"], 0)
    # one whose first line has two equal cells: read with a header assumed, it named a column twice
    years = tmp_path / "years.txt"
    years.write_bytes("2024@2024@profit rose sharply\n2023@2024@sales fell\n".encode("latin-1"))
    three = [*as_phrasebank[:3], "data.column_names=[year,filed,text]", "data.encoding=latin-1"]
    cfg = RunConfig.from_yaml(None, [*three, f"self_training.unlabeled={years}"])
    assert _read(cfg) == (["profit rose sharply", "sales fell"], 0)


@pytest.mark.parametrize("content", ["text\n", "\n\n\n"])
def test_an_unlabelled_file_without_rows_names_the_setting(
    train_csv: Path, tmp_path: Path, content: str
) -> None:
    """ "u2.csv: no data rows" did not say which setting named the file."""
    path = tmp_path / "u2.csv"
    path.write_text(content, encoding="utf-8")
    cfg = RunConfig.from_yaml(None, [f"data.train={train_csv}", f"self_training.unlabeled={path}"])
    with pytest.raises(DataError, match=r"^self_training\.unlabeled: .*u2\.csv: ") as caught:
        _read(cfg)
    assert "\n" not in str(caught.value)
