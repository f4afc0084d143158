"""``~`` in ``--db``, ``--data-dir``, ``$TUNELAB_DB`` and a monitor's ``store:`` is the home folder,
as in every other path: it made a folder named ``~`` in the current directory (systemd and Docker
environments have no shell to expand it, nor has ``--db=~/k.db``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.apps.monitor import open_monitor_store
from tunelab.cli.main import main
from tunelab.serve.store import describe_store, sqlite_file


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.chdir(work)
    monkeypatch.delenv("TUNELAB_DB", raising=False)
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(tmp_path / "data"))
    return folder


def created(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["keys", "create", "--name", "c", *argv]) == 0
    return capsys.readouterr().err


def test_db_option_expands_home(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = created(capsys, "--db=~/k3.db")
    assert f"database: SQLite {home / 'k3.db'} (new)" in err
    assert (home / "k3.db").is_file() and not Path("~").exists()


def test_tunelab_db_expands_home(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNELAB_DB", "~/env.db")
    err = created(capsys)
    assert f"database: SQLite {home / 'env.db'} (new)" in err
    assert (home / "env.db").is_file() and not Path("~").exists()


def test_data_dir_option_expands_home(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = created(capsys, "--data-dir=~/keys")
    assert f"database: SQLite {home / 'keys' / 'tunelab.db'} (new)" in err
    assert not Path("~").exists()


def test_an_existing_db_without_suffix_under_home_is_found(home: Path) -> None:
    (home / "keysdb").write_bytes(b"")
    assert sqlite_file("~/keysdb", "unused") == home / "keysdb"


def test_monitor_store_expands_home(home: Path) -> None:
    with open_monitor_store("~/monitor.db") as store:
        assert Path(store.path) == home / "monitor.db"
    assert (home / "monitor.db").is_file() and not Path("~").exists()


def test_a_postgresql_url_is_left_alone(home: Path) -> None:
    assert sqlite_file("postgresql://u@h:5432/~db", "unused") is None
    assert describe_store("postgresql://u@h:5432/db", "unused").startswith("PostgreSQL ")
