"""Review fixes: a run name ending in .partial, outputs and databases that cannot be written, the
search seed's range, ``validate``'s one line per problem, ``usage --csv`` over an existing file,
Optuna's INFO lines under ``search -q``, and positionals after an option for ``ensemble``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.cli.main import main
from tunelab.config import RunConfig
from tunelab.errors import ConfigError, DataError

PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self").is_dir(), reason="needs Linux /proc")


def error_lines(err: str) -> list[str]:
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and "unexpected" not in err, err
    return lines


# -- 1: a run name ending in .partial --------------------------------------------------------------


def test_a_run_name_ending_in_partial_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """It trained, was renamed to runs/x.partial, and every later command took it for unfinished."""
    with pytest.raises(
        ConfigError, match=r"name='x\.partial' \(a name ending in \.partial marks an unfinished"
    ):
        RunConfig.from_dict({"name": "x.partial"})
    assert RunConfig.from_dict({"name": "x.partial-2"}).name == "x.partial-2"
    assert main(["validate", "name=x.partial"]) == 2
    assert any("name='x.partial'" in line for line in error_lines(capsys.readouterr().err))


# -- 2: a database that cannot be created ------------------------------------------------------------


def test_a_database_under_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`keys list --data-dir fx/train.csv` (a file) was "unexpected FileExistsError", exit 1."""
    afile = tmp_path / "train.csv"
    afile.write_text("text,label\n", encoding="utf-8")
    assert main(["keys", "list", "--data-dir", str(afile)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert (
        f"cannot create SQLite database {afile / 'tunelab.db'}: {afile} is a file, not a folder" in lines[0]
    )
    assert afile.read_text(encoding="utf-8") == "text,label\n"


@needs_proc
def test_a_database_where_no_file_can_be_made_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # keys create: the read-only commands refuse a --db that does not exist before making one
    assert main(["keys", "create", "--name", "x", "--db", "/proc/sub/x.db"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "cannot create SQLite database /proc/sub/x.db: " in lines[0]
    assert "--data-dir" in lines[0]


# -- 3: the search seed ----------------------------------------------------------------------------------


def write_space(tmp_path: Path) -> Path:
    space = tmp_path / "space.yaml"
    space.write_text("train.learning_rate: [0.005]\n", encoding="utf-8")
    return space


@pytest.fixture
def one_epoch(tiny_bert: Path, train_csv: Path, tiny_overrides, tmp_path: Path) -> list[str]:
    return tiny_overrides(tiny_bert, train_csv, None, tmp_path / "runs", "train.head_init=random", epochs=1)


def test_a_seed_out_of_range_is_refused_before_anything_is_written(
    one_epoch: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It failed "unexpected ValueError: Seed must be between 0 and 2**32 - 1" after the search folder,
    study.db and search.json were written."""
    from tunelab.search import search

    space = write_space(tmp_path)
    for seed in (-1, 2**32):
        with pytest.raises(ConfigError, match=rf"^--seed {seed}: use 0 to 4294967295$"):
            search(None, space=space, trials=1, overrides=one_epoch, out=tmp_path / "s", seed=seed)
        assert not (tmp_path / "s").exists()
    argv = ["search", *one_epoch, "--space", str(space), "--out", str(tmp_path / "s"), "--seed", "-1"]
    assert main(argv) == 2
    assert error_lines(capsys.readouterr().err) == ["error: --seed -1: use 0 to 4294967295"]
    assert not (tmp_path / "s").exists()


def test_a_search_seeded_at_the_top_of_the_range_can_be_extended(
    one_epoch: list[str], tmp_path: Path
) -> None:
    """train.seed=4294967295 is valid, but a second trial seeded its sampler with 2**32."""
    from tunelab.search import search

    space = write_space(tmp_path)
    overrides = [*one_epoch, "train.seed=4294967295"]
    for trials in (1, 2):
        result = search(
            None, space=space, trials=trials, overrides=overrides, out=tmp_path / "s", show_progress=False
        )
        assert len(result.trials) == trials


# -- 4: outputs that cannot be written ------------------------------------------------------------------


@needs_proc
def test_a_temp_file_error_names_the_file_being_written() -> None:
    from tunelab.atomic import atomic_write_text

    with pytest.raises(OSError) as caught:
        atomic_write_text("/proc/p.csv", "x")
    assert caught.value.filename == "/proc/p.csv"
    assert ".tmp" not in str(caught.value)


@needs_proc
def test_predict_output_in_a_folder_that_takes_no_file_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was "unexpected FileNotFoundError: '/proc/.p.csv.8e946dd66b49.tmp'" after every prediction."""
    from tunelab.inference.files import output_format

    with pytest.raises(
        DataError, match=r"^--output /proc/p\.csv: cannot write in /proc \(.+\); give another"
    ):
        output_format("/proc/p.csv")
    with pytest.raises(DataError, match=r"cannot write in /proc \("):
        output_format("/proc/sub/p.csv")
    inputs = tmp_path / "in.csv"
    inputs.write_text("text\nhello\n", encoding="utf-8")
    # before any model is loaded: the run does not even exist
    assert main(["predict", str(tmp_path / "no-run"), "--input", str(inputs), "--output", "/proc/p.csv"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "--output /proc/p.csv: cannot write in /proc" in lines[0]
    output_format(tmp_path / "new" / "p.csv")  # a folder to make in a writable one: fine
    assert sorted(os.listdir(tmp_path)) == ["in.csv"], "the probe file is removed"


@needs_proc
def test_eval_out_in_a_folder_that_takes_no_file_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "test.csv"
    data.write_text("text,label\nhello,a\n", encoding="utf-8")
    assert main(["eval", str(tmp_path / "no-run"), "--data", str(data), "--out", "/proc/rep"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "--out /proc/rep: cannot write in /proc" in lines[0]


@needs_proc
def test_usage_csv_in_a_folder_that_takes_no_file_is_refused_up_front(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["usage", "--csv", "/proc/x.csv"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "--csv /proc/x.csv: cannot write in /proc" in lines[0]


# -- 5: validate, one line per problem, and the checks beside a bad field ------------------------------


def test_validate_reports_each_config_problem_and_still_checks_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The config's problems came as one line joined by ';', and the data file and the method options
    were never checked."""
    missing = tmp_path / "nope.csv"
    argv = [
        "validate",
        f"data.train={missing}",
        "train.epochs=0",
        "train.batch_size=0",
        "method=lora",
        "method.rank=4",
    ]
    assert main(argv) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 4, lines
    assert lines[0] == "error: train.epochs=0 (use a positive number, e.g. 3)"
    assert lines[1] == "error: train.batch_size=0 (use 1 or more)"
    assert "unknown option(s) rank" in lines[2]
    assert str(missing) in lines[3] and "not found" in lines[3]
    assert main([*argv, "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["run"] is None
    assert [p.split(" (")[0] for p in report["problems"][:2]] == ["train.epochs=0", "train.batch_size=0"]
    assert len(report["problems"]) == 4


def test_validate_skips_only_the_checks_reading_a_bad_section(tmp_path: Path) -> None:
    from tunelab.preflight import validate_run

    # a bad data field: no "data.train is not set" about the defaults standing in for it
    report = validate_run(None, overrides=["data.dev_size=2", "method=lora", "method.rank=4"])
    assert len(report.problems) == 3, report.problems
    assert report.problems[0].startswith("data.dev_size=2")
    assert report.problems[1] == "data.dev_size + test_size must leave rows for training"
    assert "unknown option(s) rank" in report.problems[2]
    # not a field problem (an override without '='): that one line only
    assert validate_run(None, overrides=["train.epochs"]).problems[0].startswith("override 'train.epochs'")


# -- 6: usage --csv over an existing file ----------------------------------------------------------------


def test_usage_csv_leaves_an_existing_file_alone_unless_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "keep.csv"
    target.write_text("mine\n", encoding="utf-8")
    assert main(["usage", "--csv", str(target), "--data-dir", str(tmp_path / "d")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines == [f"error: --csv {target} exists; give --overwrite to replace it, or another file"]
    assert target.read_text(encoding="utf-8") == "mine\n"
    assert main(["usage", "--csv", str(target), "--data-dir", str(tmp_path / "d"), "--overwrite"]) == 0
    assert target.read_text(encoding="utf-8").startswith("time,key,")


# -- 7: Optuna's INFO lines under search -q ------------------------------------------------------------


def test_search_prints_no_optuna_info_lines(one_epoch: list[str], tmp_path: Path) -> None:
    """The CLI set optuna's logger level before optuna was imported, and its import set INFO again.
    A fresh process, so that optuna is imported there for the first time."""
    space = write_space(tmp_path)
    argv = ["search", *one_epoch, "train.threads=1", "--space", str(space), "--trials", "1"]
    argv += ["--out", str(tmp_path / "s"), "-q"]
    done = subprocess.run(
        [sys.executable, "-m", "tunelab.cli.main", *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "best: dev" in done.stdout
    assert "A new study created" not in done.stdout + done.stderr
    assert "INFO" not in done.stderr, done.stderr


# -- 8: positionals after an option, for nargs="+" ---------------------------------------------------------


def test_ensemble_runs_may_follow_an_option() -> None:
    """`tunelab ensemble runs/a --out runs/ens runs/b` failed "unrecognized arguments: runs/b"."""
    from tunelab.cli.main import _take_late_positionals, build_parser

    parser = build_parser()
    args, extras = parser.parse_known_args(["ensemble", "runs/a", "--out", "runs/ens", "runs/b"])
    _take_late_positionals(parser, args, extras)
    assert args.runs == ["runs/a", "runs/b"] and args.out == "runs/ens"
