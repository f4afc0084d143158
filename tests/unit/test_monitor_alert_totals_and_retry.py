"""Two review fixes of the monitor: its running totals count alerts without keeping them (a follower
held every alert it ever opened, each with up to 50 document ids), and ``tunelab app monitor run``
retries a database error while following, as ``tunelab serve --monitor`` does, instead of ending."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_monitor_app import DETECTOR, classifier, cli_args, config, doc, write_jsonl

from tunelab.apps.monitor import Monitor, open_monitor_store
from tunelab.apps.monitor.store import MonitorTables
from tunelab.cli import monitor_cmd
from tunelab.errors import ConfigError
from tunelab.serve.store import StoreError


def surges(cycles: int = 6) -> list[dict]:
    """``cycles`` times an hour of calm Acme earnings news (one item every 30 s, one in five
    negative) then 15 minutes of four negative items a minute: each surge opens an alert on
    ``topic:earnings`` and ``company:acme``, and the calm after it ends them."""
    docs, i, start = [], 0, 0.0
    for _ in range(cycles):
        for k in range(120):
            text = "Acme Corp shares falls on profit" if i % 5 == 0 else "Acme Corp revenue steady"
            docs.append(doc(i, start + k / 2, text, topic="earnings"))
            i += 1
        for k in range(60):
            docs.append(doc(i, start + 60 + k / 4, "Acme Corp lawsuit: shares falls", topic="earnings"))
            i += 1
        start += 75
    return sorted(docs, key=lambda d: d["time"])


def stored_alerts(tmp_path: Path) -> int:
    with open_monitor_store(str(tmp_path / "monitor.db")) as store:
        return len(store.alerts("markets"))


def stored_docs(tmp_path: Path) -> int:
    with open_monitor_store(str(tmp_path / "monitor.db")) as store:
        return store.count("markets")


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    import tunelab.apps.monitor.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "load_classifier", lambda cfg, ner=None: classifier())


@pytest.fixture
def failing_saves(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[int]]:
    """``failing_saves(fail, error)``: every monitor store's ``save`` raises ``error`` on the calls
    ``fail(n)`` picks (n from 1), the database down for a moment; returns the list of calls made."""

    def install(fail: Callable[[int], bool], error: Exception | None = None) -> list[int]:
        real, calls = MonitorTables.save, []

        def save(self, *args, **kwargs):
            calls.append(1)
            if fail(len(calls)):
                raise error or StoreError("database is down")
            return real(self, *args, **kwargs)

        monkeypatch.setattr(MonitorTables, "save", save)
        return calls

    return install


@pytest.fixture
def two_feeds(tmp_path: Path) -> tuple[Path, int]:
    """A config following a.jsonl then b.jsonl (the stream's two halves, in time order): one save
    each. Returns the config's path and the number of documents."""
    docs = surges()
    half = len(docs) // 2
    write_jsonl(tmp_path / "a.jsonl", docs[:half])
    write_jsonl(tmp_path / "b.jsonl", docs[half:])
    raw = {
        "name": "markets",
        "store": str(tmp_path / "monitor.db"),
        "sources": [{"follow": str(tmp_path / "a.jsonl")}, {"follow": str(tmp_path / "b.jsonl")}],
        "runs": {"sentiment": "runs/unused"},
        "detector": DETECTOR,
        "poll": "1s",
    }
    path = tmp_path / "monitor.yaml"
    path.write_text(json.dumps(raw), encoding="utf-8")  # JSON is YAML
    return path, len(docs)


# -- fix 1: totals count alerts, keep none -----------------------------------------------------------


def test_the_monitors_totals_count_alerts_of_many_episodes_and_keep_none(tmp_path: Path) -> None:
    docs = surges()
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        opened = 0
        for i in range(0, len(docs), 20):
            opened += len(monitor.ingest_batch(docs[i : i + 20]).alerts)  # a batch keeps its own
        episodes = monitor.store.alerts("markets")
        totals = monitor.totals
    assert opened == len(episodes) >= 10 and sum(a.ended_at is not None for a in episodes) >= 8
    assert totals.alerts == [], "the monitor's life-long totals held every alert opened"
    assert totals.alert_count == opened and totals.stored == len(docs)


def test_a_following_run_returns_its_alert_count_without_the_alerts(tmp_path: Path) -> None:
    docs = surges()
    write_jsonl(tmp_path / "news.jsonl", docs)
    stop = threading.Event()
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        # Stop once everything is stored (on_ingest runs in run's own thread, after each commit).
        monitor.on_ingest = lambda results: stop.set() if monitor.totals.stored == len(docs) else None
        total = monitor.run(stop=stop)
        opened = len(monitor.store.alerts("markets"))
    assert opened >= 10
    assert total.alerts == [], "a following run held every alert it opened until it stopped"
    assert (total.alert_count, total.stored) == (opened, len(docs))


# -- fix 2: the following command retries a database error ------------------------------------------


def test_a_following_run_retries_a_database_error_and_ingests_the_rest(
    tmp_path: Path,
    stand_in: None,
    two_feeds: tuple[Path, int],
    failing_saves: Callable[..., list[int]],
    monkeypatch: pytest.MonkeyPatch,
    sigterm_self,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, n_docs = two_feeds
    monkeypatch.setattr(monitor_cmd, "RETRY_S", 0.05, raising=False)  # absent before the fix
    calls = failing_saves(lambda n: n == 2)  # b.jsonl's first save; a.jsonl's is stored
    sigterm_self.when(lambda: stored_docs(tmp_path) == n_docs, timeout_s=20)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tunelab.cli.monitor_cmd"):
        assert monitor_cmd.run(cli_args("run", "--config", str(path))) == 0  # until SIGTERM
    sigterm_self.join()
    assert time.monotonic() - started < 5
    assert len(calls) >= 3  # a, b failed, b again
    retries = [r.getMessage() for r in caplog.records if r.name == "tunelab.cli.monitor_cmd"]
    assert retries == ["monitor markets: following its sources failed (database is down); retrying in 0.05s"]
    alerts = stored_alerts(tmp_path)
    assert stored_docs(tmp_path) == n_docs and alerts >= 10
    # The summary counts the batch stored before the failure and the alerts (counted, not kept).
    out = capsys.readouterr().out
    assert f"markets: {n_docs} documents stored, 0 duplicates, 0 skipped, {alerts} alerts" in out


def test_sigterm_while_a_following_run_waits_to_retry_stops_it_at_once(
    tmp_path: Path,
    stand_in: None,
    two_feeds: tuple[Path, int],
    failing_saves: Callable[..., list[int]],
    monkeypatch: pytest.MonkeyPatch,
    sigterm_self,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, _ = two_feeds
    monkeypatch.setattr(monitor_cmd, "RETRY_S", 60.0, raising=False)
    failing_saves(lambda n: True)  # the database stays down
    sigterm_self.when(lambda: any("retrying in 60s" in r.getMessage() for r in caplog.records), timeout_s=20)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tunelab.cli.monitor_cmd"):
        assert monitor_cmd.run(cli_args("run", "--config", str(path))) == 0
    sigterm_self.join()
    assert time.monotonic() - started < 5, "SIGTERM waited for the retry"


def test_run_once_still_ends_at_a_database_error_with_its_one_line(
    tmp_path: Path,
    stand_in: None,
    two_feeds: tuple[Path, int],
    failing_saves: Callable[..., list[int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tunelab.cli.main import main

    path, _ = two_feeds
    calls = failing_saves(lambda n: n == 2)
    assert main(["app", "monitor", "run", "--config", str(path), "--once"]) == 2
    assert len(calls) == 2  # not tried again
    err = capsys.readouterr().err.strip().splitlines()
    assert "error: database is down" in err and not any("retrying" in line for line in err)


def test_a_following_run_is_not_retried_on_a_config_error(
    tmp_path: Path,
    stand_in: None,
    two_feeds: tuple[Path, int],
    failing_saves: Callable[..., list[int]],
) -> None:
    path, _ = two_feeds
    calls = failing_saves(lambda n: True, ConfigError("monitor.yaml: bad detector"))
    with pytest.raises(ConfigError, match="bad detector"):
        monitor_cmd.run(cli_args("run", "--config", str(path)))
    assert len(calls) == 1


def test_a_monitor_taken_by_another_process_ends_the_following_run(
    tmp_path: Path,
    stand_in: None,
    two_feeds: tuple[Path, int],
    failing_saves: Callable[..., list[int]],
) -> None:
    """MonitorBusyError is a StoreError, but waiting cannot help: the other process ingests now."""
    from tunelab.apps.monitor.lease import MonitorBusyError

    path, _ = two_feeds
    calls = failing_saves(lambda n: n == 2, MonitorBusyError("monitor markets is ingested by pid 4242"))
    with pytest.raises(MonitorBusyError, match="pid 4242"):
        monitor_cmd.run(cli_args("run", "--config", str(path)))
    assert len(calls) == 2  # not tried again
