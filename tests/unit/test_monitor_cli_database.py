"""``app monitor run`` and ``report`` reach the database a server used (``--db``/``--data-dir``),
say which database they use when a following run starts, and a refusal names where the database's
name came from (it named a ``store:`` field the config did not have)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_monitor_lease import classifier  # its stand-in sentiment model

from tunelab.apps.monitor import open_monitor_store
from tunelab.cli.main import main

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TUNELAB_DB", raising=False)
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(tmp_path / "default-data"))
    import tunelab.apps.monitor.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "load_classifier", classifier)


def write_config(tmp_path: Path, **raw: Any) -> str:
    news = tmp_path / "news.jsonl"
    lines = [
        {"id": f"n{i}", "time": (T0 + timedelta(minutes=i)).isoformat(), "text": f"Acme falls {i}"}
        for i in range(5)
    ]
    news.write_text("".join(json.dumps(d) + "\n" for d in lines), encoding="utf-8")
    path = tmp_path / "monitor.yaml"
    base = {"name": "markets", "sources": [{"follow": str(news)}], "runs": {"sentiment": "runs/unused"}}
    path.write_text(json.dumps({**base, **raw}), encoding="utf-8")
    return str(path)


def test_run_and_report_reach_a_servers_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A monitor a server ran with ``--data-dir DIR`` (a config without ``store:``) could not be run
    or reported on by these commands: they had no ``--db``/``--data-dir``."""
    server = tmp_path / "server-data"
    config = write_config(tmp_path)
    assert main(["app", "monitor", "run", "--config", config, "--once", "--data-dir", str(server)]) == 0
    captured = capsys.readouterr()
    assert f"database: SQLite {server / 'tunelab.db'}" in captured.err, captured.err
    assert not (tmp_path / "default-data").exists()
    with open_monitor_store(None, server, create=False) as store:
        assert store.count("markets") == 5  # where a server with --data-dir reads it
    out = tmp_path / "report.html"
    assert (
        main(["app", "monitor", "report", "--config", config, "--out", str(out), "--data-dir", str(server)])
        == 0
    )
    assert out.is_file() and f"database: SQLite {server / 'tunelab.db'}" in capsys.readouterr().err
    db = tmp_path / "given.db"
    assert main(["app", "monitor", "run", "--config", config, "--once", "--db", str(db)]) == 0
    assert f"database: SQLite {db}" in capsys.readouterr().err
    with open_monitor_store(str(db), create=False) as store:
        assert store.count("markets") == 5


def test_a_report_on_a_default_database_that_does_not_exist_names_no_store_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal said ``store: <file> does not exist`` of a config that had no ``store:``."""
    config = write_config(tmp_path)
    out = str(tmp_path / "r.html")
    assert main(["app", "monitor", "report", "--config", config, "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    default = tmp_path / "default-data" / "tunelab.db"
    assert err.startswith(f"error: the default database {default} does not exist ("), err
    missing = tmp_path / "nowhere"
    assert (
        main(["app", "monitor", "report", "--config", config, "--out", out, "--data-dir", str(missing)]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --data-dir's database {missing / 'tunelab.db'} does not exist ("), err
    assert (
        main(["app", "monitor", "report", "--config", config, "--out", out, "--db", str(missing / "x.db")])
        == 2
    )
    assert capsys.readouterr().err.startswith(f"error: --db {missing / 'x.db'} does not exist (")
    assert not missing.exists() and not (tmp_path / "default-data").exists()


@pytest.mark.parametrize("flag", ["--db", "--data-dir"])
def test_a_config_with_a_store_and_a_database_flag_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    """Either would be ignored: the refusal names both, and nothing is created."""
    config = write_config(tmp_path, store=str(tmp_path / "monitor.db"))
    other = str(tmp_path / ("other.db" if flag == "--db" else "other"))
    for command in (["run", "--once"], ["report", "--out", str(tmp_path / "r.html")]):
        assert main(["app", "monitor", *command, "--config", config, flag, other]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"error: {config}: store: names the database, so {flag} would be ignored; "
            f"give one of them (drop {flag}, or store: from the config)"
        ), err
    assert not (tmp_path / "monitor.db").exists() and not Path(other).exists()


def test_a_following_run_says_its_database_when_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run following its sources printed the database only when it was stopped."""
    from tunelab.apps.monitor import Monitor

    said: list[str] = []

    def run(self: Any, *, once: bool, stop: Any) -> None:  # what the following loop would do
        said.append(capsys.readouterr().err)

    monkeypatch.setattr(Monitor, "run", run)
    config = write_config(tmp_path, store=str(tmp_path / "monitor.db"))
    assert main(["app", "monitor", "run", "--config", config]) == 0
    assert len(said) == 1 and f"database: SQLite {tmp_path / 'monitor.db'}" in said[0], said
