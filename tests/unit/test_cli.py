"""The ``tunelab`` command line, in process: what each command prints, writes and exits with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tunelab.cli.main import main

PCT = r"\d{1,3}\.\d\d%"


def fast(tiny_bert: Path) -> list[str]:
    return [
        f"model.name={tiny_bert}",
        "model.max_length=32",
        "model.pooling=mean",  # the tiny random encoder learns the toy classes reliably this way
        "train.batch_size=8",
        "train.epochs=6",
        "train.learning_rate=0.005",
        "train.patience=null",
    ]


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def cli_run(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A finished run trained through ``tunelab train`` with overrides only (no YAML file)."""
    out = tmp_path_factory.mktemp("cli-runs")
    train, test = labelled_csvs
    argv = [
        "train",
        f"data.train={train}",
        f"data.test={test}",
        f"output_dir={out}",
        "name=cli",
        *fast(tiny_bert),
    ]
    assert main([*argv, "-q"]) == 0
    return out / "cli"


# -- help ------------------------------------------------------------------------------------------


def test_help_lists_the_commands_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "eval", "predict", "runs", "validate"):
        assert re.search(rf"^\s+{command}\s", out, re.MULTILINE), command
    assert "examples:" in out
    assert "tunelab predict runs/banking77" in out


@pytest.mark.parametrize("command", ["train", "eval", "predict", "runs", "validate"])
def test_each_command_help_has_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert re.search(r"examples?:", out)
    assert f"tunelab {command}" in out


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: tunelab" in capsys.readouterr().out


# -- train -----------------------------------------------------------------------------------------


