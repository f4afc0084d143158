"""One process ingests a monitor: a second ``Monitor`` of the same name on the same store, another
``tunelab app monitor run`` (an overlapping cron ``--once``) or a ``tunelab serve --monitor`` (with
``--no-follow`` too) refuses to start in one line while the first runs, and starts once it stopped
or its process died. Two ingesters each counted only the documents they stored first, so one surge
opened two alert episodes with different ids (and one was never ended)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tunelab.apps.monitor import Classifier, Monitor, MonitorBusyError, MonitorConfig, open_monitor_store
from tunelab.cli.main import main

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SINCE = r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


class FakeSentiment:
    labels = SimpleNamespace(names=["negative", "neutral", "positive"])
    task_name = "single_label"

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict[str, Any]]:
        return [{"label": "negative" if "falls" in t else "positive", "score": 0.9} for t in texts]


def classifier(*args: Any, **kwargs: Any) -> Classifier:
    return Classifier(FakeSentiment())


def config(tmp_path: Path, name: str = "markets", store: Path | None = None, **raw: Any) -> MonitorConfig:
    base = {
        "name": name,
        "store": str(store or tmp_path / "monitor.db"),
        "sources": [],
        "runs": {"sentiment": "runs/unused"},
        "poll": "1s",
    }
    return MonitorConfig.from_dict({**base, **raw})


def docs(start: int, n: int = 3) -> list[dict[str, Any]]:
    return [
        {"id": f"n{i}", "time": (T0 + timedelta(minutes=i)).isoformat(), "text": f"Acme falls {i}"}
        for i in range(start, start + n)
    ]


def reopen(store: Any) -> Any:
    """Another store object on the same database (what another process opens)."""
    return open_monitor_store(getattr(store, "url", None) or store.path)


def busy(where: str, who: str, pid: int) -> str:
    return (
        rf"^monitor markets in {re.escape(where)} is run by another {who} \(pid {pid}, {SINCE}\); "
        r"stop it first, or send the documents to it: one process ingests a monitor .*--no-follow"
    )


def where_of(store: Any) -> str:
    if hasattr(store, "url"):
        return f"PostgreSQL {store.where}"
    return f"SQLite {Path(store.path).resolve()}"


def test_a_second_monitor_of_one_name_and_store_is_refused_in_one_line_until_the_first_closes(
    monitor_store: Any,
) -> None:
    first = Monitor(config(Path("unused")), store=monitor_store, classifier=classifier())
    assert first.ingest_batch(docs(0)).stored == 3
    with reopen(monitor_store) as other:
        with pytest.raises(MonitorBusyError) as refused:
            Monitor(config(Path("unused")), store=other, classifier=classifier())
        message = str(refused.value)
        assert "\n" not in message
        assert re.match(busy(where_of(monitor_store), "Monitor of this process", os.getpid()), message), (
            message
        )
        assert first.ingest_batch(docs(3)).stored == 3  # the refusal took nothing from the holder
        first.close()
        with Monitor(config(Path("unused")), store=other, classifier=classifier()) as second:
            assert second.ingest_batch(docs(6)).stored == 3
            assert other.count("markets") == 9


def test_other_names_and_other_stores_do_not_block_each_other(tmp_path: Path) -> None:
    with (
        Monitor(config(tmp_path), classifier=classifier()) as markets,
        Monitor(config(tmp_path, name="bonds"), classifier=classifier()) as bonds,
        Monitor(config(tmp_path, store=tmp_path / "other.db"), classifier=classifier()) as elsewhere,
    ):
        for monitor in (markets, bonds, elsewhere):
            assert monitor.ingest_batch(docs(0)).stored == 3


HOLDER = """
import json, sys
from tunelab.apps.monitor import Monitor, MonitorConfig
monitor = Monitor(MonitorConfig.from_dict(json.loads(sys.argv[1])))
print("ready", flush=True)
sys.stdin.read()  # held until killed
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process holding monitor ``markets`` in ``tmp_path/monitor.db`` (a running ingester)."""
    raw = {"name": "markets", "store": str(tmp_path / "monitor.db"), "runs": {"sentiment": "runs/unused"}}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, json.dumps(raw)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line.strip() == "ready", (line, child.stderr.read() if child.stderr else "")
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


def write_yaml(tmp_path: Path, **raw: Any) -> str:
    path = tmp_path / "monitor.yaml"
    base = {"name": "markets", "store": str(tmp_path / "monitor.db"), "runs": {"sentiment": "runs/unused"}}
    news = tmp_path / "news.jsonl"
    news.write_text("".join(json.dumps(d) + "\n" for d in docs(0, 5)), encoding="utf-8")
    path.write_text(json.dumps({**base, "sources": [{"follow": str(news)}], **raw}), encoding="utf-8")
    return str(path)


def test_an_overlapping_run_is_refused_while_another_process_runs_it_and_starts_once_that_one_died(
    tmp_path: Path, holder: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import tunelab.apps.monitor.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "load_classifier", classifier)
    path = write_yaml(tmp_path)
    assert main(["app", "monitor", "run", "--config", path, "--once"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    where = f"SQLite {(tmp_path / 'monitor.db').resolve()}"
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert re.match(busy(where, "process", holder.pid), err[0].removeprefix("error: ")), err[0]
    with open_monitor_store(str(tmp_path / "monitor.db")) as store:
        assert store.count("markets") == 0  # refused before reading anything
    os.kill(holder.pid, signal.SIGKILL)  # dies without closing anything: the kernel drops the lock
    holder.wait(timeout=30)
    assert main(["app", "monitor", "run", "--config", path, "--once"]) == 0
    assert "markets: 5 documents stored" in capsys.readouterr().out


def test_serve_with_or_without_follow_is_refused_while_another_ingester_runs_the_monitor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """``serve --monitor --no-follow`` still ingests POSTed documents into its own windows: refused
    too. Once the holder closed, serve starts, and a second serve in this process too (the first
    gave its lease back though its server never ran: uvicorn is stubbed here)."""
    import logging
    import signal as signal_module

    import uvicorn

    import tunelab.apps.monitor as monitor_app

    root = logging.getLogger()  # serve configures the root logger: put back as it was
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setattr(signal_module, "signal", lambda *a: None)  # leave pytest's SIGTERM handler alone
    monkeypatch.setattr(monitor_app, "load_classifier", classifier)
    data = tmp_path / "data"
    path = tmp_path / "served.yaml"
    path.write_text(json.dumps({"name": "markets", "runs": {"sentiment": "runs/unused"}}), encoding="utf-8")
    argv = ["serve", "--monitor", str(path), "--data-dir", str(data)]
    holding = Monitor(config(tmp_path, store=data / "tunelab.db"), classifier=classifier())
    try:
        for extra in ([], ["--no-follow"]):
            assert main([*argv, *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            where = f"SQLite {(data / 'tunelab.db').resolve()}"
            assert err[-1].startswith("error: ") and "Traceback" not in "".join(err), err
            assert re.match(busy(where, "Monitor of this process", os.getpid()), err[-1][7:]), err[-1]
    finally:
        holding.close()
    assert main(argv) == 0
    assert main([*argv, "--no-follow"]) == 0


def test_a_lease_taken_over_while_held_refuses_the_batch_and_counts_nothing(monitor_store: Any) -> None:
    """The lock file removed by hand, or the PostgreSQL session holding the lock cut: another
    ingester could start. The holder notices at its next batch: it stores nothing while the other
    holds the lease, and takes it back (and goes on) once that one stopped."""
    first = Monitor(config(Path("unused")), store=monitor_store, classifier=classifier())
    try:
        assert first.ingest_batch(docs(0)).stored == 3
        lease: Any = first._lease
        if hasattr(monitor_store, "url"):
            import psycopg

            with psycopg.connect(monitor_store.url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (lease._conn.info.backend_pid,))
        else:
            lease.path.unlink()
        with reopen(monitor_store) as other:
            second = Monitor(config(Path("unused")), store=other, classifier=classifier())
            with pytest.raises(MonitorBusyError, match=r"is run by another Monitor of this process"):
                first.ingest_batch(docs(3))
            assert other.count("markets") == 3  # nothing of the refused batch
            assert second.ingest_batch(docs(3)).stored == 3
            second.close()
        result = first.ingest_batch(docs(6))
        assert result.stored == 3
        assert monitor_store.count("markets") == 9
    finally:
        first.close()
