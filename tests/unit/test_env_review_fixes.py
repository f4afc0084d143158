"""Fixes from a review of unusual process environments: a locale that is not UTF-8, a database named
by ``$TUNELAB_DB``, progress bars with stderr redirected to a log."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tunelab
from tunelab.cli.main import main

LOCALE_FIX = "set a UTF-8 locale (e.g. LANG=C.UTF-8) or PYTHONUTF8=1 and run again"


def _ascii_locale_env() -> dict[str, str]:
    """``LC_ALL=C`` with Python's UTF-8 mode off: arguments and file names are ASCII to Python."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONUTF8"))}
    return {**env, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": "utf-8"}


def _tunelab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from tunelab.cli.main import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=_ascii_locale_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )


@pytest.fixture
def non_ascii_train(labelled_csvs: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copy(labelled_csvs[0], tmp_path / "tráin 日本.csv"))


def test_a_non_ascii_argument_under_an_ascii_locale_is_refused_naming_the_locale(
    tiny_bert: Path, tiny_overrides, non_ascii_train: Path, tmp_path: Path
) -> None:
    """It failed part-way: logging tracebacks, "unexpected UnicodeEncodeError" and a .partial run."""
    out = tmp_path / "runs"
    done = _tunelab(
        "train", "-q", *tiny_overrides(tiny_bert, non_ascii_train, None, out, "name=r"), cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: argument 3 (")  # train, -q, data.train=...
    assert done.stderr.count("\n") == 1, done.stderr
    assert LOCALE_FIX in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_a_non_ascii_text_under_an_ascii_locale_blames_the_locale_not_the_text(tmp_path: Path) -> None:
    """It said "not valid Unicode ... fix the text" of a text that was valid UTF-8."""
    done = _tunelab("predict", str(tmp_path / "no-such-run"), "pizza café", cwd=tmp_path)
    assert done.returncode == 2
    assert "argument 3" in done.stderr and LOCALE_FIX in done.stderr
    assert "not valid Unicode" not in done.stderr


def test_a_non_ascii_data_file_in_a_run_file_is_not_called_missing(
    tiny_bert: Path, non_ascii_train: Path, tmp_path: Path
) -> None:
    """The file is there: pathlib answers "not there" when the name cannot be encoded."""
    config = tmp_path / "run.yaml"
    config.write_text(
        f'data:\n  train: "{non_ascii_train}"\nmodel:\n  name: "{tiny_bert}"\n'
        f'output_dir: "{tmp_path / "runs"}"\n',
        encoding="utf-8",
    )
    done = _tunelab("train", "-q", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert "file not found" not in done.stderr
    assert (
        "data.train: " in done.stderr
        and "locale's encoding (ascii)" in done.stderr
        and LOCALE_FIX in done.stderr
    )


def test_a_run_naming_non_ascii_files_evaluated_under_an_ascii_locale_says_why(
    tiny_bert: Path, tiny_overrides, non_ascii_train: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    """`eval` and `predict --input` read the run's own file names: "unexpected UnicodeEncodeError".
    Then `eval` of another file was refused for the run's training file's name; it scores the file
    and says in one warning that its rows could not be compared with the training rows, and why."""
    run = tunelab.train(
        None,
        overrides=tiny_overrides(tiny_bert, non_ascii_train, None, tmp_path / "runs", "name=r", epochs=1),
        show_progress=False,
    ).run_dir
    test = shutil.copy(labelled_csvs[1], tmp_path / "test.csv")
    done = _tunelab("eval", str(run), "--data", str(test), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "unexpected" not in done.stderr and done.stderr.count("\n") == 1
    assert "could not be compared with the run's training rows" in done.stderr
    assert (
        "this locale's encoding (ascii)" in done.stderr
        and "the score may not be a held-out one" in done.stderr
    )
    done = _tunelab("predict", str(run), "--input", str(test), "--output", "p.csv", "-q", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.parametrize(("given", "named"), [("env", "$TUNELAB_DB"), ("flag", "--db")])
def test_a_bad_database_is_named_by_where_it_came_from(
    given: str,
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A value from $TUNELAB_DB was reported as a bad --db, which the cron job never passed."""
    bad = str(tmp_path / "data")
    monkeypatch.delenv("TUNELAB_DB", raising=False)
    if given == "env":
        monkeypatch.setenv("TUNELAB_DB", bad)
    assert main(["keys", "list", *(["--db", bad] if given == "flag" else [])]) == 2
    assert capsys.readouterr().err.startswith(f"error: {named} {bad!r}: use postgresql://")


def _train_stderr(
    tiny_bert: Path,
    tiny_overrides,
    labelled_csvs: tuple[Path, Path],
    out: Path,
    capsys: pytest.CaptureFixture[str],
) -> str:
    train, test = labelled_csvs
    assert main(["train", *tiny_overrides(tiny_bert, train, test, out, "name=r", epochs=1)]) == 0
    return capsys.readouterr().err


def test_a_training_log_redirected_to_a_file_gets_no_progress_bar(
    tiny_bert: Path, tiny_overrides, labelled_csvs: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    """`tunelab train ... 2> train.log` (cron, CI) got one long line of carriage-return frames."""
    err = _train_stderr(tiny_bert, tiny_overrides, labelled_csvs, tmp_path / "a", capsys)
    assert "\r" not in err and "train:" not in err, err


def test_a_training_on_a_terminal_draws_its_progress_bar(
    tiny_bert: Path,
    tiny_overrides,
    labelled_csvs: tuple[Path, Path],
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    err = _train_stderr(tiny_bert, tiny_overrides, labelled_csvs, tmp_path / "b", capsys)
    assert "train:" in err and "100%" in err, err


def _python_in_ascii_locale(
    code: str, cwd: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in _ascii_locale_env().items() if k != "PYTHONIOENCODING"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, input=stdin, capture_output=True, timeout=300
    )


@pytest.mark.parametrize("kind", ["recommender items", "monitor follow"])
def test_an_app_file_named_in_a_config_under_an_ascii_locale_is_not_called_missing(
    kind: str, tmp_path: Path
) -> None:
    """The recommender said "items file not found" and the monitor "does not exist" of a file there."""
    there = tmp_path / "itéms.csv"
    there.write_text("item_id,title\n1,a\n", encoding="utf-8")
    code = {
        "recommender items": "from tunelab.apps.recommend.data import read_table\n"
        "    read_table(P, 'csv', 'items')",
        "monitor follow": "from tunelab.apps.monitor.config import Source\n"
        "    Source('follow', P).check('sources[0]')",
    }[kind]
    # the name as a config file (UTF-8 YAML) gives it: text, which this locale cannot encode
    prelude = f"from pathlib import Path; P = Path({str(there)!a})\n"
    done = _python_in_ascii_locale(
        prelude + "try:\n    " + code + "\nexcept Exception as e: print(ascii(str(e)))", tmp_path
    )
    said = done.stdout.decode("ascii", "backslashreplace")
    assert done.returncode == 0, done.stderr
    assert "not found" not in said and "does not exist" not in said, said
    assert "locale's encoding (ascii)" in said and LOCALE_FIX in said, said


def test_a_chat_message_under_an_ascii_locale_blames_the_locale_not_the_text(tmp_path: Path) -> None:
    """A valid "café" typed into `app support chat` was "not valid Unicode ... fix the text"."""
    from tunelab.cli import app_cmd

    code = (
        "import sys; from tunelab.cli.app_cmd import _outside_stdin_locale as f; "
        "line = sys.stdin.readline().rstrip('\\n'); print(f(line)); print(f('plain ascii'))"
    )
    done = _python_in_ascii_locale(code, tmp_path, stdin="pizza café\n".encode())
    first, second = done.stdout.decode("ascii", "backslashreplace").splitlines()
    assert "standard input's encoding (ascii) cannot read this message" in first and LOCALE_FIX in first
    assert second == "None"
    assert app_cmd._outside_stdin_locale("pizza café") is None  # this process reads UTF-8


def test_an_export_with_stderr_redirected_draws_no_progress_bar(
    tiny_bert: Path, tiny_overrides, labelled_csvs: tuple[Path, Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    """`tunelab export ... 2> log` got the bar's carriage-return frames; a terminal still gets them."""
    train, test = labelled_csvs
    run = tunelab.train(
        None,
        overrides=tiny_overrides(tiny_bert, train, test, tmp_path, "name=r", epochs=1),
        show_progress=False,
    ).run_dir
    capsys.readouterr()
    tunelab.export(run, format="onnx", output=tmp_path / "a", max_drop=100, show_progress=True)
    assert "\r" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    tunelab.export(run, format="onnx", output=tmp_path / "b", max_drop=100, show_progress=True)
    assert "export: " in capsys.readouterr().err


def test_a_merge_with_stderr_redirected_draws_no_progress_bar(
    tiny_bert: Path, tiny_overrides, labelled_csvs: tuple[Path, Path], tmp_path: Path, capsys, monkeypatch
) -> None:
    train, test = labelled_csvs
    overrides = tiny_overrides(tiny_bert, train, test, tmp_path, "name=r", "method=lora", epochs=1)
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    capsys.readouterr()
    tunelab.merge(run, output=tmp_path / "a", show_progress=True)
    assert "\r" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    tunelab.merge(run, output=tmp_path / "b", show_progress=True)
    assert "merge: " in capsys.readouterr().err
