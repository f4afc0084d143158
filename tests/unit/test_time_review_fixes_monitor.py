"""Review of times and clocks: a monitor whose stored documents are all dated near 0001-01-01.

Some feeds write 0001-01-01 for "unknown", and the README accepts it (such a document does not
count as history). When every stored document was dated so, the warm-up of a restart and the
report subtracted their spans from year 1 as datetimes: "unexpected OverflowError", the monitor
could not start again (nor store the next document) and no report came out.
"""

from __future__ import annotations

from pathlib import Path

from test_monitor_app import classifier, cli_args, config, write_config, write_jsonl

from tunelab.apps.monitor import Monitor, open_monitor_store
from tunelab.cli import monitor_cmd

YEAR_1 = {"id": "u1", "time": "0001-01-01T00:00:00Z", "text": "Acme Corp profit today"}
TODAY = {"id": "u2", "time": "2026-12-06T10:00:00Z", "text": "Acme Corp profit today"}


def test_a_monitor_holding_only_a_year_1_document_starts_again_and_stores_the_next(tmp_path: Path) -> None:
    (tmp_path / "news.jsonl").write_text("", encoding="utf-8")
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:
        assert monitor.ingest_batch([YEAR_1]).stored == 1
    with Monitor(config(tmp_path), classifier=classifier()) as monitor:  # the restart's warm-up
        assert monitor.ingest_batch([TODAY]).stored == 1
        assert monitor.store.count("markets") == 2


def test_the_cli_run_and_report_of_a_feed_dated_year_1_only(tmp_path: Path, monkeypatch, capsys) -> None:
    import tunelab.apps.monitor.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "load_classifier", lambda cfg, ner=None: classifier())
    path = write_config(tmp_path)
    write_jsonl(tmp_path / "news.jsonl", [YEAR_1])
    assert monitor_cmd.run(cli_args("run", "--config", str(path), "--once")) == 0
    report = tmp_path / "report.html"
    assert monitor_cmd.run(cli_args("report", "--config", str(path), "--out", str(report))) == 0
    assert "1 documents from 0001-01-01 00:00 to 0001-01-01 00:00 UTC" in report.read_text(encoding="utf-8")
    write_jsonl(tmp_path / "news.jsonl", [TODAY], mode="a")
    assert monitor_cmd.run(cli_args("run", "--config", str(path), "--once")) == 0
    with open_monitor_store(str(tmp_path / "monitor.db")) as store:
        assert store.count("markets") == 2
    assert "OverflowError" not in capsys.readouterr().err
