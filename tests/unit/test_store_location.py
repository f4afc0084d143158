"""One key and usage database whatever the current directory: ``tunelab keys``, ``tunelab usage``
and the server started anywhere use the user data folder (or ``--data-dir`` /
``$TUNELAB_DATA_DIR``), and each command says on stderr which database it used."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tunelab.cli.main import main
from tunelab.serve.app import create_app
from tunelab.serve.settings import ServeSettings


@pytest.fixture
def default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ``$TUNELAB_DATA_DIR``: the default applies. HOME and XDG_DATA_HOME point into tmp_path so
    the test never writes under the real home; returns the database the default must be."""
    from platformdirs import user_data_path

    monkeypatch.delenv("TUNELAB_DATA_DIR", raising=False)
    monkeypatch.delenv("TUNELAB_DB", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    db = user_data_path("tunelab", appauthor=False) / "tunelab.db"
    assert tmp_path in db.parents, db  # the user data folder follows HOME / XDG_DATA_HOME
    return db


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def workdir(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_keys_usage_and_server_share_one_database_from_any_directory(
    default_location: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    here = workdir(tmp_path, "project-a", monkeypatch)
    code, out, err = cli(capsys, "keys", "create", "--name", "acme")
    assert code == 0, err
    token = out.splitlines()[1]
    assert f"database: SQLite {default_location}" in err

    elsewhere = workdir(tmp_path, "project-b", monkeypatch)
    code, out, err = cli(capsys, "keys", "list")
    assert code == 0 and "acme" in out, out
    assert err.strip() == f"database: SQLite {default_location}"
    code, out, err = cli(capsys, "usage")
    assert code == 0 and err.strip() == f"database: SQLite {default_location}"

    # A server started in a third directory knows the key.
    workdir(tmp_path, "server", monkeypatch)
    assert ServeSettings().data_dir == default_location.parent
    with TestClient(create_app(ServeSettings())) as client:
        r = client.get("/v1/usage", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    # Nothing was created in the directories the commands ran in.
    assert not (here / ".tunelab").exists() and not (elsewhere / ".tunelab").exists()
    assert not (tmp_path / "server" / ".tunelab").exists()


def test_data_dir_flag_and_environment_choose_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TUNELAB_DB", raising=False)
    flag, env = tmp_path / "flag", tmp_path / "env"
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(env))
    code, _, err = cli(capsys, "keys", "create", "--name", "acme", "--data-dir", str(flag))
    assert code == 0 and err.startswith(f"database: SQLite {flag / 'tunelab.db'}"), err
    code, out, err = cli(capsys, "keys", "list")
    assert code == 0 and "no keys yet" in out and f"database: SQLite {env / 'tunelab.db'}" in err
    code, out, err = cli(capsys, "keys", "list", "--data-dir", str(flag))
    assert code == 0 and "acme" in out and f"SQLite {flag / 'tunelab.db'}" in err
    assert ServeSettings().data_dir == env


def test_an_explicit_data_dir_beats_tunelab_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``$TUNELAB_DB`` silently won over ``--data-dir``: keys went to another database than the one
    the command named (the variable's, relative to the current directory)."""
    from tunelab.cli.serve_cmd import build_settings, register

    workdir(tmp_path, "cwd", monkeypatch)
    monkeypatch.setenv("TUNELAB_DB", "from-env.db")
    flag = tmp_path / "flag"
    code, _, err = cli(capsys, "keys", "create", "--name", "acme", "--data-dir", str(flag))
    assert code == 0 and err.startswith(f"database: SQLite {flag / 'tunelab.db'}"), err
    assert (flag / "tunelab.db").is_file() and not (tmp_path / "cwd" / "from-env.db").exists()
    code, out, err = cli(capsys, "keys", "list")  # no flag: the variable, whose file is not there yet
    assert code == 2 and "$TUNELAB_DB from-env.db: no such database" in err, err
    code, out, err = cli(capsys, "keys", "create", "--name", "env")  # no flag: the variable
    assert code == 0 and f"SQLite {tmp_path / 'cwd' / 'from-env.db'}" in err
    code, out, err = cli(capsys, "keys", "list")
    assert code == 0 and "env" in out and f"SQLite {tmp_path / 'cwd' / 'from-env.db'}" in err
    code, out, err = cli(
        capsys, "keys", "create", "--name", "b", "--db", str(tmp_path / "given.db"), "--data-dir", str(flag)
    )
    assert code == 0 and f"SQLite {tmp_path / 'given.db'}" in err  # --db beats both

    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    settings = build_settings(parser.parse_args(["serve", "runs/x", "--data-dir", str(flag)]))
    assert settings.db is None and settings.data_dir == flag
    assert build_settings(parser.parse_args(["serve", "runs/x"])).db == "from-env.db"

    from tunelab.apps.monitor import open_monitor_store

    (flag / "tunelab.db").unlink()
    (tmp_path / "cwd" / "from-env.db").unlink()  # made by the `keys create` without a flag above
    with open_monitor_store(settings.db, settings.data_dir):  # what a server with --monitor opens
        pass
    assert (flag / "tunelab.db").is_file() and not (tmp_path / "cwd" / "from-env.db").exists()


@pytest.mark.parametrize("argv", [["usage"], ["keys", "list"], ["keys", "revoke", "k_1"]])
def test_a_mistyped_db_is_refused_by_commands_that_only_read_or_change_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """``usage --db typo/x.db`` made typo/ and an empty database, and said "no usage recorded"."""
    typo = tmp_path / "typo" / "tunelab.db"
    code, _, err = cli(capsys, *argv, "--db", str(typo))
    assert code == 2 and f"--db {typo}: no such database" in err and "keys create" in err, err
    assert not typo.parent.exists()
    code, _, err = cli(capsys, "keys", "create", "--name", "acme", "--db", str(typo))  # makes it
    assert code == 0 and typo.is_file(), err


@pytest.mark.parametrize("argv", [["usage"], ["keys", "list"], ["keys", "revoke", "k_1"]])
def test_a_mistyped_tunelab_db_is_refused_as_a_mistyped_db_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """A misspelt ``$TUNELAB_DB`` made its folders and an empty database and answered "no keys
    yet", where the same path given as ``--db`` was refused; the refusal names the variable."""
    typo = tmp_path / "typo" / "tunelab.db"
    monkeypatch.setenv("TUNELAB_DB", str(typo))
    code, _, err = cli(capsys, *argv)
    assert code == 2 and f"$TUNELAB_DB {typo}: no such database" in err and "keys create" in err, err
    assert not typo.parent.exists()
    code, _, err = cli(capsys, "keys", "create", "--name", "acme")  # makes it
    assert code == 0 and typo.is_file(), err
    code, _, err = cli(capsys, *argv)
    assert "no such database" not in err, err
    if argv[-1] == "k_1":  # an unknown key: the refusal says which database had no such key
        assert code == 2 and "no key named or with id 'k_1'" in err and f"(in SQLite {typo})" in err, err
    else:
        assert code == 0, err


def test_a_command_on_a_database_that_did_not_exist_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = tmp_path / "fresh"
    code, _, err = cli(capsys, "usage", "--data-dir", str(fresh))
    assert code == 0
    assert err.strip() == f"database: SQLite {fresh / 'tunelab.db'} (new: no keys or usage yet)"
    code, _, err = cli(capsys, "usage", "--data-dir", str(fresh))
    assert code == 0 and err.strip() == f"database: SQLite {fresh / 'tunelab.db'}"


def test_an_old_per_directory_database_is_pointed_out_not_used(
    default_location: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = workdir(tmp_path, "old-project", monkeypatch)
    code, _, _ = cli(capsys, "keys", "create", "--name", "legacy", "--data-dir", ".tunelab")
    assert code == 0 and (old / ".tunelab" / "tunelab.db").is_file()
    code, out, err = cli(capsys, "keys", "list")
    assert code == 0 and "legacy" not in out
    first, note = err.strip().splitlines()
    assert first == f"database: SQLite {default_location} (new: no keys or usage yet)"
    assert note.startswith("note: .tunelab/tunelab.db") and "--data-dir .tunelab" in note


def test_the_test_suite_never_writes_the_users_data_folder(_scratch_data_dir: Path) -> None:
    """The autouse fixture in tests/conftest.py points the defaults at a scratch folder."""
    import os

    from tunelab.serve.store import default_data_dir

    assert os.environ.get("TUNELAB_DB") is None
    assert default_data_dir() == _scratch_data_dir / "data"
    assert ServeSettings().data_dir == _scratch_data_dir / "data"


def test_serve_settings_with_a_data_dir_use_its_database_not_tunelab_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ServeSettings(data_dir=X)`` used ``$TUNELAB_DB``'s database when the variable was set,
    where ``tunelab serve --data-dir X`` uses X's; a ``db`` given beside it still wins."""
    monkeypatch.setenv("TUNELAB_DB", str(tmp_path / "from-env.db"))
    assert ServeSettings().db == str(tmp_path / "from-env.db")  # nothing named: the variable
    assert ServeSettings(data_dir=tmp_path / "dir").db is None
    assert ServeSettings(data_dir=tmp_path / "dir", db="given.db").db == "given.db"
    assert ServeSettings.model_validate({"data_dir": str(tmp_path / "dir")}).db is None