def test_train_from_yaml_prints_run_and_accuracy(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = labelled_csvs
    config = tmp_path / "run.yaml"
    config.write_text(
        f"name: from-yaml\noutput_dir: {tmp_path / 'runs'}\n"
        f"data:\n  train: {train}\n  test: {test}\n"
        f"model:\n  name: {tiny_bert}\n  max_length: 32\n  pooling: mean\n"
        "train:\n  batch_size: 8\n  epochs: 9\n  learning_rate: 0.005\n  patience: null\n",
        encoding="utf-8",
    )
    assert main(["train", str(config), "train.epochs=6", "-q"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "from-yaml"
    assert f"run: {run}" in out
    assert "method full" in out and "42 steps" in out  # epochs=6 from the override, not 9
    assert re.search(rf"test \(24 rows\):\n\s+accuracy\s+{PCT}", out)
    accuracy = float(re.search(rf"test \(24 rows\):\n\s+accuracy\s+({PCT})", out).group(1).rstrip("%"))
    assert accuracy >= 80.0
    assert f"report: {run / 'report.html'}" in out
    assert (run / "report.html").is_file()


def test_train_with_bad_data_is_one_error_line(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "train",
        f"data.train={tmp_path / 'missing.csv'}",
        f"output_dir={tmp_path / 'runs'}",
        *fast(tiny_bert),
    ]
    assert main(argv) == 2
    assert_one_error_line(capsys.readouterr().err, "missing.csv")
    assert not (tmp_path / "runs").exists()


# -- predict ---------------------------------------------------------------------------------------


def test_predict_one_text(cli_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(cli_run), "football match with my team"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("football match with my team\n  -> sports (")
    assert re.search(r"also: (food|weather) \d\.\d{3}, (food|weather) \d\.\d{3}", out)


def test_predict_several_texts(cli_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = ["football match with my team", "pizza and cheese for dinner", "snow and cold wind"]
    assert main(["predict", str(cli_run), *texts, "--top-k", "1"]) == 0
    out = capsys.readouterr().out
    labels = re.findall(r"-> (\w+) \(\d\.\d{3}\)", out)
    assert labels == ["sports", "food", "weather"]
    assert "also:" not in out  # --top-k 1


def test_predict_json(cli_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # texts the run labels right (test_predict_several_texts); it calls a bare "rain storm" sports
    texts = ["football match with my team", "snow and cold wind"]
    assert main(["predict", str(cli_run), *texts, "--json", "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["text"] for r in rows] == texts
    assert [r["label"] for r in rows] == ["sports", "weather"]
    for row in rows:
        assert 0 < row["score"] <= 1
        assert len(row["top_k"]) == 2 and row["top_k"][0] == {"label": row["label"], "score": row["score"]}
        assert row["top_k"][0]["score"] >= row["top_k"][1]["score"]


def test_predict_file_to_jsonl(cli_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = ["football match with my team", "pizza and cheese for dinner", "", "snow and cold wind"]
    source = tmp_path / "tickets.csv"
    pd.DataFrame({"id": ["t1", "t2", "t3", "t4"], "text": texts}).to_csv(source, index=False)
    target = tmp_path / "out" / "predictions.jsonl"
    assert main(["predict", str(cli_run), "--input", str(source), "--output", str(target)]) == 0
    # The empty third row is dropped (the run's empty_text policy), the others keep their ids.
    assert f"wrote 3 predictions to {target}" in capsys.readouterr().out
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3
    assert [r["id"] for r in rows] == ["t1", "t2", "t4"]
    assert [r["text"] for r in rows] == [texts[0], texts[1], texts[3]]
    assert [r["label"] for r in rows] == ["sports", "food", "weather"]
    assert all(len(r["top_k"]) == 3 for r in rows)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ([], "give texts to label"),
        (["a text", "--input", "x.csv", "--output", "y.jsonl"], "not both"),
        (["--input", "x.csv"], "--input needs --output"),
        (["a text", "--top-k", "0"], "--top-k 0"),
    ],
)
def test_predict_usage_errors(
    cli_run: Path, extra: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(cli_run), *extra]) == 2
    assert_one_error_line(capsys.readouterr().err, fragment)


def test_predict_on_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(tmp_path / "nope"), "hello"]) == 2
    assert_one_error_line(capsys.readouterr().err, "no such run folder")


# -- eval ------------------------------------------------------------------------------------------


def test_eval_with_data_prints_accuracy_and_writes_a_report(
    cli_run: Path, labelled_csvs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    test = labelled_csvs[1]
    assert main(["eval", str(cli_run), "--data", str(test)]) == 0
    out = capsys.readouterr().out
    assert f"{test} (24 rows):" in out
    accuracy = float(re.search(rf"accuracy\s+({PCT})", out).group(1).rstrip("%"))
    saved = json.loads((cli_run / "metrics.json").read_text(encoding="utf-8"))["test"]["accuracy"]
    assert accuracy == pytest.approx(100 * saved, abs=0.01)  # same file, same model, same numbers
    report = cli_run / "evals" / test.stem / "report.html"
    assert f"report: {report}" in out and report.is_file()
    assert (cli_run / "evals" / test.stem / "metrics.json").is_file()


def test_eval_without_data_shows_saved_metrics(
    cli_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(cli_run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("saved test metrics (24 rows):")
    assert re.search(rf"macro_f1\s+{PCT}", out)
    # A run without test data shows dev's, and says so (it printed "saved metrics" for either).
    import shutil

    dev_only = shutil.copytree(cli_run, tmp_path / "dev-only")
    saved = json.loads((dev_only / "metrics.json").read_text(encoding="utf-8"))
    saved.pop("test")
    (dev_only / "metrics.json").write_text(json.dumps(saved), encoding="utf-8")
    assert main(["eval", str(dev_only)]) == 0
    assert capsys.readouterr().out.startswith("saved dev metrics (")


def test_eval_with_an_unseen_label(cli_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "other.csv"
    data.write_text("text,label\nguitar concert,music\n", encoding="utf-8")
    assert main(["eval", str(cli_run), "--data", str(data)]) == 2
    assert_one_error_line(capsys.readouterr().err, "'music'", "other.csv")


# -- runs ------------------------------------------------------------------------------------------


def test_runs_lists_the_run_with_its_method(cli_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--dir", str(cli_run.parent)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["run", "status", "model", "method"]
    row = next(line for line in lines if line.startswith("cli "))
    assert row.split()[1:2] == ["finished"] and " full " in row
    assert re.search(PCT, row)


def test_runs_shows_unfinished_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "half.partial"
    partial.mkdir()
    (partial / "config.json").write_text("{}", encoding="utf-8")
    (partial / "run.json").write_text(json.dumps({"method": "lora", "model": "minilm-l6"}), encoding="utf-8")
    assert main(["runs", "--dir", str(tmp_path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("half.partial"))
    assert row.split()[1:4] == ["unfinished", "minilm-l6", "lora"]


def test_runs_in_an_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "none").mkdir()  # a folder that does not exist is an error (test_runs_listing)
    assert main(["runs", "--dir", str(tmp_path / "none")]) == 0
    assert "no runs in" in capsys.readouterr().out


# -- validate --------------------------------------------------------------------------------------


def test_validate_a_good_config(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text(f"data:\n  train: {labelled_csvs[0]}\nmodel:\n  name: {tiny_bert}\n", encoding="utf-8")
    assert main(["validate", str(config), "method=lora", "method.r=4"]) == 0
    out = capsys.readouterr().out
    assert "config ok" in out and "method lora" in out and "(local:" in out
    assert "data ok: 3 labels (single_label); rows: train 54, dev 6" in out


def test_validate_reports_every_problem_one_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad field its own line (they were one, joined by ';'), and the checks that do not read a
    bad section still made: the missing data.train is reported too."""
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  epochs: 0\n  batch_size: 0\nmodel:\n  max_length: 2\n", encoding="utf-8")
    assert main(["validate", str(config)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "error: model.max_length=2",
        "error: train.epochs=0",
        "error: train.batch_size=0",
        "error: data.train is not set; give a training file, e.g. data.train=path/to/train.csv",
    ]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["method=lora", "method.rank=4"], "unknown option(s) rank"),
        (["model.name=bert-base-uncased"], "minilm-l6"),
        (["data.train=/no/such/train.csv"], "/no/such/train.csv"),
    ],
)
def test_validate_checks_method_model_and_data(
    overrides: list[str], fragment: str, train_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A good training file unless the case is about that: a missing data.train is a problem too.
    given = [] if any(o.startswith("data.train=") for o in overrides) else [f"data.train={train_csv}"]
    assert main(["validate", *given, *overrides]) == 2
    assert_one_error_line(capsys.readouterr().err, fragment)


def test_validate_rejects_an_unknown_metric(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "train.metric=acc"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: train.metric='acc' (use one of accuracy")
    assert lines[1].startswith("error: data.train is not set")  # still checked beside the bad metric


# -- errors ----------------------------------------------------------------------------------------


def test_unexpected_errors_exit_1_and_point_to_verbose(
    monkeypatch: pytest.MonkeyPatch, cli_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import tunelab.inference

    def boom(path: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(tunelab.inference, "load", boom)
    assert main(["predict", str(cli_run), "hello"]) == 1
    assert_one_error_line(capsys.readouterr().err, "unexpected RuntimeError: boom", "-v")
    with pytest.raises(RuntimeError, match="boom"):
        main(["-v", "predict", str(cli_run), "hello"])


def test_options_may_come_between_the_run_and_its_texts(
    cli_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse filled `texts` before the first option: `predict RUN --top-k 2 "text"` and `predict
    RUN -v "text"` failed with "unrecognized arguments", though options may go before or after."""
    assert main(["predict", str(cli_run), "--top-k", "2", "pizza tonight", "-v", "rain again"]) == 0
    out = capsys.readouterr().out
    assert "pizza tonight" in out and "rain again" in out
    with pytest.raises(SystemExit):  # an unknown option is still one
        main(["predict", str(cli_run), "pizza", "--no-such-option"])
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_every_command_and_subcommand_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    """`tunelab app monitor run --help` went from its usage line straight to the options."""
    import argparse

    from tunelab.cli.main import build_parser

    def leaves(parser: argparse.ArgumentParser, path: list[str]):  # type: ignore[no-untyped-def]
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield path, parser
        for sub in subs:
            for name, child in sub.choices.items():
                yield from leaves(child, [*path, name])

    missing = [
        " ".join(path) for path, parser in leaves(build_parser(), []) if path and not parser.description
    ]
    assert missing == []
